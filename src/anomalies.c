/*
 * anomalies.c
 *	  Payment anomalies: an authentic report (a notification or a query
 *	  answer, API v2 or v3) of an order already paid here, with its own
 *	  transaction but another amount.
 *
 * The order stays as it is (it is paid; nothing a report says changes a
 * paid amount) and the report is not refused: refusing a notification
 * only makes WeChat Pay re-send it for a day.  But a contradiction between
 * WeChat Pay and our records is not a duplicate either, so it is said
 * where a DBA looks: a WARNING in the server log and a row in
 * wxpay.payment_anomalies.  The report was verified first, so a stranger
 * cannot produce one.  Recording it never fails the caller: a row that
 * cannot be written (a 1.0 schema, before ALTER EXTENSION UPDATE) costs
 * only the row, not the notification.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "history.h"
#include "orders.h"
#include "spi_util.h"
#include "txn.h"

/* What insert_anomaly writes. */
typedef struct WxAnomaly
{
	const char *mch_id;
	const WxPaymentReport *report;
	const char *order_fee;
	const char *reason;
} WxAnomaly;

/* wxpay_run_isolated's step: the row in wxpay.payment_anomalies. */
static void
insert_anomaly(void *arg)
{
	const WxAnomaly *a = arg;
	const char *source = wxpay_change_source_name();
	char		nulls[7] = "       ";

	wxpay_spi_exec("INSERT INTO wxpay.payment_anomalies (mch_id, out_trade_no, transaction_id, source,"
				   " reported_total_fee, order_total_fee, reason)"
				   " VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.int4, $7)",
				   7, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
				   (Datum[]) {CStringGetTextDatum(a->mch_id), CStringGetTextDatum(a->report->out_trade_no),
				   wxpay_text_or_null(a->report->transaction_id, nulls, 2),
				   CStringGetTextDatum(source ? source : "manual"),
				   wxpay_text_or_null(a->report->total_fee, nulls, 4),
				   CStringGetTextDatum(a->order_fee), CStringGetTextDatum(a->reason)},
				   nulls, false, SPI_OK_INSERT);
}

/*
 * A verified report of the paid order out_trade_no whose amount is not
 * the order's (order_fee): logged and recorded; returns the reason.  The
 * caller holds the order's row lock and is connected to SPI.
 */
char *
wxpay_payment_anomaly(const char *mch_id, const WxPaymentReport *r, const char *order_fee)
{
	WxAnomaly	a = {mch_id, r, order_fee, NULL};
	char	   *reason = psprintf("the order is paid with %s fen; WeChat Pay reports %.32s fen"
								  " for its transaction %.32s", order_fee, r->total_fee,
								  r->transaction_id ? r->transaction_id : "(none)");
	ErrorData  *edata;

	wx_utf8_clip(reason);
	a.reason = reason;
	ereport(WARNING,
			(errmsg("wxpay: order %s of merchant %s is paid with %s fen, but WeChat Pay reports %.32s fen",
					r->out_trade_no, mch_id, order_fee, r->total_fee),
			 errdetail("A verified report of transaction %.32s; the order is left as it is.",
					   r->transaction_id ? r->transaction_id : "(none)"),
			 errhint("Reconcile the payment by hand: see wxpay.payment_anomalies.")));
	if ((edata = wxpay_run_isolated(insert_anomaly, &a)) != NULL)
		ereport(WARNING,
				(errmsg("wxpay: could not record the payment anomaly of order %s: %s",
						r->out_trade_no, edata->message)));
	return reason;
}
