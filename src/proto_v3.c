/*
 * proto_v3.c
 *	  WeChat Pay merchant API v3 on the wire (wxpay-v3-api.md §1-§6): JSON
 *	  requests built as jsonb and signed into the Authorization header, and
 *	  the judgement of every answer before anything acts on it.
 *
 * A 2xx answer must carry Wechatpay-Timestamp/-Nonce/-Signature/-Serial,
 * the serial must name one of the merchant's keys in wxpay.wechatpay_keys
 * (a platform certificate not past its expires_at, or the public key), the
 * signature must verify over the raw body within 300 s of our clock (a
 * probe does not), and only then is the body parsed; mchid and appid, when
 * the answer names them, must be the merchant's own.  Error answers (4xx,
 * WeChat Pay does not sign them) are read for their code and message only,
 * as refusals; 5xx, 429 and bodies without a code are outcomes unknown,
 * retried with identical parameters (§6.6).  v3 field names are read here
 * and in the endpoints' v3 read functions, nowhere else.
 */
#include "endpoint.h"

#include <time.h>

#include "common/jsonapi.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "catalog/pg_collation.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "args.h"
#include "spi_util.h"
#include "wx_rsa.h"
#include "wx_v3.h"

/* Largest v3 answer we read (a certificate list is a few KiB). */
#define V3_MAX_BODY (256 * 1024)
/* Deepest nesting of an answer that becomes named fields. */
#define V3_MAX_DEPTH 16
/* Deepest nesting, longest number an answer may have at all. */
#define V3_MAX_JSON_DEPTH 64
#define V3_MAX_NUMBER 40

/*--------------------------------------------------------------------
 * JSON bodies, built with jsonb (never by hand)
 *--------------------------------------------------------------------
 */

/* Start an object. */
void
wxpay_json_begin(WxJson *j)
{
	j->state = NULL;
	pushJsonbValue(&j->state, WJB_BEGIN_OBJECT, NULL);
}

/* Push a key of the current object. */
static void
json_key(WxJson *j, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&j->state, WJB_KEY, &k);
}

/* key: a string; nothing when value is NULL (v3 wants absent, not null). */
void
wxpay_json_string(WxJson *j, const char *key, const char *value)
{
	JsonbValue	v;

	if (value == NULL)
		return;
	json_key(j, key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(&j->state, WJB_VALUE, &v);
}

/* key: an integer (amounts in fen). */
void
wxpay_json_int(WxJson *j, const char *key, int64 value)
{
	JsonbValue	v;

	json_key(j, key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	pushJsonbValue(&j->state, WJB_VALUE, &v);
}

/* key: a nested object, filled until wxpay_json_end. */
void
wxpay_json_object(WxJson *j, const char *key)
{
	json_key(j, key);
	pushJsonbValue(&j->state, WJB_BEGIN_OBJECT, NULL);
}

/* Every member of object into the current object (a later key wins). */
void
wxpay_json_merge(WxJson *j, Jsonb *object)
{
	JsonbIterator *it = JsonbIteratorInit(&object->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_KEY || tok == WJB_VALUE)
			pushJsonbValue(&j->state, tok, &v);
}

/* End a nested object. */
void
wxpay_json_end(WxJson *j)
{
	pushJsonbValue(&j->state, WJB_END_OBJECT, NULL);
}

/* The finished object. */
Jsonb *
wxpay_json_finish(WxJson *j)
{
	return JsonbValueToJsonb(pushJsonbValue(&j->state, WJB_END_OBJECT, NULL));
}

/*--------------------------------------------------------------------
 * Reading answers
 *--------------------------------------------------------------------
 */

/*
 * Whether a body nests at most V3_MAX_JSON_DEPTH deep and has no number
 * longer than V3_MAX_NUMBER characters: what the parser and numeric_in
 * would raise an error for (stack depth, numeric overflow) is refused
 * before they see it.
 */
static bool
json_shape_ok(const char *s, size_t len)
{
	bool		in_string = false;
	int			depth = 0;
	int			number = 0;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
			continue;
		}
		number = strchr("0123456789+-.eE", c) != NULL && c != '\0' ? number + 1 : 0;
		if (number > V3_MAX_NUMBER)
			return false;
		if (c == '"')
			in_string = true;
		else if ((c == '{' || c == '[') && ++depth > V3_MAX_JSON_DEPTH)
			return false;
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/*
 * A body from the network as jsonb, or NULL when it is not a JSON object
 * in valid UTF-8: checked by the lexer first, so jsonb_in never raises.
 */
Jsonb *
wxpay_v3_parse(const char *body, size_t len)
{
	JsonLexContext *lex;
	Jsonb	   *jb;

	if (body == NULL || len == 0 || len > V3_MAX_BODY || memchr(body, '\0', len) != NULL ||
		!pg_verify_mbstr(GetDatabaseEncoding(), body, len, true) || !json_shape_ok(body, len))
		return NULL;
	lex = makeJsonLexContextCstringLen((char *) body, len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(body, len))));
	return JB_ROOT_IS_OBJECT(jb) && !JB_ROOT_IS_SCALAR(jb) ? jb : NULL;
}

