/*
 * proto_v2.c
 *	  WeChat Pay merchant API v2 on the wire: signed XML requests, and the
 *	  judgement of every answer before anything acts on it.
 *
 * An answer must parse, return_code must be SUCCESS (FAIL bodies are
 * unsigned and never trusted), the signature must verify with the
 * merchant's key and algorithm, and appid/mch_id must be the merchant's
 * own.  result_code FAIL is then a verified refusal with WeChat's
 * err_code.  v2 field names are read here and in the endpoints' read
 * functions, nowhere else.
 */
#include "endpoint.h"

#include "utils/builtins.h"

/*
 * A POST of the endpoint's fields with the common ones, signed with the
 * merchant's algorithm, as XML.
 */
static bool
v2_request(const WxCall *call, WxHttpRequest *http, WxFailure *fail)
{
	const WxMerchant *m = call->merchant;
	char	   *sign;
	WxParamList fields;
	WxParamList *req = &fields;

	wxpay_list_init(req, 16);
	call->endpoint->build(call, req);
	wxpay_http_request_init(http, "POST", psprintf("%s%s", m->api_base, call->endpoint->path),
							call->endpoint->max_answer ? call->endpoint->max_answer : WX_XML_MAX_BODY);
	wxpay_list_add_cstr(req, "appid", m->appid);
	wxpay_list_add_cstr(req, "mch_id", m->mch_id);
	wxpay_list_add_cstr(req, "nonce_str", wxpay_make_nonce(32));
	if (m->sign_type != WX_SIGN_MD5)
		wxpay_list_add_cstr(req, "sign_type", wx_sign_type_name(m->sign_type));
	sign = wxpay_sign_list(req, m->sign_type, m->api_key, strlen(m->api_key));
	wxpay_list_add_cstr(req, "sign", sign);
	http->body = wxpay_xml_from_list(req, &http->body_len);
	wxpay_http_add_header(http, "Content-Type: text/xml; charset=utf-8");
	return true;
}

/*
 * Judge an answer: true when it is an authentic SUCCESS answer from this
 * merchant's WeChat Pay (resp then holds its fields), otherwise false with
 * what is wrong.  result_code is left to wxpay_v2_result.
 */
static bool
v2_judge(const WxCall *call, const WxHttpResponse *http, WxAnswer *answer,
		 WxFailure *fail)
{
	WxParamList *resp = &answer->fields;
	const WxMerchant *m = call->merchant;
	const char *path = call->endpoint->path;
	WxXmlError	err;

	if (wxpay_xml_parse(http->body ? http->body : "", http->len, resp, NULL, &err) != WX_XML_OK)
		return wxpay_fail(fail, WX_FAIL_UNTRUSTED,
						  psprintf("%s answered with a body that is not valid XML: %s",
								   path, err.message));
	/*
	 * A file endpoint's refusal (No Bill Exist, Bill Creating) is an
	 * unsigned FAIL message, no less trustworthy than the unsigned file
	 * itself: its read tells them apart.
	 */
	if (call->endpoint->file_answer && wxpay_list_is(resp, "return_code", "FAIL"))
		return true;
	if (!wxpay_list_is(resp, "return_code", "SUCCESS"))
		return wxpay_v2_return_failure(path, resp, fail);
	if (!wxpay_verify_list(resp, m->sign_type, m->api_key, strlen(m->api_key)))
		return wxpay_fail(fail, WX_FAIL_UNTRUSTED,
						  psprintf("%s answered with a signature that does not verify", path));
	if (!wxpay_list_is(resp, "mch_id", m->mch_id) || !wxpay_list_is(resp, "appid", m->appid))
		return wxpay_fail(fail, WX_FAIL_UNTRUSTED,
						  psprintf("%s answered for another merchant (appid or mch_id differs)", path));
	return true;
}

/*
 * Whether a file endpoint's body is the file: anything but XML, which
 * starts with '<' after an optional BOM and white space (gzip starts with
 * 1f 8b, a bill with its header).
 */
static bool
v2_is_file(const char *body, size_t len)
{
	size_t		i = 0;

	if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	return i == len || body[i] != '<';
}

const WxProtocol wx_protocol_v2 = {
	.name = "v2",
	.request = v2_request,
	.judge = v2_judge,
	.is_file = v2_is_file,
};

/*
 * An answer whose return_code is not SUCCESS: an unsigned communication
 * error (a wrong key's SIGN ERROR, a bad parameter), never trusted, with
 * its return_msg.  File endpoints, whose refusals v2_judge lets through to
 * their read, end here too for every refusal they do not understand.
 */
bool
wxpay_v2_return_failure(const char *path, const WxParamList *resp, WxFailure *fail)
{
	const char *return_msg = wxpay_list_get(resp, "return_msg");

	return wxpay_fail(fail, WX_FAIL_UNTRUSTED,
					  psprintf("%s answered return_code %s: %s", path,
							   wxpay_list_is(resp, "return_code", "FAIL") ? "FAIL" : "missing or invalid",
							   return_msg ? return_msg : "(no return_msg)"));
}

/* result_code SUCCESS, or false with WeChat's refusal. */
bool
wxpay_v2_result(const WxEndpoint *ep, const WxParamList *resp, WxFailure *fail)
{
	if (wxpay_list_is(resp, "result_code", "SUCCESS"))
		return true;
	return wxpay_fail_remote(fail, ep->path, wxpay_list_get(resp, "err_code"),
							 wxpay_list_get(resp, "err_code_des"));
}

/* yyyyMMddHHmmss in Beijing time as timestamptz text, or NULL if malformed. */
char *
wxpay_v2_time(const char *t)
{
	if (t == NULL || strlen(t) != 14 || strspn(t, "0123456789") != 14)
		return NULL;
	return psprintf("%.4s-%.2s-%.2s %.2s:%.2s:%.2s+08", t, t + 4, t + 6, t + 8, t + 10, t + 12);
}

/* yyyy-MM-dd HH:mm:ss in Beijing time as timestamptz text, or NULL. */
const char *
wxpay_v2_refund_time(const char *t)
{
	static const char shape[] = "dddd-dd-dd dd:dd:dd";

	if (t == NULL || strlen(t) != strlen(shape))
		return NULL;
	for (int i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != shape[i])
			return NULL;
	return psprintf("%s+08", t);
}

/* The payer fields worth keeping from a verified report. */
static Jsonb *
payer_fields(const WxParamList *fields)
{
	static const char *const names[] = {"openid", "is_subscribe", "bank_type", "cash_fee",
		"cash_fee_type", "fee_type", "coupon_fee", "coupon_count", "settlement_total_fee",
	"trade_type", "device_info"};
	WxParamList payer;

	wxpay_list_init(&payer, lengthof(names));
	for (size_t i = 0; i < lengthof(names); i++)
	{
		const WxParam *p = wx_params_find(fields->items, fields->count, names[i]);

		if (p != NULL)
			payer.items[payer.count++] = *p;
	}
	return wxpay_list_to_jsonb(&payer);
}

/*
 * The payment an orderquery answer or a payment notification describes
 * (the two carry the same fields), as a report of state.
 */
void
wxpay_v2_payment_report(const WxParamList *fields, const char *state,
						WxPaymentReport *r)
{
	memset(r, 0, sizeof(*r));
	r->out_trade_no = wxpay_list_get(fields, "out_trade_no");
	r->state = state;
	r->total_fee = wxpay_list_get(fields, "total_fee");
	r->transaction_id = wxpay_list_get(fields, "transaction_id");
	r->paid_at = wxpay_v2_time(wxpay_list_get(fields, "time_end"));
	r->payer = payer_fields(fields);
}
