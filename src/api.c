/*
 * api.c
 *	  Merchants, the signed request/verified response pipeline, and the
 *	  SQL functions that talk to WeChat Pay: wxpay_unifiedorder, and the
 *	  client parameters wxpay_app_params and wxpay_jsapi_params.
 *
 * Every answer is judged the same way before anything acts on it: it must
 * parse, return_code must be SUCCESS (FAIL bodies are unsigned and never
 * trusted), the signature must verify with the merchant's key and
 * algorithm, and appid/mch_id must be the merchant's own.  The judgement is
 * a message rather than an error so the worker can record it and move on.
 *
 * These functions run as the extension owner (SECURITY DEFINER with a
 * pinned search_path); every SQL name here is schema-qualified.
 */
#include "wxpay.h"

#include <arpa/inet.h>
#include <ctype.h>

#include "catalog/pg_collation.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "http.h"

PG_FUNCTION_INFO_V1(wxpay_unifiedorder);
PG_FUNCTION_INFO_V1(wxpay_app_params);
PG_FUNCTION_INFO_V1(wxpay_jsapi_params);

#define ERRCODE_WXPAY_REMOTE ERRCODE_EXTERNAL_ROUTINE_EXCEPTION

/* Column i (1-based) of the first SPI row, or NULL. */
static char *
spi_column(int i)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i);
}

static void
spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "SPI failed while %s: %s", what, SPI_result_code_string(rc));
}

/*
 * Load a merchant, or NULL if there is none.  The caller must be
 * connected to SPI; strings live in the SPI procedure context.
 */
WxMerchant *
wxpay_merchant_find(const char *mch_id)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2] = {CStringGetTextDatum(mch_id), ObjectIdGetDatum(GetOuterUserId())};
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	WxMerchant *m;
	char	   *sign_type;

	/*
	 * Inside these SECURITY DEFINER functions current_user is the owner; the
	 * caller is the outer user (the session's role, or its SET ROLE).  Saved:
	 * every notification looks its merchant up.
	 */
	spi_check(SPI_execute_plan(wxpay_saved_plan(&plan,
												"SELECT mch_id, appid, api_key, sign_type, notify_url,"
												" api_base, ca_pem, cert_pem, key_pem,"
												" allowed_roles IS NULL OR EXISTS (SELECT FROM pg_catalog.unnest(allowed_roles) r"
												"  JOIN pg_catalog.pg_roles g ON g.rolname OPERATOR(pg_catalog.=) r"
												"  WHERE pg_catalog.pg_has_role($2, g.oid, 'MEMBER'))"
												" FROM wxpay.merchants WHERE mch_id OPERATOR(pg_catalog.=) $1",
												2, argtypes),
							   args, NULL, true, 1),
			  SPI_OK_SELECT, "reading the merchant");
	if (SPI_processed == 0)
		return NULL;

	m = palloc0(sizeof(WxMerchant));
	m->mch_id = spi_column(1);
	m->appid = spi_column(2);
	m->api_key = spi_column(3);
	sign_type = spi_column(4);
	m->sign_type = wx_sign_type_parse(sign_type, strlen(sign_type));
	m->notify_url = spi_column(5);
	m->api_base = spi_column(6);
	m->ca_pem = spi_column(7);
	m->cert_pem = spi_column(8);
	m->key_pem = spi_column(9);
	m->caller_allowed = strcmp(spi_column(10), "t") == 0;
	return m;
}

/* A merchant the caller may act for; anything else is an ERROR. */
WxMerchant *
wxpay_merchant_get(const char *mch_id)
{
	WxMerchant *m = wxpay_merchant_find(mch_id);

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown merchant \"%s\"", mch_id),
				 errhint("Merchants are rows of wxpay.merchants.")));
	if (!m->caller_allowed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not act for merchant \"%s\"",
						GetUserNameFromId(GetOuterUserId(), false), mch_id),
				 errhint("The merchant's allowed_roles in wxpay.merchants lists who may.")));
	return m;
}

