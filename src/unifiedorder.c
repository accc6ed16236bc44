/*
 * unifiedorder.c
 *	  The unifiedorder endpoint and wxpay_unifiedorder: validate locally,
 *	  record the order, ask WeChat Pay for a prepay_id, store it.
 *
 * The order row is written before the request, so a payment can never
 * arrive for an order we do not know; re-entering an order with identical
 * parameters gets WeChat Pay's prepay_id again, as its rules allow.
 *
 * A v3 merchant's order goes to /v3/pay/transactions/{jsapi,app,native,h5}
 * with the same arguments (README, "API v3"): body is description,
 * total_fee amount.total, spbill_create_ip scene_info.payer_client_ip;
 * extra.openid is payer.openid, extra.fee_type amount.currency,
 * extra.scene_info (an object) the rest of scene_info, extra.detail
 * detail, extra.device_info scene_info.device_id; extra.time_expire may be
 * RFC 3339 for either protocol.  Native needs no product_id in v3.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "args.h"
#include "orders.h"
#include "spi_util.h"
#include "states.h"

PG_FUNCTION_INFO_V1(wxpay_unifiedorder);

/* The optional fields a unifiedorder request may carry. */
static const WxOptionalField unifiedorder_fields[] = {
	{"openid", 128},
	{"product_id", 32, "^[0-9A-Za-z_.-]+$", "Use letters, digits, '_', '.' and '-'."},
	{"attach", 127},
	{"detail", 6000, NULL, NULL, true},
	{"time_start", 14, "^2[0-9]{3}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$",
	"Use yyyyMMddHHmmss in Beijing time (GMT+8)."},
	{"time_expire", 32, "^2[0-9]{3}((0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]"
		"|-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$",
	"Use yyyyMMddHHmmss in Beijing time (GMT+8), or RFC 3339 such as 2026-06-08T10:34:56+08:00."},
	{"limit_pay", 32, "^no_credit$", "The only value is no_credit."},
	{"goods_tag", 32},
	{"fee_type", 16, "^[A-Z]{3}$", "Use an ISO 4217 code such as CNY."},
	{"device_info", 32, "^[0-9A-Za-z_.-]+$", "Use letters, digits, '_', '.' and '-'."},
	{"scene_info", 256, NULL, NULL, true},
	{"receipt", 8, "^Y$", "The only value is Y."},
	{"notify_url", 256, "^https?://[^?#[:space:]]+$",
	"notify_url must be an absolute http(s) URL without a query string."},
};

/* A validated unifiedorder call. */
typedef struct WxUnifiedOrder
{
	char	   *mch_id;
	char	   *out_trade_no;
	int32		total_fee;
	char	   *body;
	char	   *client_ip;
	char	   *trade_type;
	WxParamList extra;
	Jsonb	   *params;			/* extra as stored on the order */
} WxUnifiedOrder;

/* A field extra must carry for this trade_type. */
static void
require_extra(const WxUnifiedOrder *uo, const char *field)
{
	if (wx_params_find(uo->extra.items, uo->extra.count, field) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trade_type %s requires extra.%s", uo->trade_type, field)));
}

/* Read and validate the arguments of wxpay_unifiedorder. */
static void
read_unifiedorder_args(FunctionCallInfo fcinfo, WxUnifiedOrder *uo)
{
	static const char *const argnames[] = {"mch_id", "out_trade_no", "total_fee", "body",
	"spbill_create_ip", "trade_type", "extra"};

	wxpay_require_args(fcinfo, argnames, lengthof(argnames));

	uo->mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	uo->out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	uo->total_fee = PG_GETARG_INT32(2);
	uo->body = text_to_cstring(PG_GETARG_TEXT_PP(3));
	uo->client_ip = text_to_cstring(PG_GETARG_TEXT_PP(4));
	uo->trade_type = text_to_cstring(PG_GETARG_TEXT_PP(5));
	uo->params = PG_GETARG_JSONB_P(6);

	if (uo->total_fee <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("total_fee must be a positive number of fen, not %d", uo->total_fee)));
	wxpay_check_pattern("out_trade_no", uo->out_trade_no, WX_OUT_TRADE_NO_PATTERN,
				  "Use 1 to 32 characters from 0-9, A-Z, a-z and _-|*@.");
	wxpay_check_text_value("body", uo->body, strlen(uo->body), WX_BODY_MAX_BYTES);
	wxpay_check_ip(uo->client_ip);
	wxpay_check_pattern("trade_type", uo->trade_type, WX_UNIFIEDORDER_TRADE_TYPES,
				  "Use APP, JSAPI, NATIVE or MWEB.");
	wxpay_extra_to_list(uo->params, unifiedorder_fields, lengthof(unifiedorder_fields), &uo->extra);
	uo->params = wxpay_list_to_jsonb(&uo->extra);
}