/* The name of the next member of a container: prefix.key or prefix.index. */
static char *
member_name(const char *prefix, const char *key, int index)
{
	if (key == NULL)
		return prefix ? psprintf("%s.%d", prefix, index) : psprintf("%d", index);
	return prefix ? psprintf("%s.%s", prefix, key) : pstrdup(key);
}

/* A scalar's text (numbers as written, booleans true/false), NULL for null. */
static char *
scalar_text(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * An answer object as named fields: amount.total for nested members,
 * data.0.serial_no for array elements; nulls are left out.
 */
void
wxpay_v3_fields(Jsonb *jb, WxParamList *fields)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *prefix[V3_MAX_DEPTH + 1];
	int			index[V3_MAX_DEPTH + 1];
	int			depth = -1;
	char	   *key = NULL;

	wxpay_list_init(fields, 16);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		char	   *name;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
		{
			depth--;
			continue;
		}
		name = depth < 0 ? NULL : member_name(prefix[Min(depth, V3_MAX_DEPTH)], key,
											  index[Min(depth, V3_MAX_DEPTH)]++);
		key = NULL;
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
		{
			depth++;
			if (depth <= V3_MAX_DEPTH)
			{
				prefix[depth] = name;
				index[depth] = 0;
			}
			continue;
		}
		if (depth <= V3_MAX_DEPTH && (v.type != jbvNull))
			wxpay_list_add_cstr(fields, name, scalar_text(&v));
	}
}

/*
 * Members that are amounts or counts wherever they occur in a v3 object
 * (§5.3, §5.4, §6.4: amount.total, amount.refund, promotion_detail[].amount,
 * goods_detail[].quantity, ...): WeChat Pay sends them as JSON integers.
 */
static const char *const v3_integer_members[] = {
	"total", "refund", "payer_total", "payer_refund", "settlement_total", "settlement_refund",
	"discount_refund", "refund_fee", "amount", "refund_amount", "unit_price", "quantity",
	"refund_quantity", "wechatpay_contribute", "merchant_contribute", "other_contribute",
};

/* Whether a JSON number is an integer as written (no fraction, no exponent). */
static bool
json_integer(const JsonbValue *v)
{
	char	   *digits;

	if (v->type != jbvNumeric)
		return false;
	digits = scalar_text(v);
	digits += digits[0] == '-';
	return digits[0] != '\0' && strspn(digits, "0123456789") == strlen(digits);
}

/*
 * NULL when every amount-like member of an object (v3_integer_members, at
 * any depth) is a JSON integer; otherwise what is wrong, naming the member.
 * A string "100" where WeChat Pay sends 100 is not WeChat Pay's answer:
 * nothing reads it as an amount.
 */
char *
wxpay_v3_integers_check(Jsonb *jb)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok == WJB_VALUE && key != NULL && v.type != jbvNull)
			for (size_t i = 0; i < lengthof(v3_integer_members); i++)
				if (strcmp(key, v3_integer_members[i]) == 0 && !json_integer(&v))
				{
					char	   *why = psprintf("%.64s is not a JSON integer", key);

					wx_utf8_clip(why);
					return why;
				}
		key = NULL;
	}
	return NULL;
}

/*--------------------------------------------------------------------
 * Verification by Wechatpay-Serial
 *--------------------------------------------------------------------
 */

/*
 * The merchant's verification key named by a Wechatpay-Serial: a platform
 * certificate (hex, any case) not past its expiry, or the public key by
 * its exact PUB_KEY_ID_; NULL when there is none.  SPI must be connected.
 */