/*
 * Complete a request with the common fields, sign it with the merchant's
 * algorithm and return the XML body.
 */
char *
wxpay_request_body(const WxMerchant *m, WxParamList *req, size_t *len)
{
	char	   *sign;

	wxpay_list_add_cstr(req, "appid", m->appid);
	wxpay_list_add_cstr(req, "mch_id", m->mch_id);
	wxpay_list_add_cstr(req, "nonce_str", wxpay_make_nonce(32));
	if (m->sign_type != WX_SIGN_MD5)
		wxpay_list_add_cstr(req, "sign_type", wx_sign_type_name(m->sign_type));
	sign = wxpay_sign_list(req, m->sign_type, m->api_key, strlen(m->api_key));
	wxpay_list_add_cstr(req, "sign", sign);
	return wxpay_xml_from_list(req, len);
}

/*
 * Judge a response body: NULL when it is an authentic SUCCESS answer from
 * this merchant's WeChat Pay (resp then holds its fields), otherwise what
 * is wrong with it.  result_code is left to the caller.
 */
char *
wxpay_judge_response(const WxMerchant *m, const char *path, const char *body,
					 size_t len, WxParamList *resp)
{
	WxXmlError	err;
	WxXmlStatus status = wxpay_xml_parse(body, len, resp, NULL, &err);
	const char *return_msg;

	if (status != WX_XML_OK)
		return psprintf("%s answered with a body that is not valid XML: %s",
						path, err.message);
	if (!wxpay_list_is(resp, "return_code", "SUCCESS"))
	{
		return_msg = wxpay_list_get(resp, "return_msg");
		return psprintf("%s answered return_code %s: %s", path,
						wxpay_list_is(resp, "return_code", "FAIL") ? "FAIL" : "missing or invalid",
						return_msg ? return_msg : "(no return_msg)");
	}
	if (!wxpay_verify_list(resp, m->sign_type, m->api_key, strlen(m->api_key)))
		return psprintf("%s answered with a signature that does not verify", path);
	if (!wxpay_list_is(resp, "mch_id", m->mch_id) || !wxpay_list_is(resp, "appid", m->appid))
		return psprintf("%s answered for another merchant (appid or mch_id differs)", path);
	return NULL;
}

/*
 * Send a signed request to path and return the verified answer; any
 * transport failure or unauthentic answer is an ERROR.
 */
WxParamList *
wxpay_call(const WxMerchant *m, const char *path, WxParamList *req,
		   bool client_cert)
{
	WxHttpRequest http;
	WxHttpResponse response;
	WxParamList *resp = palloc0(sizeof(WxParamList));
	char	   *problem;

	memset(&http, 0, sizeof(http));
	http.url = psprintf("%s%s", m->api_base, path);
	http.body = wxpay_request_body(m, req, &http.body_len);
	http.ca_pem = m->ca_pem;
	if (client_cert)
	{
		http.cert_pem = m->cert_pem;
		http.key_pem = m->key_pem;
	}
	wxpay_http_post(&http, &response);

	problem = wxpay_judge_response(m, path, response.body ? response.body : "",
								   response.len, resp);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WXPAY_REMOTE),
				 errmsg("WeChat Pay call failed: %s", problem),
				 errdetail("Merchant %s, endpoint %s.", m->mch_id, http.url)));
	return resp;
}

/*
 * The jsonb a function returns, built in the caller's memory before the
 * SPI connection (and its memory) goes away.
 */
Jsonb *
wxpay_spi_result(MemoryContext caller, const WxParamList *list)
{
	Jsonb	   *result;

	MemoryContextSwitchTo(caller);
	result = wxpay_list_to_jsonb(list);
	SPI_finish();
	return result;
}

