/*
 * notify.c
 *	  wxpay_handle_notify: payment notifications, judged and recorded.
 *
 * Anyone can POST to a notify_url, so a body is guilty until proven
 * genuine: it must parse (no DOCTYPE), say SUCCESS, come from a known
 * merchant and appid, carry a signature over every field it has, report
 * result_code SUCCESS, and name an order of ours with exactly its amount.
 * Only then does the order move (wxpay_apply_payment), once, however many
 * duplicates arrive together.
 *
 * The machinery is shared with refund notifications (refund.c): the
 * judgement runs in a subtransaction.  Whatever happens inside it,
 * even an unexpected error, the body is then recorded in
 * wxpay.notifications with its outcome, and the caller gets a reply to
 * send back; this function does not raise for anything a sender controls.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "notify.h"
#include "spi_util.h"
#include "txn.h"

PG_FUNCTION_INFO_V1(wxpay_handle_notify);
PG_FUNCTION_INFO_V1(wxpay_handle_notify_1_1);

/* Mark a notification rejected, for reason. */
void
wxpay_notify_reject(WxNotifyOutcome *out, char *reason)
{
	out->outcome = "rejected";
	out->reason = reason;
}

/*
 * The checks every notification starts with: it parses, says SUCCESS, and
 * comes from a known merchant with its own appid.  Returns the merchant,
 * or NULL with out rejected.
 */
WxMerchant *
wxpay_notify_sender(const char *body, size_t len, WxParamList *fields,
					WxNotifyOutcome *out)
{
	WxXmlError	err;
	WxMerchant *m;

	if (wxpay_xml_parse(body, len, fields, NULL, &err) != WX_XML_OK)
	{
		wxpay_notify_reject(out, psprintf("malformed body: %s", err.message));
		return NULL;
	}
	out->mch_id = (char *) wxpay_list_get(fields, "mch_id");
	if (!wxpay_list_is(fields, "return_code", "SUCCESS"))
		wxpay_notify_reject(out, pstrdup("return_code is not SUCCESS"));
	else if (out->mch_id == NULL || (m = wxpay_merchant_find(out->mch_id, CurrentMemoryContext)) == NULL)
		wxpay_notify_reject(out, pstrdup("unknown merchant"));
	else if (!wxpay_list_is(fields, "appid", m->appid))
		wxpay_notify_reject(out, pstrdup("appid does not belong to the merchant"));
	else
		return m;
	return NULL;
}

/* Record what applying a notification's report did. */
void
wxpay_notify_applied(WxNotifyOutcome *out, WxApplyResult result, char *reason)
{
	if (result == WX_APPLY_REJECTED)
		wxpay_notify_reject(out, reason);
	else if (result == WX_APPLY_ANOMALY)
	{
		/* Answered as a success (the order is paid), recorded as what it is. */
		out->outcome = "anomaly";
		out->reason = reason;
	}
	else
		out->outcome = result == WX_APPLY_CHANGED ? "accepted" : "duplicate";
}

/* Judge a payment notification and apply it; fills out. */
static void
judge_payment(const WxNotice *n, WxNotifyOutcome *out)
{
	WxParamList fields;
	WxMerchant *m;
	WxPaymentReport report;
	WxApplyResult result;
	char	   *reason;

	if ((m = wxpay_notify_sender(n->body, n->len, &fields, out)) == NULL)
		return;
	out->out_trade_no = (char *) wxpay_list_get(&fields, "out_trade_no");
	out->transaction_id = (char *) wxpay_list_get(&fields, "transaction_id");
	if (!wxpay_verify_list(&fields, WX_SIGN_INVALID, m->api_key, strlen(m->api_key)))
		return wxpay_notify_reject(out, pstrdup("signature does not verify"));
	out->verified = true;
	if (!wxpay_list_is(&fields, "result_code", "SUCCESS"))
	{
		const char *err_code = wxpay_list_get(&fields, "err_code");

		return wxpay_notify_reject(out, psprintf("result_code is not SUCCESS (err_code %s)",
												 err_code ? err_code : "none"));
	}
	if (out->out_trade_no == NULL)
		return wxpay_notify_reject(out, pstrdup("out_trade_no is missing"));
	/* Apply first: the result and reason must be read after the call. */
	wxpay_v2_payment_report(&fields, "SUCCESS", &report);
	result = wxpay_apply_payment(m->mch_id, &report, "notify", &reason);
	wxpay_notify_applied(out, result, reason);
}