/* The fields extra must carry for the trade_type in the merchant's protocol. */
static void
require_trade_type_fields(const WxUnifiedOrder *uo, const WxMerchant *m)
{
	if (strcmp(uo->trade_type, "JSAPI") == 0)
		require_extra(uo, "openid");
	else if (strcmp(uo->trade_type, "NATIVE") == 0 && !m->v3)
		require_extra(uo, "product_id");
	else if (strcmp(uo->trade_type, "MWEB") == 0)
		require_extra(uo, "scene_info");
}

/*
 * extra.time_expire given in RFC 3339 as the yyyyMMddHHmmss (GMT+8) the
 * order is recorded with.  SPI must be connected.
 */
static void
normalise_time_expire(WxUnifiedOrder *uo)
{
	WxParam    *p = (WxParam *) wx_params_find(uo->extra.items, uo->extra.count, "time_expire");

	if (p == NULL || p->value_len == 14)
		return;
	wxpay_spi_exec("SELECT pg_catalog.to_char($1::pg_catalog.timestamptz AT TIME ZONE INTERVAL '+08:00',"
				   " 'YYYYMMDDHH24MISS')", 1, (Oid[]) {TEXTOID},
				   (Datum[]) {PointerGetDatum(cstring_to_text_with_len(p->value, p->value_len))},
				   NULL, true, SPI_OK_SELECT);
	p->value = wxpay_spi_value(0, 1);
	p->value_len = strlen(p->value);
}

/*
 * Refuse an extra.time_expire (by now yyyyMMddHHmmss in GMT+8) that is no
 * real date or less than a minute away: WeChat Pay refuses such an order,
 * and it should not be recorded as payable.
 */
static void
check_time_expire(const WxUnifiedOrder *uo)
{
	const char *v = wxpay_list_get(&uo->extra, "time_expire");
	int			y,
				mo,
				d,
				h,
				mi,
				s;
	TimestampTz at;

	if (v == NULL || sscanf(v, "%4d%2d%2d%2d%2d%2d", &y, &mo, &d, &h, &mi, &s) != 6)
		return;
	if (d > day_tab[isleap(y)][mo - 1])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("extra.time_expire %s is not a date", v)));
	at = ((TimestampTz) (date2j(y, mo, d) - POSTGRES_EPOCH_JDATE) * SECS_PER_DAY +
		  h * SECS_PER_HOUR + mi * SECS_PER_MINUTE + s - 8 * SECS_PER_HOUR) * USECS_PER_SEC;
	if (at < GetCurrentTimestamp() + SECS_PER_MINUTE * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("extra.time_expire %s (Beijing time) is less than a minute from now", v),
				 errhint("WeChat Pay refuses an order that expires within a minute. Give a later time, or none: the order then stays payable for wxpay.order_ttl.")));
}

/*
 * Record the order (or re-enter an identical one) before anything is sent;
 * returns its time_expire as yyyyMMddHHmmss in GMT+8.
 */
static char *
record_order(const WxUnifiedOrder *uo)
{
	WxNewOrder	o;

	o.mch_id = uo->mch_id;
	o.out_trade_no = uo->out_trade_no;
	o.trade_type = uo->trade_type;
	o.body = uo->body;
	o.total_fee = uo->total_fee;
	o.client_ip = uo->client_ip;
	o.attach = wxpay_list_get(&uo->extra, "attach");
	o.openid = wxpay_list_get(&uo->extra, "openid");
	o.product_id = wxpay_list_get(&uo->extra, "product_id");
	o.params = uo->params;
	o.time_expire = wxpay_list_get(&uo->extra, "time_expire");
	o.source = "unifiedorder";
	return wxpay_order_record(&o);
}