/* A verified answer whose result_code is FAIL becomes an ERROR. */
void
wxpay_require_result(const WxParamList *resp, const char *path)
{
	const char *err_code;
	const char *err_code_des;

	if (wxpay_list_is(resp, "result_code", "SUCCESS"))
		return;
	err_code = wxpay_list_get(resp, "err_code");
	err_code_des = wxpay_list_get(resp, "err_code_des");
	ereport(ERROR,
			(errcode(ERRCODE_WXPAY_REMOTE),
			 errmsg("WeChat Pay refused %s: %s", path, err_code ? err_code : "result_code FAIL"),
			 errdetail("err_code: %s, err_code_des: %s",
					   err_code ? err_code : "(none)",
					   err_code_des ? err_code_des : "(none)")));
}

/*--------------------------------------------------------------------
 * Validation of unifiedorder arguments
 *--------------------------------------------------------------------
 */

/* The optional fields a unifiedorder request may carry, with limits. */
typedef struct ExtraField
{
	const char *name;
	int			max_bytes;
	bool		json_ok;		/* may be given as a JSON object */
} ExtraField;

static const ExtraField extra_fields[] = {
	{"openid", 128, false},
	{"product_id", 32, false},
	{"attach", 127, false},
	{"detail", 6000, true},
	{"time_start", 14, false},
	{"time_expire", 14, false},
	{"limit_pay", 32, false},
	{"goods_tag", 32, false},
	{"fee_type", 16, false},
	{"device_info", 32, false},
	{"scene_info", 256, true},
	{"receipt", 8, false},
	{"notify_url", 256, false},
};

/* Every argument of a money function is required: NULL is an error. */
void
wxpay_require_args(FunctionCallInfo fcinfo, const char *const *names, int nargs)
{
	for (int i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", names[i])));
}

/*
 * A text value WeChat Pay v2 can carry and both sides sign identically:
 * no 4-byte UTF-8, no control characters, no surrounding white space.
 */
static void
check_text_value(const char *name, const char *value, size_t len, int max_bytes)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	if ((int) len > max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is %zu bytes long, the limit is %d bytes", name, len, max_bytes)));
	if (wx_utf8_invalid_at(value, len, true) >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s contains a 4-byte UTF-8 character", name),
				 errdetail("WeChat Pay v2 accepts only 1- to 3-byte UTF-8 sequences."),
				 errhint("Remove emoji and other supplementary-plane characters.")));
	if (wx_xml_value_invalid_at(value, len) >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s contains a control character", name)));
	if (isspace((unsigned char) value[0]) || isspace((unsigned char) value[len - 1]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not start or end with white space", name),
				 errdetail("Some WeChat Pay SDKs trim values before signing; surrounding white space would make signatures disagree.")));
}

static bool
matches(const char *value, const char *pattern)
{
	return DatumGetBool(DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
												CStringGetTextDatum(value),
												CStringGetTextDatum(pattern)));
}

void
wxpay_check_pattern(const char *name, const char *value, const char *pattern,
					const char *hint)
{
	if (!matches(value, pattern))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", name, value),
				 errhint("%s", hint)));
}

static void
check_extra_value(const char *name, const char *value)
{
	if (strcmp(name, "time_start") == 0 || strcmp(name, "time_expire") == 0)
		wxpay_check_pattern(name, value, "^2[0-9]{3}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$",
					  "Use yyyyMMddHHmmss in Beijing time (GMT+8).");
	else if (strcmp(name, "limit_pay") == 0)
		wxpay_check_pattern(name, value, "^no_credit$", "The only value is no_credit.");
	else if (strcmp(name, "receipt") == 0)
		wxpay_check_pattern(name, value, "^Y$", "The only value is Y.");
	else if (strcmp(name, "fee_type") == 0)
		wxpay_check_pattern(name, value, "^[A-Z]{3}$", "Use an ISO 4217 code such as CNY.");
	else if (strcmp(name, "notify_url") == 0)
		wxpay_check_pattern(name, value, "^https?://[^?#[:space:]]+$",
					  "notify_url must be an absolute http(s) URL without a query string.");
	else if (strcmp(name, "product_id") == 0 || strcmp(name, "device_info") == 0)
		wxpay_check_pattern(name, value, "^[0-9A-Za-z_.-]+$", "Use letters, digits, '_', '.' and '-'.");
}

