/*
 * bill_v3.c
 *	  API v3 bills (wxpay-v3-api.md §9.6): the v3 parts of the downloadbill
 *	  and downloadfundflow endpoints of bill.c, GET /v3/bill/tradebill and
 *	  GET /v3/bill/fundflowbill, and the download of the file they name.
 *
 * The first step is an ordinary v3 call whose answer is verified by its
 * Wechatpay-Serial (proto_v3.c): hash_type SHA1, hash_value, download_url.
 * The second GETs the download_url with a v3 Authorization over its path
 * and query: the pipeline stops after read with answer->file_path set, and
 * its caller fetches the file (wxpay_named_file_request, then
 * wxpay_named_file_finish, which applies): wxpay_endpoint_call at once,
 * the worker outside any transaction, as every transfer.  WeChat Pay does
 * not sign that answer, so the file is trusted by TLS to the merchant's
 * API host and by its SHA-1, which must be the signed hash_value: the
 * SHA-1 of the decompressed text (a gzip file is inflated first), checked
 * by bill_store.c before anything is stored.  The Authorization goes to
 * the merchant's api_base and nowhere else: a download_url on another
 * host is refused without a request.
 *
 * 400 NO_STATEMENT_EXIST is v2's No Bill Exist (a day without trades,
 * recorded as such) and 400 STATEMENT_CREATING v2's Bill Creating (try
 * later, WX001).  From there on a v3 bill is a v2 one: bill.c's apply
 * imports and reconciles it into the same tables.
 */
#include "postgres.h"

#include <ctype.h>

#include "utils/builtins.h"

#include "bill.h"
#include "endpoint.h"
#include "wx_v3.h"

/* The call's yyyyMMdd day as v3's yyyy-MM-dd. */
static char *
v3_day(const WxCall *call)
{
	const char *d = call->bill_date;

	return psprintf("%.4s-%.2s-%.2s", d, d + 4, d + 6);
}

/* &tar_type=GZIP when the caller asked for gzip. */
static const char *
tar_type(const WxCall *call)
{
	return call->fields && wxpay_list_is(call->fields, "tar_type", "GZIP") ? "&tar_type=GZIP" : "";
}

/* The trade bill's query: the day, bill_type (ALL...), tar_type. */
static char *
tradebill_query(const WxCall *call)
{
	return psprintf("bill_date=%s&bill_type=%s%s", v3_day(call), call->bill_type, tar_type(call));
}

/* The fund-flow bill's query: account_type in v3's capitals (Basic is BASIC). */
static char *
fundflowbill_query(const WxCall *call)
{
	char	   *account = pstrdup(call->bill_type);

	for (char *c = account; *c; c++)
		*c = pg_ascii_toupper((unsigned char) *c);
	return psprintf("bill_date=%s&account_type=%s%s", v3_day(call), account, tar_type(call));
}

/* Whether s is 40 hex digits (a SHA-1, in either case). */
static bool
is_sha1_hex(const char *s)
{
	if (s == NULL || strlen(s) != 40)
		return false;
	for (; *s; s++)
		if (!isxdigit((unsigned char) *s))
			return false;
	return true;
}

/* The scheme and host of a URL, clipped, for messages (never its token). */
static char *
url_host(const char *url)
{
	const char *host = strstr(url, "://");
	size_t		n = host ? (size_t) (host + 3 - url) + strcspn(host + 3, "/?#") : strcspn(url, "/?#");
	char	   *out = pnstrdup(url, Min(n, 100));

	for (char *c = out; *c; c++)
		if (*c < ' ' || *c > '~')
			*c = '?';
	return out;
}

/*
 * A verified tradebill or fundflowbill answer: no bill, a bill being made,
 * a refusal, or the file it names, for the caller to fetch (answer->
 * file_path) and bill_store.c to check against hash_value.
 */
