/*
 * client_params.c
 *	  Client parameters (再次签名): what the APP SDK, JSAPI and mini
 *	  programs need to pay a prepay_id, signed with the merchant's key: the
 *	  v2 API key (MD5 / HMAC-SHA256 over sorted fields), or for an API v3
 *	  merchant its RSA key over four fields, one a line (wxpay-v3-api.md §7).
 */
#include "wxpay.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "args.h"
#include "spi_util.h"
#include "wx_rsa.h"

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
	wxpay_list_add_cstr(list, "signType", m->v3 ? "RSA" : wx_sign_type_name(m->sign_type));
}

/* A client's fields, and the four API v3 signs, in their order. */
typedef struct ClientKind
{
	ClientFields fields;
	const char *sign_name;
	const char *v3_signed[4];
} ClientKind;

/* APP signs the bare prepay_id, JSAPI the package "prepay_id=...". */
static const ClientKind app_kind = {app_fields, "sign", {"appid", "timestamp", "noncestr", "prepayid"}};
static const ClientKind jsapi_kind = {jsapi_fields, "paySign", {"appId", "timeStamp", "nonceStr", "package"}};

/* Base64 RSA-SHA256 of the kind's four fields, a line each, with key_pem. */
static char *
v3_client_sign(const WxMerchant *m, const ClientKind *kind, const WxParamList *list)
{
	const WxKey *key = m->key_pem ? wx_key_private(m->key_pem, strlen(m->key_pem)) : NULL;
	WxSlice		lines[4];
	char	   *b64 = palloc(WX_RSA_SIG_B64_MAX);

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("API v3 merchant \"%s\" has no usable key_pem to sign client parameters", m->mch_id),
				 errhint("Set wxpay.merchants.key_pem to apiclient_key.pem.")));
	for (int i = 0; i < 4; i++)
	{
		const char *value = wxpay_list_get(list, kind->v3_signed[i]);

		lines[i] = (WxSlice) {value, strlen(value)};
	}
	if (!wx_rsa_sign_lines(key, lines, 4, b64))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not sign client parameters for merchant \"%s\"", m->mch_id)));
	return b64;
}

/*
 * Client parameters for (mch_id, prepay_id): the fields, signed with the
 * merchant's algorithm under the kind's sign name.  The same algorithm as
 * the unifiedorder call is required by WeChat Pay.
 */
static Jsonb *
client_params(FunctionCallInfo fcinfo, const ClientKind *kind, bool jssdk)
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
	kind->fields(m, prepay_id, &list);
	wxpay_list_add_cstr(&list, kind->sign_name,
						m->v3 ? v3_client_sign(m, kind, &list)
						: wxpay_sign_list(&list, m->sign_type, m->api_key, strlen(m->api_key)));
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
	PG_RETURN_JSONB_P(client_params(fcinfo, &app_kind, false));
}

/*
 * wxpay_jsapi_params(mch_id, prepay_id) -> jsonb, for getBrandWCPayRequest
 * and wx.requestPayment
 */
Datum
wxpay_jsapi_params(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(client_params(fcinfo, &jsapi_kind, false));
}

/*
 * wxpay_jssdk_params(mch_id, prepay_id) -> jsonb, for the JS-SDK's
 * wx.chooseWXPay: the JSAPI fields, signed the same way, with timestamp
 * in lower case
 */
Datum
wxpay_jssdk_params(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(client_params(fcinfo, &jsapi_kind, true));
}