/*
 * Validate extra and turn it into the request fields it carries, each a
 * string; detail and scene_info may come as JSON objects.
 */
static void
extra_to_list(Jsonb *extra, WxParamList *out)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	const ExtraField *field = NULL;

	if (!JB_ROOT_IS_OBJECT(extra))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("extra must be a JSON object")));
	wxpay_list_init(out, JB_ROOT_COUNT(extra) + 1);
	it = JsonbIteratorInit(&extra->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *value;

		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(v.val.string.val, v.val.string.len);

			field = NULL;
			for (int i = 0; i < lengthof(extra_fields); i++)
				if (strcmp(extra_fields[i].name, name) == 0)
					field = &extra_fields[i];
			if (field == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown key \"%s\" in extra", name),
						 errhint("Allowed: openid, product_id, attach, detail, time_start, time_expire, limit_pay, goods_tag, fee_type, device_info, scene_info, receipt, notify_url.")));
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (v.type == jbvNull)
			continue;
		if (v.type == jbvString)
			value = pnstrdup(v.val.string.val, v.val.string.len);
		else if (v.type == jbvBinary && field->json_ok)
			value = JsonbToCString(NULL, v.val.binary.data, v.val.binary.len);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("extra.%s must be a string%s", field->name,
							field->json_ok ? " or a JSON object" : "")));
		check_text_value(psprintf("extra.%s", field->name), value, strlen(value),
						 field->max_bytes);
		check_extra_value(field->name, value);
		wxpay_list_add_cstr(out, field->name, value);
	}
}

/* A validated unifiedorder call. */
typedef struct UnifiedOrder
{
	char	   *mch_id;
	char	   *out_trade_no;
	int32		total_fee;
	char	   *body;
	char	   *client_ip;
	char	   *trade_type;
	WxParamList extra;
	Jsonb	   *params;			/* extra as stored on the order */
} UnifiedOrder;

static void
check_ip(const char *ip)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (strlen(ip) > 64 ||
		(inet_pton(AF_INET, ip, buf) != 1 && inet_pton(AF_INET6, ip, buf) != 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid spbill_create_ip \"%s\"", ip),
				 errhint("Use the client's IPv4 or IPv6 address (the server's for NATIVE).")));
}

static void
require_extra(const UnifiedOrder *uo, const char *field)
{
	if (wx_params_find(uo->extra.items, uo->extra.count, field) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trade_type %s requires extra.%s", uo->trade_type, field)));
}

static void
read_unifiedorder_args(FunctionCallInfo fcinfo, UnifiedOrder *uo)
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
	wxpay_check_pattern("out_trade_no", uo->out_trade_no, "^[0-9A-Za-z_|*@-]{1,32}$",
				  "Use 1 to 32 characters from 0-9, A-Z, a-z and _-|*@.");
	check_text_value("body", uo->body, strlen(uo->body), 128);
	check_ip(uo->client_ip);
	wxpay_check_pattern("trade_type", uo->trade_type, "^(APP|JSAPI|NATIVE|MWEB)$",
				  "Use APP, JSAPI, NATIVE or MWEB.");
	extra_to_list(uo->params, &uo->extra);
	if (strcmp(uo->trade_type, "JSAPI") == 0)
		require_extra(uo, "openid");
	else if (strcmp(uo->trade_type, "NATIVE") == 0)
		require_extra(uo, "product_id");
	else if (strcmp(uo->trade_type, "MWEB") == 0)
		require_extra(uo, "scene_info");
	uo->params = wxpay_list_to_jsonb(&uo->extra);
}

/*--------------------------------------------------------------------
 * The order row
 *--------------------------------------------------------------------
 */

#define ORDER_INSERT \
	"INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee," \
	" spbill_create_ip, attach, openid, product_id, params, time_expire)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10," \
	" COALESCE(pg_catalog.to_timestamp($11 OPERATOR(pg_catalog.||) '+08', 'YYYYMMDDHH24MISSTZH')," \
	"  pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $12)))" \
	" ON CONFLICT (mch_id, out_trade_no) DO NOTHING" \
	" RETURNING pg_catalog.to_char(time_expire AT TIME ZONE INTERVAL '+08:00', 'YYYYMMDDHH24MISS')"