/* A judge and its arguments, for wxpay_run_isolated. */
typedef struct WxJudgement
{
	WxNotifyJudge judge;
	const WxNotice *notice;
	WxNotifyOutcome *out;
} WxJudgement;

/* wxpay_run_isolated's step: the judge itself. */
static void
run_judge(void *arg)
{
	WxJudgement *j = arg;

	j->judge(j->notice, j->out);
}

/*
 * Run a judge in a subtransaction; an error inside it rolls back whatever
 * it did and becomes a rejection with the error's message (the kind the
 * judge found, a constant, is kept).
 */
static void
judge_in_subtransaction(WxNotifyJudge judge, const WxNotice *notice,
						WxNotifyOutcome *out)
{
	WxJudgement j = {judge, notice, out};
	ErrorData  *edata = wxpay_run_isolated_waiting(run_judge, &j, wxpay_lock_timeout);
	const char *kind = out->kind;

	if (edata != NULL)
	{
		memset(out, 0, sizeof(*out));
		out->kind = kind;
		out->failed = true;
		wxpay_notify_reject(out, psprintf("could not process: %s", edata->message));
	}
}

/* What to record: the notice, its kind and its outcome. */
typedef struct WxRecord
{
	const char *kind;
	const WxNotice *notice;
	const WxNotifyOutcome *out;
	bool		schema_1_0;		/* called through 1.0's declaration */
} WxRecord;

/* Store the body with its outcome in wxpay.notifications. */
static void
insert_notification(void *arg)
{
	const WxRecord *r = arg;
	const WxNotifyOutcome *out = r->out;
	const char *kind = out->kind ? out->kind : r->kind;
	Oid			types[11] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	BOOLOID, JSONBOID, JSONBOID};
	Datum		values[11];
	char		nulls[12] = "           ";
	/* 1.0's outcomes have no anomaly: the reason still says it. */
	const char *outcome = r->schema_1_0 && strcmp(out->outcome, "anomaly") == 0 ? "duplicate" : out->outcome;
	const char *strings[8] = {kind, NULL, out->mch_id, out->out_trade_no,
	out->transaction_id, outcome, out->reason, out->out_refund_no};
	static SPIPlanPtr plans[2];

	for (int i = 0; i < 8; i++)
	{
		nulls[i] = strings[i] || i == 1 ? ' ' : 'n';
		values[i] = strings[i] ? CStringGetTextDatum(strings[i]) : (Datum) 0;
	}
	values[1] = PointerGetDatum(r->notice->raw);
	values[8] = BoolGetDatum(out->verified);
	values[9] = r->notice->headers_jsonb ? JsonbPGetDatum(r->notice->headers_jsonb) : (Datum) 0;
	nulls[9] = r->notice->headers_jsonb ? ' ' : 'n';
	values[10] = out->resource ? JsonbPGetDatum(out->resource) : (Datum) 0;
	nulls[10] = out->resource ? ' ' : 'n';
	/* Until ALTER EXTENSION UPDATE, the 1.0 table has no verified column. */
	if (r->schema_1_0)
		wxpay_spi_exec_plan(&plans[0],
							"INSERT INTO wxpay.notifications (kind, body, mch_id, out_trade_no,"
							" transaction_id, outcome, reason, out_refund_no)"
							" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
							8, types, values, nulls, false, SPI_OK_INSERT);
	else
		wxpay_spi_exec_plan(&plans[1],
							"INSERT INTO wxpay.notifications (kind, body, mch_id, out_trade_no,"
							" transaction_id, outcome, reason, out_refund_no, verified, headers, resource)"
							" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
							11, types, values, nulls, false, SPI_OK_INSERT);
}