const WxKey *
wxpay_v3_verification_key(const WxMerchant *m, const char *serial)
{
	static SPIPlanPtr plan = NULL;
	WxV3SerialKind kind;
	Datum		values[2];
	char	   *pem;

	if (serial == NULL || strlen(serial) > WX_V3_TOKEN_MAX ||
		(kind = wx_v3_serial_kind(serial, strlen(serial))) == WX_SERIAL_INVALID)
		return NULL;
	values[0] = CStringGetTextDatum(m->mch_id);
	values[1] = CStringGetTextDatum(kind == WX_SERIAL_CERTIFICATE ? str_toupper(serial, strlen(serial), C_COLLATION_OID) : serial);
	wxpay_spi_exec_plan(&plan,
						"SELECT pem FROM wxpay.wechatpay_keys WHERE mch_id OPERATOR(pg_catalog.=) $1"
						" AND serial OPERATOR(pg_catalog.=) $2"
						" AND (expires_at IS NULL OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now())",
						2, (Oid[]) {TEXTOID, TEXTOID}, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	pem = wxpay_spi_value(0, 1);
	return wx_key_public(pem, strlen(pem));
}

/* Why a signed message did not verify: each reason its message and hint. */
typedef enum WxUnverified
{
	WX_UNVERIFIED_SIGNATURE,	/* absent, malformed or not verifying */
	WX_UNVERIFIED_CLOCK,		/* Wechatpay-Timestamp outside the window */
	WX_UNVERIFIED_KEY,			/* Wechatpay-Serial names no key we have */
	WX_UNVERIFIED_APIV3_KEY		/* it names a listed certificate that does
								 * not decrypt (/v3/certificates) */
} WxUnverified;

/*
 * Whether a signed message (an answer or a notification) is WeChat Pay's
 * for this merchant: the key chosen by serial (key, when not NULL, is the
 * one the caller found for it), the signature over the raw body within
 * the time window.  False with *reason and *why (no secret in it); an
 * unknown certificate serial asks the worker for the merchant's
 * certificates.
 */
static bool
verify_signed(const WxKey *key, const WxMerchant *m, const char *serial,
			  const char *timestamp, const char *nonce, const char *signature,
			  const char *body, size_t len, WxUnverified *reason, char **why)
{
	WxV3Verdict verdict;

	*why = NULL;
	*reason = WX_UNVERIFIED_SIGNATURE;
	if (serial == NULL || serial[0] == '\0')
	{
		*why = pstrdup("no Wechatpay-Serial");
		return false;
	}
	if (key == NULL && (key = wxpay_v3_verification_key(m, serial)) == NULL)
	{
		if (wx_v3_serial_kind(serial, strlen(serial)) == WX_SERIAL_CERTIFICATE)
			wxpay_v3_certificates_wanted(m->mch_id);
		*reason = WX_UNVERIFIED_KEY;
		*why = psprintf("Wechatpay-Serial %.64s names no key of merchant %s in wxpay.wechatpay_keys",
						serial, m->mch_id);
		wx_utf8_clip(*why);
		return false;
	}
	verdict = wx_v3_verify(key, timestamp, nonce, signature, body, len, (long long) time(NULL));
	if (verdict != WX_V3_OK)
	{
		*reason = verdict == WX_V3_SKEWED ? WX_UNVERIFIED_CLOCK : WX_UNVERIFIED_SIGNATURE;
		*why = psprintf("%s%s", wx_v3_verdict_text(verdict),
						wx_v3_is_probe(signature) ? " (a WECHATPAY/SIGNTEST/ probe)" : "");
		return false;
	}
	return true;
}

/* The same with the key looked up by serial (notifications use this). */
bool
wxpay_v3_verify(const WxMerchant *m, const char *serial, const char *timestamp,
				const char *nonce, const char *signature, const char *body,
				size_t len, char **why)
{
	WxUnverified reason;

	return verify_signed(NULL, m, serial, timestamp, nonce, signature, body, len, &reason, why);
}

/*
 * An answer to path that did not verify, as the WX007 its caller gets: a
 * message that names the reason and a hint that tells the fix.  The one
 * place answers' verification failures are worded.
 */
static bool
fail_unverified(WxFailure *fail, const char *path, const char *serial, WxUnverified reason,
				const char *why)
{
	switch (reason)
	{
		case WX_UNVERIFIED_CLOCK:
			wxpay_fail(fail, WX_FAIL_UNTRUSTED,
					   psprintf("%s answered with a Wechatpay-Timestamp more than %d s from our clock",
								path, WX_V3_MAX_SKEW));
			fail->hint = psprintf("Check this server's clock (NTP): answers are believed only within %d s of it.",
								  WX_V3_MAX_SKEW);
			break;
		case WX_UNVERIFIED_KEY:
			wxpay_fail(fail, WX_FAIL_UNTRUSTED, psprintf("%s answered signed by an unknown key: %s", path, why));
			if (wx_v3_serial_kind(serial, strlen(serial)) == WX_SERIAL_PUBLIC_KEY)
				fail->hint = "Insert the WeChat Pay public key (pub_key.pem) under its PUB_KEY_ID_ into wxpay.wechatpay_keys.";
			else
				fail->hint = "The worker downloads the merchant's platform certificates at once (at most every 30 s): retry shortly, or insert the certificate into wxpay.wechatpay_keys.";
			break;
		case WX_UNVERIFIED_APIV3_KEY:
			wxpay_fail(fail, WX_FAIL_UNTRUSTED,
					   psprintf("%s answered signed by a certificate it lists that cannot be read: %s", path, why));
			fail->hint = "Check wxpay.merchant_v3.apiv3_key: it must be the APIv3 key set on the merchant platform (Account Center > API Security).";
			break;
		case WX_UNVERIFIED_SIGNATURE:
			wxpay_fail(fail, WX_FAIL_UNTRUSTED,
					   psprintf("%s answered with a signature that does not verify: %s", path, why));
			fail->hint = "Check the merchant's api_base and ca_pem (is it WeChat Pay answering?) and its keys in wxpay.wechatpay_keys.";
			break;
	}
	wx_utf8_clip(fail->message);
	return false;
}

/*--------------------------------------------------------------------
 * The protocol
 *--------------------------------------------------------------------
 */

/* Append s percent-encoded (RFC 3986 unreserved characters kept). */
static void
append_encoded(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, c);
		else
			appendStringInfo(buf, "%%%02X", c);
	}
}

