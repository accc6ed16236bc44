/*
 * notify_v3.c
 *	  wxpay_handle_notify_v3: API v3 notifications (payments and refunds),
 *	  verified, decrypted, judged against our rows and recorded.
 *
 * A v3 body names its merchant only inside the encrypted resource, so the
 * merchant comes from the notify URL (one URL per merchant, which is also
 * what lets a PL/Proxy layer route a notification to its shard unopened).
 * That name is a claim like everything else a sender controls: the body
 * must carry a Wechatpay-Signature over its raw bytes, within 300 s of our
 * clock, by a key of that merchant chosen by Wechatpay-Serial (a platform
 * certificate or the PUB_KEY_ID_ public key; during a migration both are
 * configured and both verify); probes (WECHATPAY/SIGNTEST/) fail like any
 * bad signature; an unknown certificate serial asks the worker to download
 * the certificates (proto_v3.c does both, for answers and notifications).
 * Only then is the resource decrypted with the merchant's APIv3 key
 * (AES-256-GCM: the tag authenticates it too), checked against
 * the merchant (mchid, appid), read into the reports v3 query answers
 * make (proto_v3.c) and applied through the same paths as v2:
 * wxpay_apply_payment (row lock, order_events, paid events) and
 * wxpay_apply_refund_report.  A v3 refund notification is authentic, so
 * unlike v2's it moves the refund itself.
 *
 * The judging and recording are notify.c's: the judge runs in a
 * subtransaction, the body is recorded with its signature headers and
 * outcome whatever happens, and nothing a sender controls makes this raise.
 */
#include "endpoint.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "merchant_marks.h"
#include "notify.h"
#include "wx_aes.h"

/* How often a merchant's wrong APIv3 key is reported in the log, at most. */
#define APIV3_KEY_WARNING_MS (10 * 60 * 1000)

PG_FUNCTION_INFO_V1(wxpay_handle_notify_v3);

/* The headers a notification is judged by, the only ones recorded. */
static const char *const kept_headers[] = {
	"Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature",
	"Wechatpay-Serial", "Wechatpay-Signature-Type", "Request-ID"
};

/* The events we act on, their kind of notification and resource. */
typedef struct WxV3Event
{
	const char *event_type;
	const char *kind;			/* wxpay.notifications.kind */
	const char *original_type;	/* resource.original_type */
	const char *refund_state;	/* refunds: our state for its refund_status */
} WxV3Event;

static const WxV3Event events[] = {
	{"TRANSACTION.SUCCESS", "pay", "transaction", NULL},
	{"REFUND.SUCCESS", "refund", "refund", "SUCCESS"},
	{"REFUND.ABNORMAL", "refund", "refund", "CHANGE"},
	{"REFUND.CLOSED", "refund", "refund", "REFUNDCLOSE"},
};

/*--------------------------------------------------------------------
 * The judge
 *--------------------------------------------------------------------
 */

/*
 * The merchant the notify URL names, if it is a v3 merchant with its
 * APIv3 key; NULL with out rejected otherwise.
 */
static WxMerchant *
v3_merchant(const char *mch_id, WxNotifyOutcome *out)
{
	WxMerchant *m;

	if (mch_id == NULL || *mch_id == '\0')
		wxpay_notify_reject(out, pstrdup("no merchant: the notify URL must name its mch_id"));
	else if ((m = wxpay_merchant_find(mch_id, CurrentMemoryContext)) == NULL)
		wxpay_notify_reject(out, pstrdup("unknown merchant"));
	else if (!m->v3 || m->apiv3_key == NULL)
		wxpay_notify_reject(out, pstrdup("the merchant does not use API v3 (protocol v3 with an APIv3 key)"));
	else
		return m;
	return NULL;
}

/* The event an envelope names, or NULL. */
static const WxV3Event *
find_event(const char *event_type)
{
	for (size_t i = 0; event_type && i < lengthof(events); i++)
		if (strcmp(events[i].event_type, event_type) == 0)
			return &events[i];
	return NULL;
}