/* The endpoint's apply step: keep the prepay_id and URLs on the order. */
static bool
store_prepay(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	wxpay_order_store_prepay(call->merchant->mch_id, &answer->payment);
	return true;
}

/* An answer with a prepay_id for the requested trade_type. */
static bool
read_prepay(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *resp = &answer->fields;
	const char *prepay_id = wxpay_list_get(resp, "prepay_id");

	if (!wxpay_v2_result(call->endpoint, resp, fail))
		return false;
	if (prepay_id == NULL || prepay_id[0] == '\0' ||
		!wxpay_list_is(resp, "trade_type", wxpay_list_get(call->fields, "trade_type")))
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered /pay/unifiedorder without a prepay_id for trade_type %s",
								   wxpay_list_get(call->fields, "trade_type")));
	answer->payment.out_trade_no = call->out_trade_no;
	answer->payment.prepay_id = prepay_id;
	answer->payment.code_url = wxpay_list_get(resp, "code_url");
	answer->payment.mweb_url = wxpay_list_get(resp, "mweb_url");
	return true;
}

/* A v3 prepay answer: prepay_id (JSAPI, APP), code_url (Native), h5_url (H5). */
static bool
read_v3_prepay(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const char *trade_type = wxpay_list_get(call->fields, "trade_type");
	const char *expected = strcmp(trade_type, "NATIVE") == 0 ? "code_url" :
		strcmp(trade_type, "MWEB") == 0 ? "h5_url" : "prepay_id";
	const char *value;

	if (!wxpay_v3_result(call, answer, fail))
		return false;
	value = wxpay_list_get(&answer->fields, expected);
	if (value == NULL || value[0] == '\0')
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered a v3 prepay of trade_type %s without %s",
								   trade_type, expected));
	memset(&answer->payment, 0, sizeof(answer->payment));
	answer->payment.out_trade_no = call->out_trade_no;
	answer->payment.prepay_id = wxpay_list_get(&answer->fields, "prepay_id");
	answer->payment.code_url = wxpay_list_get(&answer->fields, "code_url");
	answer->payment.mweb_url = wxpay_list_get(&answer->fields, "h5_url");
	return true;
}

/* extra's JSON object field (scene_info, detail) as jsonb, or NULL. */
static Jsonb *
extra_object(const WxParamList *fields, const char *name)
{
	const char *text = wxpay_list_get(fields, name);
	Jsonb	   *jb;

	if (text == NULL)
		return NULL;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("extra.%s must be a JSON object for an API v3 merchant", name)));
	return jb;
}

/*
 * The v3 prepay body, from the same request fields as v2's (the caller's
 * validated arguments, see the header comment for the mapping).
 */
static Jsonb *
build_v3_prepay(const WxCall *call)
{
	const WxParamList *f = call->fields;
	const char *trade_type = wxpay_list_get(f, "trade_type");
	Jsonb	   *scene = extra_object(f, "scene_info");
	Jsonb	   *detail = extra_object(f, "detail");
	WxJson		j;

	wxpay_json_begin(&j);
	wxpay_json_string(&j, "appid", call->merchant->appid);
	wxpay_json_string(&j, "mchid", call->merchant->mch_id);
	wxpay_json_string(&j, "description", wxpay_list_get(f, "body"));
	wxpay_json_string(&j, "out_trade_no", call->out_trade_no);
	wxpay_json_string(&j, "time_expire", wxpay_v3_time_from_v2(wxpay_list_get(f, "time_expire")));
	wxpay_json_string(&j, "attach", wxpay_list_get(f, "attach"));
	wxpay_json_string(&j, "notify_url", wxpay_list_get(f, "notify_url"));
	wxpay_json_string(&j, "goods_tag", wxpay_list_get(f, "goods_tag"));
	wxpay_json_object(&j, "amount");
	wxpay_json_int(&j, "total", pg_strtoint32(wxpay_list_get(f, "total_fee")));
	wxpay_json_string(&j, "currency", wxpay_list_get(f, "fee_type"));
	wxpay_json_end(&j);
	if (strcmp(trade_type, "JSAPI") == 0)
	{
		wxpay_json_object(&j, "payer");
		wxpay_json_string(&j, "openid", wxpay_list_get(f, "openid"));
		wxpay_json_end(&j);
	}
	if (detail != NULL)
	{
		wxpay_json_object(&j, "detail");
		wxpay_json_merge(&j, detail);
		wxpay_json_end(&j);
	}
	wxpay_json_object(&j, "scene_info");
	wxpay_json_string(&j, "payer_client_ip", wxpay_list_get(f, "spbill_create_ip"));
	wxpay_json_string(&j, "device_id", wxpay_list_get(f, "device_info"));
	if (scene != NULL)
		wxpay_json_merge(&j, scene);
	wxpay_json_end(&j);
	return wxpay_json_finish(&j);
}