static bool
read_v3_bill(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *f = &answer->fields;
	const char *api = wxpay_call_path(call);
	const char *hash = wxpay_list_get(f, "hash_value");
	const char *url = wxpay_list_get(f, "download_url");
	const char *path;

	if (!wxpay_v3_result(call, answer, fail))
	{
		if (fail->err_code != NULL && strcmp(fail->err_code, "NO_STATEMENT_EXIST") == 0)
			return (answer->no_file = true);
		return false;			/* STATEMENT_CREATING is WX001, as Bill Creating */
	}
	if (!wxpay_list_is(f, "hash_type", "SHA1") || !is_sha1_hex(hash) || url == NULL)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("%s answered without hash_type SHA1, a SHA-1 hash_value and a download_url", api));
	if ((path = wx_v3_url_path_on(call->merchant->api_base, url)) == NULL)
	{
		wxpay_fail(fail, WX_FAIL_UNTRUSTED,
				   psprintf("%s named a download_url on %s, not on the merchant's api_base %s: not fetched",
							api, url_host(url), call->merchant->api_base));
		fail->hint = "The Authorization header goes to the merchant's own API host only.";
		return false;
	}
	answer->file_path = path;
	answer->file_sha1 = hash;
	return true;
}

const WxEndpointV3 wx_v3_tradebill = {
	.method = "GET",
	.path = "/v3/bill/tradebill",
	.query = tradebill_query,
	.read = read_v3_bill,
};

const WxEndpointV3 wx_v3_fundflowbill = {
	.method = "GET",
	.path = "/v3/bill/fundflowbill",
	.query = fundflowbill_query,
	.read = read_v3_bill,
};

/*
 * The request for the file a verified answer named (answer->file_path):
 * a GET on the merchant's api_base with a v3 Authorization over its path
 * and query, in the current memory context (no SPI: the worker makes it
 * outside any transaction).
 */
bool
wxpay_named_file_request(const WxCall *call, const WxAnswer *answer, WxHttpRequest *req,
						 WxFailure *fail)
{
	if (!wxpay_v3_signed_request(call->merchant, "GET", answer->file_path, NULL, "*/*", NULL,
								 call->endpoint->max_answer, req, fail))
		return false;
	req->ca_pem = call->merchant->ca_pem;
	return true;
}

/*
 * Why a download failed: the transfer's message, and the code and message
 * of an (unsigned) v3 error body when there is one (an expired link).
 */
static char *
download_failure(const WxCall *call, const char *message, const WxHttpResponse *resp)
{
	Jsonb	   *jb = resp->status >= 400 ? wxpay_v3_parse(resp->body, resp->len) : NULL;
	const char *code = NULL;
	const char *text = NULL;
	WxParamList f;
	char	   *out;

	if (jb != NULL)
	{
		wxpay_v3_fields(jb, &f);
		code = wxpay_list_get(&f, "code");
		text = wxpay_list_get(&f, "message");
	}
	if (code == NULL)
		return psprintf("the download of the file %s named failed: %s", wxpay_call_path(call), message);
	out = psprintf("the download of the file %s named failed: %s (%s%s%s)", wxpay_call_path(call), message,
				   code, text ? ": " : "", text ? text : "");
	wx_utf8_clip(out);
	return out;
}

/*
 * The fetched file as the answer's file (unsigned: bill_store.c checks it
 * against file_sha1), then the endpoint's apply.  A failed download is an
 * outcome unknown (WX001): asking again gives a new download_url.
 */
bool
wxpay_named_file_finish(const WxCall *call, WxHttpFailure transport, char *message,
						const WxHttpResponse *resp, WxAnswer *answer, WxFailure *fail)
{
	const WxEndpoint *ep = call->endpoint;

	if (transport != WX_HTTP_OK)
		return wxpay_fail(fail, transport == WX_HTTP_UNTRUSTED ? WX_FAIL_UNTRUSTED : WX_FAIL_TRANSPORT,
						  download_failure(call, message, resp));
	answer->file = resp->body ? resp->body : "";
	answer->file_len = resp->len;
	answer->file_path = NULL;
	return ep->apply == NULL || ep->apply(call, answer, fail);
}