/*
 * Whether the headers carry a genuine signature over the body by the
 * merchant's key their Wechatpay-Serial names; otherwise out is rejected
 * with why.
 */
static bool
signature_verifies(const WxMerchant *m, const WxNotice *n, WxNotifyOutcome *out)
{
	const char *type = wxpay_list_get(&n->headers, "Wechatpay-Signature-Type");
	char	   *why;

	if (type != NULL && strcmp(type, "WECHATPAY2-SHA256-RSA2048") != 0)
		wxpay_notify_reject(out, pstrdup("Wechatpay-Signature-Type is not WECHATPAY2-SHA256-RSA2048"));
	else if (!wxpay_v3_verify(m, wxpay_list_get(&n->headers, "Wechatpay-Serial"),
							  wxpay_list_get(&n->headers, "Wechatpay-Timestamp"),
							  wxpay_list_get(&n->headers, "Wechatpay-Nonce"),
							  wxpay_list_get(&n->headers, "Wechatpay-Signature"),
							  n->body, n->len, &why))
		wxpay_notify_reject(out, why);
	else
		return true;
	return false;
}

/*
 * A verified notification of merchant m does not decrypt: a wrong APIv3
 * key (or WeChat Pay's mistake), which refuses every notification while
 * queries go on working.  Said in the log, once per merchant in
 * APIV3_KEY_WARNING_MS however many arrive (WeChat Pay re-sends each): a
 * stranger cannot cause it, the signature verified first.  Never the key.
 */
static void
warn_apiv3_key(const WxMerchant *m, WxAesStatus status)
{
	if (wxpay_merchant_mark(m->mch_id, WX_MARK_APIV3_KEY_WARNED, APIV3_KEY_WARNING_MS))
		ereport(WARNING,
				(errmsg("wxpay: the APIv3 key of merchant %s does not decrypt its notifications", m->mch_id),
				 errdetail("A notification signed by WeChat Pay was refused: %s.", wx_aes_status_text(status)),
				 errhint("Set wxpay.merchant_v3.apiv3_key to the APIv3 key set on the merchant platform (Account Center > API Security); "
						 "WeChat Pay re-sends refused notifications.")));
}

/* Reject out for reason; NULL, for the functions that return what they found. */
static Jsonb *
refuse(WxNotifyOutcome *out, char *reason)
{
	wxpay_notify_reject(out, reason);
	return NULL;
}

/*
 * The envelope's resource decrypted with the APIv3 key, as jsonb; NULL
 * with out rejected when it is not the resource of event.
 */
static Jsonb *
decrypt_resource(const WxMerchant *m, const WxParamList *envelope, const WxV3Event *event,
				 WxNotifyOutcome *out)
{
	const char *algorithm = wxpay_list_get(envelope, "resource.algorithm");
	const char *ciphertext = wxpay_list_get(envelope, "resource.ciphertext");
	const char *nonce = wxpay_list_get(envelope, "resource.nonce");
	const char *aad = wxpay_list_get(envelope, "resource.associated_data");
	const char *original_type = wxpay_list_get(envelope, "resource.original_type");
	unsigned char *plain;
	size_t		plain_len;
	WxAesStatus status;
	Jsonb	   *resource;

	if (ciphertext == NULL || nonce == NULL)
		return refuse(out, pstrdup("resource.ciphertext or resource.nonce is missing"));
	if (algorithm == NULL || strcmp(algorithm, "AEAD_AES_256_GCM") != 0)
		return refuse(out, pstrdup("resource.algorithm is not AEAD_AES_256_GCM"));
	if (original_type != NULL && strcmp(original_type, event->original_type) != 0)
		return refuse(out, psprintf("resource.original_type is not %s", event->original_type));
	if (aad == NULL)
		aad = "";
	plain = palloc(wx_base64_decoded_max(strlen(ciphertext)) + 1);
	status = wx_gcm_decrypt(m->apiv3_key, strlen(m->apiv3_key), nonce, strlen(nonce),
							aad, strlen(aad), ciphertext, strlen(ciphertext), plain, &plain_len);
	if (status != WX_AES_OK)
	{
		warn_apiv3_key(m, status);
		return refuse(out, psprintf("resource does not decrypt with the merchant's APIv3 key: %s",
									wx_aes_status_text(status)));
	}
	if ((resource = wxpay_v3_parse((char *) plain, plain_len)) == NULL)
		return refuse(out, pstrdup("the decrypted resource is not a JSON object"));
	return resource;
}