/* v3's path name of a prepay's trade_type. */
static const char *
prepay_kind(const char *trade_type)
{
	if (trade_type == NULL)
		return "";
	if (strcmp(trade_type, "MWEB") == 0)
		return "h5";
	return str_tolower(trade_type, strlen(trade_type), C_COLLATION_OID);
}

/* The call's value of a {placeholder} of the path (len bytes of name). */
static const char *
path_value(const WxCall *call, const char *name, size_t len)
{
#define IS(s) (len == strlen(s) && strncmp(name, s, len) == 0)
	if (IS("out_trade_no"))
		return call->out_trade_no;
	if (IS("transaction_id"))
		return call->transaction_id;
	if (IS("out_refund_no"))
		return call->out_refund_no;
	if (IS("trade_type"))
		return prepay_kind(wxpay_list_get(call->fields, "trade_type"));
#undef IS
	elog(ERROR, "unknown placeholder {%.*s} in a v3 path", (int) len, name);
	return NULL;				/* keep compiler quiet */
}

/* The path and query as sent and signed: placeholders filled, ?mchid=. */
static char *
url_path(const WxCall *call)
{
	const WxEndpointV3 *v3 = call->endpoint->v3;
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = v3->path; *p; p++)
	{
		const char *end = *p == '{' ? strchr(p, '}') : NULL;
		const char *value;

		if (end == NULL)
		{
			appendStringInfoChar(&buf, *p);
			continue;
		}
		value = path_value(call, p + 1, end - p - 1);
		append_encoded(&buf, value ? value : "");
		p = end;
	}
	if (v3->mchid_query)
	{
		appendStringInfoString(&buf, "?mchid=");
		append_encoded(&buf, call->merchant->mch_id);
	}
	if (v3->query != NULL)
	{
		appendStringInfoChar(&buf, v3->mchid_query ? '&' : '?');
		appendStringInfoString(&buf, v3->query(call));
	}
	return buf.data;
}

/*
 * The Wechatpay-Serial our requests carry (§2.5, §3.3): the key we verify
 * with, which is how WeChat Pay chooses the key of its answer during a
 * migration to the public key: the merchant's PUB_KEY_ID_ when it has one,
 * else its newest platform certificate in force; NULL when it has neither
 * (its first download).  In the caller's memory: SPI would leave us in
 * its own, which the end of the transaction frees under a request still
 * to be sent.  SPI must be connected.
 */