#define ORDER_EXISTING \
	"SELECT pg_catalog.to_char(time_expire AT TIME ZONE INTERVAL '+08:00', 'YYYYMMDDHH24MISS')," \
	" state, trade_type OPERATOR(pg_catalog.=) $3 AND body OPERATOR(pg_catalog.=) $4" \
	" AND total_fee OPERATOR(pg_catalog.=) $5 AND spbill_create_ip OPERATOR(pg_catalog.=) $6" \
	" AND params OPERATOR(pg_catalog.=) $10" \
	" FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2" \
	" FOR UPDATE"

static Datum
text_or_null(const WxParamList *list, const char *name, char *nulls, int i)
{
	const char *v = wxpay_list_get(list, name);

	nulls[i] = v ? ' ' : 'n';
	return v ? CStringGetTextDatum(v) : (Datum) 0;
}

/*
 * Insert the order, or re-enter an existing one when every parameter is
 * identical (WeChat Pay's rule for a fresh prepay_id).  Returns the
 * order's time_expire as yyyyMMddHHmmss in GMT+8.
 */
static char *
record_order(const UnifiedOrder *uo)
{
	Oid			types[12] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, FLOAT8OID};
	Datum		values[12];
	char		nulls[13] = "            ";
	char	   *state;
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr existing_plan = NULL;

	values[0] = CStringGetTextDatum(uo->mch_id);
	values[1] = CStringGetTextDatum(uo->out_trade_no);
	values[2] = CStringGetTextDatum(uo->trade_type);
	values[3] = CStringGetTextDatum(uo->body);
	values[4] = Int32GetDatum(uo->total_fee);
	values[5] = CStringGetTextDatum(uo->client_ip);
	values[6] = text_or_null(&uo->extra, "attach", nulls, 6);
	values[7] = text_or_null(&uo->extra, "openid", nulls, 7);
	values[8] = text_or_null(&uo->extra, "product_id", nulls, 8);
	values[9] = JsonbPGetDatum(uo->params);
	values[10] = text_or_null(&uo->extra, "time_expire", nulls, 10);
	values[11] = Float8GetDatum((double) wxpay_order_ttl);

	wxpay_set_change_source("unifiedorder");
	spi_check(SPI_execute_plan(wxpay_saved_plan(&insert_plan, ORDER_INSERT, 12, types),
							   values, nulls, false, 1),
			  SPI_OK_INSERT_RETURNING, "recording the order");
	wxpay_set_change_source(NULL);
	if (SPI_processed == 1)
		return spi_column(1);

	spi_check(SPI_execute_plan(wxpay_saved_plan(&existing_plan, ORDER_EXISTING, 12, types),
							   values, nulls, false, 1),
			  SPI_OK_SELECT, "reading the existing order");
	if (SPI_processed != 1)
		elog(ERROR, "order %s vanished while being re-entered", uo->out_trade_no);
	state = spi_column(2);
	if (strcmp(state, "NOTPAY") != 0 && strcmp(state, "USERPAYING") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s is already %s", uo->out_trade_no, uo->mch_id, state),
				 errhint("A new payment needs a new out_trade_no.")));
	if (strcmp(spi_column(3), "t") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("order %s of merchant %s exists with different parameters", uo->out_trade_no, uo->mch_id),
				 errdetail("WeChat Pay accepts a repeated out_trade_no only with identical parameters."),
				 errhint("Use a new out_trade_no for a different amount or description.")));
	return spi_column(1);
}