/* A verified, decrypted TRANSACTION.SUCCESS applied to its order. */
static void
apply_transaction(const WxMerchant *m, const WxParamList *txn, WxNotifyOutcome *out)
{
	WxPaymentReport report;
	WxApplyResult result;
	char	   *reason;

	wxpay_v3_payment_report(txn, &report);
	if (!wxpay_list_is(txn, "appid", m->appid))
		return wxpay_notify_reject(out, pstrdup("appid does not belong to the merchant"));
	if (report.state == NULL || strcmp(report.state, "SUCCESS") != 0)
		return wxpay_notify_reject(out, psprintf("trade_state is %s, not SUCCESS",
												 report.state ? report.state : "missing"));
	if (report.out_trade_no == NULL)
		return wxpay_notify_reject(out, pstrdup("out_trade_no is missing"));
	result = wxpay_apply_payment(m->mch_id, &report, "notify", &reason);
	wxpay_notify_applied(out, result, reason);
}

/* A verified, decrypted REFUND.* applied to its refund. */
static void
apply_refund(const WxMerchant *m, const WxParamList *refund, const WxV3Event *event,
			 WxNotifyOutcome *out)
{
	WxRefundReport r;
	WxApplyResult result;
	char	   *reason;

	wxpay_v3_refund_report(refund, "refund_status", &r);
	if (r.status == NULL || strcmp(r.status, event->refund_state) != 0)
		return wxpay_notify_reject(out, psprintf("refund_status %s does not match event_type %s",
												 r.status ? wxpay_list_get(refund, "refund_status") : "(missing)",
												 event->event_type));
	if (r.out_refund_no == NULL || r.out_trade_no == NULL || r.refund_fee == NULL)
		return wxpay_notify_reject(out, pstrdup("the refund lacks out_refund_no, out_trade_no or amount.refund"));
	if (strcmp(r.status, "SUCCESS") == 0 && r.success_time == NULL)
		return wxpay_notify_reject(out, pstrdup("success_time is missing or not RFC 3339"));
	result = wxpay_apply_refund_report(m->mch_id, &r, "notify", &reason);
	wxpay_notify_applied(out, result, reason);
}

/* Judge a v3 notification and apply it; fills out. */
static void
judge_v3(const WxNotice *n, WxNotifyOutcome *out)
{
	WxMerchant *m;
	Jsonb	   *envelope;
	WxParamList env;
	WxParamList fields;
	const WxV3Event *event;
	char	   *why;

	out->mch_id = n->mch_id ? pstrdup(n->mch_id) : NULL;
	if ((m = v3_merchant(n->mch_id, out)) == NULL)
		return;
	if ((envelope = wxpay_v3_parse(n->body, n->len)) == NULL)
		return wxpay_notify_reject(out, pstrdup("malformed body: not a JSON object (of at most 256 kB, nested at most 64 deep)"));
	wxpay_v3_fields(envelope, &env);
	if ((event = find_event(wxpay_list_get(&env, "event_type"))) == NULL)
		return wxpay_notify_reject(out, pstrdup("event_type is missing or not one we handle"));
	out->kind = event->kind;
	if (!signature_verifies(m, n, out))
		return;
	out->verified = true;
	if ((out->resource = decrypt_resource(m, &env, event, out)) == NULL)
		return;
	wxpay_v3_fields(out->resource, &fields);
	out->out_trade_no = (char *) wxpay_list_get(&fields, "out_trade_no");
	out->transaction_id = (char *) wxpay_list_get(&fields, "transaction_id");
	out->out_refund_no = (char *) wxpay_list_get(&fields, "out_refund_no");
	/* "100" where WeChat Pay sends 100 is no amount we read. */
	if ((why = wxpay_v3_integers_check(out->resource)) != NULL)
		return wxpay_notify_reject(out, psprintf("the decrypted resource breaks the protocol: %s", why));
	if (!wxpay_list_is(&fields, "mchid", m->mch_id))
		return wxpay_notify_reject(out, pstrdup("mchid is not the merchant of the notify URL"));
	if (event->refund_state == NULL)
		apply_transaction(m, &fields, out);
	else
		apply_refund(m, &fields, event, out);
}