static const char *
request_serial(const WxMerchant *m)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext caller = CurrentMemoryContext;

	wxpay_spi_exec_plan(&plan,
						"SELECT serial FROM wxpay.wechatpay_keys WHERE mch_id OPERATOR(pg_catalog.=) $1"
						" AND (expires_at IS NULL OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
						" AND (effective_at IS NULL OR effective_at OPERATOR(pg_catalog.<=) pg_catalog.now())"
						" ORDER BY kind OPERATOR(pg_catalog.=) 'public_key' DESC, effective_at DESC NULLS LAST,"
						" created_at DESC LIMIT 1",
						1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(m->mch_id)}, NULL, true,
						SPI_OK_SELECT);
	MemoryContextSwitchTo(caller);
	return SPI_processed > 0 ? wxpay_spi_value(0, 1) : NULL;
}

/*
 * A request of merchant m to path (and query) on its api_base, with body
 * (NULL: none) signed into the Authorization header; accept is its Accept,
 * serial (NULL: none) its Wechatpay-Serial.  Bill downloads use it for a
 * download_url (bill_v3.c), outside any transaction and with no serial:
 * that answer is not signed.
 */
bool
wxpay_v3_signed_request(const WxMerchant *m, const char *method, const char *path,
						const char *body, const char *accept, const char *serial,
						size_t max_response, WxHttpRequest *http, WxFailure *fail)
{
	size_t		len = body ? strlen(body) : 0;
	const WxKey *key = wx_key_private(m->key_pem, strlen(m->key_pem));
	char	   *timestamp = psprintf("%lld", (long long) time(NULL));
	char	   *nonce = wxpay_make_nonce(32);
	char		signature[WX_RSA_SIG_B64_MAX];
	char		auth[WX_V3_AUTH_MAX];

	if (key == NULL ||
		!wx_v3_sign_request(key, method, path, timestamp, nonce, body, len, signature) ||
		!wx_v3_authorization(auth, m->mch_id, m->serial_no, timestamp, nonce, signature))
	{
		wxpay_fail(fail, WX_FAIL_LOCAL,
				   psprintf("merchant %s cannot sign API v3 requests with its key_pem and serial_no", m->mch_id));
		fail->hint = "key_pem must be apiclient_key.pem and wxpay.merchant_v3.serial_no the serial of apiclient_cert.pem.";
		return false;
	}
	wxpay_http_request_init(http, method, psprintf("%s%s", m->api_base, path), max_response);
	http->body = body;
	http->body_len = len;
	wxpay_http_add_header(http, psprintf("Authorization: %s", auth));
	wxpay_http_add_header(http, psprintf("Accept: %s", accept));
	wxpay_http_add_header(http, "User-Agent: pg_wxpay/" WXPAY_EXTVERSION " (PostgreSQL " PG_VERSION ")");
	if (body != NULL)
		wxpay_http_add_header(http, "Content-Type: application/json");
	if (serial != NULL)
		wxpay_http_add_header(http, psprintf("Wechatpay-Serial: %s", serial));
	return true;
}

/*
 * The request: the endpoint's method and path, its jsonb body as text, and
 * the serial of the key we verify the answer with.
 */
static bool
v3_request(const WxCall *call, WxHttpRequest *http, WxFailure *fail)
{
	const WxEndpointV3 *v3 = call->endpoint->v3;
	Jsonb	   *body = v3->body ? v3->body(call) : NULL;

	return wxpay_v3_signed_request(call->merchant, v3->method, url_path(call),
								   body ? JsonbToCString(NULL, &body->root, VARSIZE(body)) : NULL,
								   "application/json", request_serial(call->merchant), V3_MAX_BODY,
								   http, fail);
}

/*
 * An error answer (not 2xx, or 202): a refusal with WeChat's code, kept in
 * fields for the endpoint's read; an outcome unknown when it is a server
 * error, a rate limit, or has no code.  Never verified: WeChat Pay does
 * not sign error answers (§3.8), so nothing reads more than code/message.
 */