static void
store_prepay(const UnifiedOrder *uo, const WxParamList *resp)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[6] = "     ";
	static SPIPlanPtr plan = NULL;

	values[0] = CStringGetTextDatum(uo->mch_id);
	values[1] = CStringGetTextDatum(uo->out_trade_no);
	values[2] = text_or_null(resp, "prepay_id", nulls, 2);
	values[3] = text_or_null(resp, "code_url", nulls, 3);
	values[4] = text_or_null(resp, "mweb_url", nulls, 4);
	spi_check(SPI_execute_plan(wxpay_saved_plan(&plan,
												"UPDATE wxpay.orders SET prepay_id = $3, code_url = $4,"
												" mweb_url = $5, prepay_at = pg_catalog.now()"
												" WHERE mch_id OPERATOR(pg_catalog.=) $1"
												" AND out_trade_no OPERATOR(pg_catalog.=) $2",
												5, types),
							   values, nulls, false, 1),
			  SPI_OK_UPDATE, "storing the prepay_id");
}

/* The unifiedorder request: required fields, then the optional ones. */
static void
build_unifiedorder_request(const UnifiedOrder *uo, const WxMerchant *m,
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
	UnifiedOrder uo;
	WxMerchant *m;
	WxParamList req;
	WxParamList *resp;
	WxParamList out;
	const char *prepay_id;

	read_unifiedorder_args(fcinfo, &uo);

	SPI_connect();
	m = wxpay_merchant_get(uo.mch_id);
	build_unifiedorder_request(&uo, m, record_order(&uo), &req);
	resp = wxpay_call(m, "/pay/unifiedorder", &req, false);
	wxpay_require_result(resp, "/pay/unifiedorder");

	prepay_id = wxpay_list_get(resp, "prepay_id");
	if (prepay_id == NULL || prepay_id[0] == '\0' ||
		!wxpay_list_is(resp, "trade_type", uo.trade_type))
		ereport(ERROR,
				(errcode(ERRCODE_WXPAY_REMOTE),
				 errmsg("WeChat Pay answered /pay/unifiedorder without a prepay_id for trade_type %s",
						uo.trade_type)));
	store_prepay(&uo, resp);

	wxpay_list_init(&out, 4);
	wxpay_list_add_cstr(&out, "prepay_id", prepay_id);
	wxpay_list_add_cstr(&out, "trade_type", uo.trade_type);
	if (wxpay_list_get(resp, "code_url"))
		wxpay_list_add_cstr(&out, "code_url", wxpay_list_get(resp, "code_url"));
	if (wxpay_list_get(resp, "mweb_url"))
		wxpay_list_add_cstr(&out, "mweb_url", wxpay_list_get(resp, "mweb_url"));
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, &out));
}

/*--------------------------------------------------------------------
 * Client parameters (再次签名)
 *--------------------------------------------------------------------
 */

static char *
unix_seconds(void)
{
	return psprintf("%ld", (long) timestamptz_to_time_t(GetCurrentTimestamp()));
}

/* The fields the client needs, before signing. */
typedef void (*ClientFields) (const WxMerchant *m, const char *prepay_id,
							  WxParamList *list);

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
client_params(FunctionCallInfo fcinfo, ClientFields fields, const char *sign_name)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *prepay_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxMerchant *m;
	WxParamList list;

	wxpay_check_pattern("prepay_id", prepay_id, "^[0-9A-Za-z_-]{1,64}$",
				  "Pass the prepay_id returned by wxpay_unifiedorder.");
	SPI_connect();
	m = wxpay_merchant_get(mch_id);
	wxpay_list_init(&list, 7);
	fields(m, prepay_id, &list);
	wxpay_list_add_cstr(&list, sign_name,
						wxpay_sign_list(&list, m->sign_type, m->api_key, strlen(m->api_key)));
	return wxpay_spi_result(caller, &list);
}

/*
 * wxpay_app_params(mch_id, prepay_id) -> jsonb, for the APP SDK's PayReq
 */
Datum
wxpay_app_params(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(client_params(fcinfo, app_fields, "sign"));
}

/*
 * wxpay_jsapi_params(mch_id, prepay_id) -> jsonb, for getBrandWCPayRequest
 * and wx.requestPayment
 */
Datum
wxpay_jsapi_params(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(client_params(fcinfo, jsapi_fields, "paySign"));
}