/*--------------------------------------------------------------------
 * The SQL function
 *--------------------------------------------------------------------
 */

/*
 * The signature headers of a headers object, by case-insensitive name
 * (web tiers spell them as they like), under their canonical names.  A
 * headers argument that is not an object of strings yields what it has.
 */
static void
keep_headers(Jsonb *headers, WxNotice *n)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	const char *name = NULL;

	wxpay_list_init(&n->headers, lengthof(kept_headers));
	if (headers != NULL && JB_ROOT_IS_OBJECT(headers))
	{
		it = JsonbIteratorInit(&headers->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				name = NULL;
				for (size_t i = 0; i < lengthof(kept_headers); i++)
					if ((size_t) v.val.string.len == strlen(kept_headers[i]) &&
						pg_strncasecmp(v.val.string.val, kept_headers[i], v.val.string.len) == 0 &&
						wxpay_list_get(&n->headers, kept_headers[i]) == NULL)
						name = kept_headers[i];
			}
			else if (tok == WJB_VALUE && name != NULL && v.type == jbvString)
				wxpay_list_add(&n->headers, name, v.val.string.val, v.val.string.len);
		}
	}
	n->headers_jsonb = wxpay_list_to_jsonb(&n->headers);
}

/*
 * The HTTP status to answer: 204 once accepted (or already applied), 500
 * when it could not be processed now (WeChat Pay re-sends), 401 when it
 * is not authentic (probes included), 400 when it is but we refuse it.
 */
static int
reply_status(const WxNotifyOutcome *out)
{
	if (strcmp(out->outcome, "rejected") != 0)
		return 204;
	if (out->failed)
		return 500;
	return out->verified ? 400 : 401;
}

/*
 * wxpay_handle_notify_v3(mch_id text, headers jsonb, body text,
 *                        OUT status integer, OUT reply text)
 *
 * mch_id is the merchant the notify URL names (one URL per merchant, e.g.
 * https://shop.example/wxpay/v3/notify/1900007291: a v3 body names its
 * merchant only inside the encrypted resource); headers the request's
 * headers as an object of strings (any spelling of the names; only the
 * Wechatpay-* ones and Request-ID are read and recorded); body the raw
 * request body.  Answers the HTTP status to send and the body (NULL: none).
 */
Datum
wxpay_handle_notify_v3(PG_FUNCTION_ARGS)
{
	WxNotice	notice;
	WxNotifyOutcome out;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			status;
	MemoryContext caller = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "wxpay_handle_notify_v3 must return a record");
	memset(&notice, 0, sizeof(notice));
	notice.mch_id = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	keep_headers(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), &notice);
	notice.raw = PG_ARGISNULL(2) ? cstring_to_text("") : PG_GETARG_TEXT_PP(2);
	notice.body = VARDATA_ANY(notice.raw);
	notice.len = VARSIZE_ANY_EXHDR(notice.raw);

	SPI_connect();
	wxpay_notification_judge_and_record("pay", &notice, judge_v3, false, &out);
	MemoryContextSwitchTo(caller);
	status = reply_status(&out);
	SPI_finish();

	values[0] = Int32GetDatum(status);
	/* Constants: the reason is in wxpay.notifications, not for the sender. */
	if (status == 204)
		nulls[1] = true;
	else
		values[1] = CStringGetTextDatum("{\"code\":\"FAIL\",\"message\":\"失败\"}");
	desc = BlessTupleDesc(desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