static bool
judge_error(const WxCall *call, const WxHttpResponse *http, WxAnswer *answer,
			WxFailure *fail)
{
	Jsonb	   *jb = wxpay_v3_parse(http->body, http->len);
	const char *code = NULL;
	char	   *message;

	if (jb != NULL)
	{
		wxpay_v3_fields(jb, &answer->fields);
		code = wxpay_list_get(&answer->fields, "code");
	}
	if (code == NULL || code[0] == '\0' || http->status >= 500 || http->status == 429)
	{
		message = psprintf("%s answered HTTP %ld%s%s: the outcome is unknown",
						   wxpay_call_path(call), http->status, code ? " " : "", code ? code : "");
		wx_utf8_clip(message);
		return wxpay_fail(fail, WX_FAIL_TRANSPORT, message);
	}
	answer->json = jb;
	return true;
}

/*
 * For an endpoint whose answer lists keys (/v3/certificates): the listed
 * certificate the answer's serial names, when no known key has it; NULL
 * with *why when the listed one cannot be read (a wrong APIv3 key).
 */
static const WxKey *
key_in_answer(const WxCall *call, const WxHttpResponse *http, const char *serial, char **why)
{
	Jsonb	   *jb;
	WxParamList fields;
	const char *pem;

	*why = NULL;
	if (!call->endpoint->v3->keys_in_answer || serial == NULL ||
		wxpay_v3_verification_key(call->merchant, serial) != NULL ||
		(jb = wxpay_v3_parse(http->body, http->len)) == NULL)
		return NULL;
	wxpay_v3_fields(jb, &fields);
	pem = wxpay_v3_answer_certificate(call->merchant, &fields, serial, why);
	return pem ? wx_key_public(pem, strlen(pem)) : NULL;
}

/* Judge an answer: authentic, or an error answer for read to refuse. */
static bool
v3_judge(const WxCall *call, const WxHttpResponse *http, WxAnswer *answer,
		 WxFailure *fail)
{
	const WxMerchant *m = call->merchant;
	const char *path = wxpay_call_path(call);
	const char *serial = wxpay_http_header(http, "Wechatpay-Serial");
	const WxKey *listed;
	WxUnverified reason;
	char	   *why;

	answer->status = http->status;
	if (http->status < 200 || http->status > 299 || http->status == 202)
		return judge_error(call, http, answer, fail);
	if ((listed = key_in_answer(call, http, serial, &why)) == NULL && why != NULL)
		return fail_unverified(fail, path, serial, WX_UNVERIFIED_APIV3_KEY, why);
	if (!verify_signed(listed, m, serial,
					   wxpay_http_header(http, "Wechatpay-Timestamp"), wxpay_http_header(http, "Wechatpay-Nonce"),
					   wxpay_http_header(http, "Wechatpay-Signature"), http->body ? http->body : "",
					   http->len, &reason, &why))
		return fail_unverified(fail, path, serial, reason, why);
	if (http->len == 0)
	{
		wxpay_list_init(&answer->fields, 1);
		return true;
	}
	if ((answer->json = wxpay_v3_parse(http->body, http->len)) == NULL)
		return wxpay_fail(fail, WX_FAIL_UNTRUSTED,
						  psprintf("%s answered with a signed body that is not a JSON object", path));
	if ((why = wxpay_v3_integers_check(answer->json)) != NULL)
		return wxpay_fail(fail, WX_FAIL_UNTRUSTED,
						  psprintf("%s answered with a signed body that breaks the protocol: %s", path, why));
	wxpay_v3_fields(answer->json, &answer->fields);
	if ((wxpay_list_get(&answer->fields, "mchid") && !wxpay_list_is(&answer->fields, "mchid", m->mch_id)) ||
		(wxpay_list_get(&answer->fields, "appid") && !wxpay_list_is(&answer->fields, "appid", m->appid)))
		return wxpay_fail(fail, WX_FAIL_UNTRUSTED,
						  psprintf("%s answered for another merchant (appid or mchid differs)", path));
	return true;
}

const WxProtocol wx_protocol_v3 = {
	.name = "v3",
	.request = v3_request,
	.judge = v3_judge,
	.judges_error_status = true,
};

/*
 * A 2xx answer other than 202, or false with WeChat's refusal (its code,
 * and message with the detail's field and issue when given).
 */
bool
wxpay_v3_result(const WxCall *call, const WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *f = &answer->fields;
	const char *field = wxpay_list_get(f, "detail.field");
	const char *issue = wxpay_list_get(f, "detail.issue");
	char	   *description;

	if (answer->status >= 200 && answer->status <= 299 && answer->status != 202)
		return true;
	description = psprintf("%s%s%s%s%s", wxpay_list_get(f, "message") ? wxpay_list_get(f, "message") : "",
						   field ? "; field " : "", field ? field : "",
						   issue ? ": " : "", issue ? issue : "");
	wx_utf8_clip(description);
	return wxpay_fail_remote(fail, wxpay_call_path(call), wxpay_list_get(f, "code"), description);
}