/*
 * Record the body whatever else went wrong: if the full row cannot be
 * stored, the body is stored with the reason it could not be.
 */
static void
record_notification(const char *kind, const WxNotice *notice, WxNotifyOutcome *out, bool schema_1_0)
{
	WxRecord	r = {kind, notice, out, schema_1_0};
	ErrorData  *edata = wxpay_run_isolated(insert_notification, &r);
	WxNotifyOutcome bare;

	if (edata == NULL)
		return;
	memset(&bare, 0, sizeof(bare));
	bare.kind = out->kind;
	bare.failed = true;
	wxpay_notify_reject(&bare, psprintf("could not record the details: %s", edata->message));
	r.out = &bare;
	insert_notification(&r);
	*out = bare;
}

/*
 * The reply WeChat Pay expects: SUCCESS/OK, or FAIL.  It is built from
 * constants, so it cannot fail, and it tells a sender nothing about why a
 * body was refused: the reason is in wxpay.notifications.
 */
static text *
notify_reply(const WxNotifyOutcome *out)
{
	if (strcmp(out->outcome, "rejected") != 0)
		return cstring_to_text("<xml><return_code><![CDATA[SUCCESS]]></return_code>"
							   "<return_msg><![CDATA[OK]]></return_msg></xml>");
	return cstring_to_text("<xml><return_code><![CDATA[FAIL]]></return_code>"
						   "<return_msg><![CDATA[rejected]]></return_msg></xml>");
}

/*
 * Judge a notice and record it with its outcome (kind unless the judge
 * found another), whatever the judge does; the caller is connected to SPI.
 * schema_1_0 when called through a 1.0 declaration (the library was
 * upgraded, the schema not yet: notifications must keep working meanwhile).
 */
void
wxpay_notification_judge_and_record(const char *kind, const WxNotice *notice,
									WxNotifyJudge judge, bool schema_1_0,
									WxNotifyOutcome *out)
{
	memset(out, 0, sizeof(*out));
	judge_in_subtransaction(judge, notice, out);
	if (out->outcome == NULL)
		wxpay_notify_reject(out, pstrdup("the judge reached no outcome"));
	record_notification(kind, notice, out, schema_1_0);
}

/*
 * Judge a v2 notification body, record it with its outcome and return the
 * reply.  Shared by payment and refund notifications.
 */
Datum
wxpay_handle_notification(FunctionCallInfo fcinfo, const char *kind,
						  WxNotifyJudge judge, bool schema_1_0)
{
	WxNotice	notice;
	WxNotifyOutcome out;
	text	   *reply;
	MemoryContext caller = CurrentMemoryContext;

	memset(&notice, 0, sizeof(notice));
	notice.raw = PG_ARGISNULL(0) ? cstring_to_text("") : PG_GETARG_TEXT_PP(0);
	notice.body = VARDATA_ANY(notice.raw);
	notice.len = VARSIZE_ANY_EXHDR(notice.raw);

	SPI_connect();
	wxpay_notification_judge_and_record(kind, &notice, judge, schema_1_0, &out);
	MemoryContextSwitchTo(caller);
	reply = notify_reply(&out);
	SPI_finish();
	PG_RETURN_TEXT_P(reply);
}

/*
 * wxpay_handle_notify(body text) -> text, the HTTP response body to send
 * (the 1.1 symbol; 1.0's declaration names wxpay_handle_notify)
 */
Datum
wxpay_handle_notify_1_1(PG_FUNCTION_ARGS)
{
	return wxpay_handle_notification(fcinfo, "pay", judge_payment, false);
}

/* wxpay_handle_notify as the 1.0 schema declares it */
Datum
wxpay_handle_notify(PG_FUNCTION_ARGS)
{
	return wxpay_handle_notification(fcinfo, "pay", judge_payment, true);
}