static const WxEndpointV3 v3_prepay = {
	.method = "POST",
	.path = "/v3/pay/transactions/{trade_type}",
	.body = build_v3_prepay,
	.read = read_v3_prepay,
};

const WxEndpoint wx_endpoint_unifiedorder = {
	.name = "unifiedorder",
	.path = "/pay/unifiedorder",
	.client_cert = false,
	.source = "unifiedorder",
	.build = wxpay_build_fields,
	.read = read_prepay,
	.apply = store_prepay,
	.v3 = &v3_prepay,
};

/* The unifiedorder request: required fields, then the optional ones. */
static void
build_unifiedorder_request(const WxUnifiedOrder *uo, const WxMerchant *m,
						   const char *time_expire, WxParamList *req)
{
	const char *notify_url = wxpay_list_get(&uo->extra, "notify_url");

	if (notify_url == NULL)
		notify_url = m->notify_url;
	if (notify_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("merchant %s has no notify_url and extra.notify_url is not given", m->mch_id)));

	wxpay_list_init(req, uo->extra.count + 16);
	for (int i = 0; i < uo->extra.count; i++)
		if (strcmp(uo->extra.items[i].name, "notify_url") != 0 &&
			strcmp(uo->extra.items[i].name, "time_expire") != 0)
			req->items[req->count++] = uo->extra.items[i];
	wxpay_list_add_cstr(req, "body", uo->body);
	wxpay_list_add_cstr(req, "out_trade_no", uo->out_trade_no);
	wxpay_list_add_cstr(req, "total_fee", psprintf("%d", uo->total_fee));
	wxpay_list_add_cstr(req, "spbill_create_ip", uo->client_ip);
	wxpay_list_add_cstr(req, "notify_url", notify_url);
	wxpay_list_add_cstr(req, "trade_type", uo->trade_type);
	wxpay_list_add_cstr(req, "time_expire", time_expire);
}

/*
 * wxpay_unifiedorder(mch_id, out_trade_no, total_fee, body,
 *					  spbill_create_ip, trade_type, extra) -> jsonb
 */
Datum
wxpay_unifiedorder(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	WxUnifiedOrder uo;
	WxParamList req;
	WxParamList out;
	WxCall		call;
	WxAnswer	answer;

	read_unifiedorder_args(fcinfo, &uo);

	SPI_connect();
	wxpay_call_init(&call, &wx_endpoint_unifiedorder, wxpay_merchant_get(uo.mch_id, CurrentMemoryContext));
	require_trade_type_fields(&uo, call.merchant);
	normalise_time_expire(&uo);
	check_time_expire(&uo);
	build_unifiedorder_request(&uo, call.merchant, record_order(&uo), &req);
	call.out_trade_no = uo.out_trade_no;
	call.fields = &req;
	wxpay_endpoint_call(&call, &answer);

	wxpay_list_init(&out, 4);
	if (answer.payment.prepay_id)
		wxpay_list_add_cstr(&out, "prepay_id", answer.payment.prepay_id);
	wxpay_list_add_cstr(&out, "trade_type", uo.trade_type);
	if (answer.payment.code_url)
		wxpay_list_add_cstr(&out, "code_url", answer.payment.code_url);
	if (answer.payment.mweb_url)
		wxpay_list_add_cstr(&out, "mweb_url", answer.payment.mweb_url);
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, &out));
}
