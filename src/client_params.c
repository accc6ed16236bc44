/*
 * client_params.c
 *	  Client parameters (再次签名): what the APP SDK, JSAPI and mini
 *	  programs need to pay a prepay_id, signed with the merchant's key.
 */
#include "wxpay.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "args.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(wxpay_app_params);
PG_FUNCTION_INFO_V1(wxpay_jsapi_params);
PG_FUNCTION_INFO_V1(wxpay_jssdk_params);

/* Now, in Unix seconds, as the clients want it. */
static char *
unix_seconds(void)
{
	return psprintf("%ld", (long) timestamptz_to_time_t(GetCurrentTimestamp()));
}

/* The fields the client needs, before signing. */
typedef void (*ClientFields) (const WxMerchant *m, const char *prepay_id,
							  WxParamList *list);

/* The APP SDK's PayReq fields. */
static void
app_fields(const WxMerchant *m, const char *prepay_id, WxParamList *list)
{
	wxpay_list_add_cstr(list, "appid", m->appid);
	wxpay_list_add_cstr(list, "partnerid", m->mch_id);
	wxpay_list_add_cstr(list, "prepayid", prepay_id);
	wxpay_list_add_cstr(list, "package", "Sign=WXPay");
	wxpay_list_add_cstr(list, "noncestr", wxpay_make_nonce(32));
	wxpay_list_add_cstr(list, "timestamp", unix_seconds());
}

/* getBrandWCPayRequest / wx.requestPayment fields. */
static void
jsapi_fields(const WxMerchant *m, const char *prepay_id, WxParamList *list)
{
	wxpay_list_add_cstr(list, "appId", m->appid);
	wxpay_list_add_cstr(list, "timeStamp", unix_seconds());
	wxpay_list_add_cstr(list, "nonceStr", wxpay_make_nonce(32));
	wxpay_list_add_cstr(list, "package", psprintf("prepay_id=%s", prepay_id));
	wxpay_list_add_cstr(list, "signType", wx_sign_type_name(m->sign_type));
}

/*
 * Client parameters for (mch_id, prepay_id): the fields, signed with the
 * merchant's algorithm under sign_name.  The same algorithm as the
 * unifiedorder call is required by WeChat Pay.
 */
static Jsonb *
client_params(FunctionCallInfo fcinfo, ClientFields fields, const char *sign_name,
			  bool jssdk)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *prepay_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxMerchant *m;
	WxParamList list;

	wxpay_check_pattern("prepay_id", prepay_id, "^[0-9A-Za-z_-]{1,64}$",
				  "Pass the prepay_id returned by wxpay_unifiedorder.");
	SPI_connect();
	m = wxpay_merchant_get(mch_id, CurrentMemoryContext);
	wxpay_list_init(&list, 7);
	fields(m, prepay_id, &list);
	wxpay_list_add_cstr(&list, sign_name,
						wxpay_sign_list(&list, m->sign_type, m->api_key, strlen(m->api_key)));
	/* wx.chooseWXPay takes the signed timeStamp under a lower-case name. */
	for (int i = 0; jssdk && i < list.count; i++)
		if (strcmp(list.items[i].name, "timeStamp") == 0)
			list.items[i].name = "timestamp";
	return wxpay_spi_result(caller, &list);
}

/*
 * wxpay_app_params(mch_id, prepay_id) -> jsonb, for the APP SDK's PayReq
 */
Datum
wxpay_app_params(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(client_params(fcinfo, app_fields, "sign", false));
}

/*
 * wxpay_jsapi_params(mch_id, prepay_id) -> jsonb, for getBrandWCPayRequest
 * and wx.requestPayment
 */
Datum
wxpay_jsapi_params(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(client_params(fcinfo, jsapi_fields, "paySign", false));
}

/*
 * wxpay_jssdk_params(mch_id, prepay_id) -> jsonb, for the JS-SDK's
 * wx.chooseWXPay: the JSAPI fields, signed the same way, with timestamp
 * in lower case
 */
Datum
wxpay_jssdk_params(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(client_params(fcinfo, jsapi_fields, "paySign", true));
}
