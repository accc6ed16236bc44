/*
 * notify.c
 *	  wxpay_handle_notify: payment notifications, judged and recorded.
 *
 * Anyone can POST to a notify_url, so a body is guilty until proven
 * genuine: it must parse (no DOCTYPE), say SUCCESS, come from a known
 * merchant and appid, carry a signature over every field it has, report
 * result_code SUCCESS, and name an order of ours with exactly its amount.
 * Only then does the order move, through wxpay_apply_report's row lock,
 * so duplicates arriving together change it once.
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
#include "subxact.h"

PG_FUNCTION_INFO_V1(wxpay_handle_notify);

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
	else
		out->outcome = result == WX_APPLY_CHANGED ? "accepted" : "duplicate";
}

/* Judge a payment notification and apply it; fills out. */
static void
judge_payment(const char *body, size_t len, WxNotifyOutcome *out)
{
	WxParamList fields;
	WxMerchant *m;
	WxPaymentReport report;
	WxApplyResult result;
	char	   *reason;

	if ((m = wxpay_notify_sender(body, len, &fields, out)) == NULL)
		return;
	out->out_trade_no = (char *) wxpay_list_get(&fields, "out_trade_no");
	out->transaction_id = (char *) wxpay_list_get(&fields, "transaction_id");
	if (!wxpay_verify_list(&fields, WX_SIGN_INVALID, m->api_key, strlen(m->api_key)))
		return wxpay_notify_reject(out, pstrdup("signature does not verify"));
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
	const char *body;
	size_t		len;
	WxNotifyOutcome *out;
} WxJudgement;

/* wxpay_run_isolated's step: the judge itself. */
static void
run_judge(void *arg)
{
	WxJudgement *j = arg;

	j->judge(j->body, j->len, j->out);
}

/*
 * Run a judge in a subtransaction; an error inside it rolls back whatever
 * it did and becomes a rejection with the error's message.
 */
static void
judge_in_subtransaction(WxNotifyJudge judge, const char *body, size_t len,
						WxNotifyOutcome *out)
{
	WxJudgement j = {judge, body, len, out};
	ErrorData  *edata = wxpay_run_isolated(run_judge, &j);

	if (edata != NULL)
	{
		memset(out, 0, sizeof(*out));
		wxpay_notify_reject(out, psprintf("could not process: %s", edata->message));
	}
}

/* Store the body with its outcome in wxpay.notifications. */
static void
record_notification(const char *kind, text *body, const WxNotifyOutcome *out)
{
	Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[9] = "        ";
	const char *strings[8] = {kind, NULL, out->mch_id, out->out_trade_no,
	out->transaction_id, out->outcome, out->reason, out->out_refund_no};
	static SPIPlanPtr plan = NULL;

	for (int i = 0; i < 8; i++)
	{
		nulls[i] = strings[i] || i == 1 ? ' ' : 'n';
		values[i] = strings[i] ? CStringGetTextDatum(strings[i]) : (Datum) 0;
	}
	values[1] = PointerGetDatum(body);
	wxpay_spi_exec_plan(&plan,
						"INSERT INTO wxpay.notifications"
						" (kind, body, mch_id, out_trade_no, transaction_id, outcome, reason, out_refund_no)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
						8, types, values, nulls, false, SPI_OK_INSERT);
}

/* The reply WeChat Pay expects: SUCCESS/OK, or FAIL with a reason. */
static text *
notify_reply(const WxNotifyOutcome *out)
{
	WxParamList reply;
	size_t		len;
	char	   *xml;
	bool		ok = strcmp(out->outcome, "rejected") != 0;

	wxpay_list_init(&reply, 2);
	wxpay_list_add_cstr(&reply, "return_code", ok ? "SUCCESS" : "FAIL");
	wxpay_list_add_cstr(&reply, "return_msg", ok ? "OK" : out->reason);
	xml = wxpay_xml_from_list(&reply, &len);
	return cstring_to_text_with_len(xml, len);
}

/*
 * Judge a notification body, record it with its outcome and return the
 * reply.  Shared by payment and refund notifications.
 */
Datum
wxpay_handle_notification(FunctionCallInfo fcinfo, const char *kind,
						  WxNotifyJudge judge)
{
	text	   *body;
	WxNotifyOutcome out;
	text	   *reply;
	MemoryContext caller = CurrentMemoryContext;

	memset(&out, 0, sizeof(out));
	body = PG_ARGISNULL(0) ? cstring_to_text("") : PG_GETARG_TEXT_PP(0);

	SPI_connect();
	judge_in_subtransaction(judge, VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &out);
	record_notification(kind, body, &out);
	MemoryContextSwitchTo(caller);
	reply = notify_reply(&out);
	SPI_finish();
	PG_RETURN_TEXT_P(reply);
}

/*
 * wxpay_handle_notify(body text) -> text, the HTTP response body to send
 */
Datum
wxpay_handle_notify(PG_FUNCTION_ARGS)
{
	return wxpay_handle_notification(fcinfo, "pay", judge_payment);
}