/* The number in the n digits at s. */
static int
digits_at(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/*
 * An RFC 3339 time as timestamptz text, or NULL when it has another shape
 * or is no real date and time: what a signed notification carries must
 * not make timestamptz_in raise (the judge would answer 500, not 400).
 */
char *
wxpay_v3_time(const char *t)
{
	int			year,
				month;
	const char *zone;

	if (t == NULL ||
		!wxpay_matches(t, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"))
		return NULL;
	year = digits_at(t, 4);
	month = digits_at(t + 5, 2);
	zone = t + 19 + strcspn(t + 19, "Z+-");
	if (year < 1 || month < 1 || month > 12 || digits_at(t + 8, 2) < 1 ||
		digits_at(t + 8, 2) > day_tab[isleap(year)][month - 1] || digits_at(t + 11, 2) > 23 ||
		digits_at(t + 14, 2) > 59 || digits_at(t + 17, 2) > 59 ||
		(*zone != 'Z' && (digits_at(zone + 1, 2) > 15 || digits_at(zone + 4, 2) > 59)))
		return NULL;
	return pstrdup(t);
}

/* yyyyMMddHHmmss in Beijing time (v2's form) as RFC 3339, or NULL. */
char *
wxpay_v3_time_from_v2(const char *t)
{
	char	   *text = wxpay_v2_time(t);	/* yyyy-MM-dd HH:mm:ss+08 */

	if (text == NULL)
		return NULL;
	text[10] = 'T';
	return psprintf("%s:00", text);
}

/* The payer fields worth keeping from a transaction object. */
static Jsonb *
payer_fields(const WxParamList *fields)
{
	static const char *const names[] = {"payer.openid", "bank_type", "trade_type",
	"amount.payer_total", "amount.currency", "amount.payer_currency"};
	WxJson		j;

	wxpay_json_begin(&j);
	for (size_t i = 0; i < lengthof(names); i++)
		wxpay_json_string(&j, strchr(names[i], '.') ? strchr(names[i], '.') + 1 : names[i],
						  wxpay_list_get(fields, names[i]));
	return wxpay_json_finish(&j);
}

/*
 * The payment a transaction object describes (query answers and
 * TRANSACTION.* notifications carry the same object), as a report.
 */
void
wxpay_v3_payment_report(const WxParamList *fields, WxPaymentReport *r)
{
	memset(r, 0, sizeof(*r));
	r->out_trade_no = wxpay_list_get(fields, "out_trade_no");
	r->state = wxpay_list_get(fields, "trade_state");
	r->total_fee = wxpay_list_get(fields, "amount.total");
	r->transaction_id = wxpay_list_get(fields, "transaction_id");
	r->paid_at = wxpay_v3_time(wxpay_list_get(fields, "success_time"));
	r->payer = payer_fields(fields);
}

/* The local refund state of a v3 refund status (ABNORMAL is v2's CHANGE). */
static const char *
refund_state(const char *status)
{
	if (status == NULL)
		return NULL;
	if (strcmp(status, "CLOSED") == 0)
		return "REFUNDCLOSE";
	if (strcmp(status, "ABNORMAL") == 0)
		return "CHANGE";
	return status;
}

/*
 * The refund a refund object describes (create and query answers: status;
 * REFUND.* notifications: refund_status), as a report.
 */
void
wxpay_v3_refund_report(const WxParamList *fields, const char *status_field,
					   WxRefundReport *r)
{
	memset(r, 0, sizeof(*r));
	r->out_refund_no = wxpay_list_get(fields, "out_refund_no");
	r->out_trade_no = wxpay_list_get(fields, "out_trade_no");
	r->refund_fee = wxpay_list_get(fields, "amount.refund");
	r->refund_id = wxpay_list_get(fields, "refund_id");
	r->status = refund_state(wxpay_list_get(fields, status_field));
	r->success_time = wxpay_v3_time(wxpay_list_get(fields, "success_time"));
	r->recv_accout = wxpay_list_get(fields, "user_received_account");
	r->account = wxpay_list_get(fields, "funds_account");
}
