/*
 * retention.c
 *	  wxpay.archive_notifications(older_than): moving the notification
 *	  bodies of settled orders and refunds out of wxpay.notifications, the
 *	  fastest-growing table (every delivery, duplicates included), into
 *	  wxpay.notifications_archive, from which a DBA exports them.
 *
 * Nothing is lost: rows move in one statement, so each is in exactly one of
 * the two tables.  Only bodies that no decision reads again move: those
 * received before the horizon, accepted or duplicate, of an order that is
 * no longer pending (or a refund that is final).  Rejected bodies stay
 * (wxpay.unmatched_payments and the forgery evidence read them), and so do
 * orders, refunds and their histories (order_events, refund_events,
 * paid_events): they are the audit trail.  A duplicate that arrives after
 * its body was archived is judged against the order, as every delivery
 * is, and answered SUCCESS without a second transition.
 *
 * The append-only trigger of notifications lets this function's DELETE
 * through because it names itself as the change source 'archive', which
 * only C code can do (orders.c).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "wxpay.h"

PG_FUNCTION_INFO_V1(wxpay_archive_notifications);

#define ARCHIVE_NOTIFICATIONS \
	"WITH moved AS (" \
	" DELETE FROM wxpay.notifications n" \
	"  WHERE n.received_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)" \
	"    AND n.outcome OPERATOR(pg_catalog.<>) 'rejected'" \
	"    AND CASE n.kind" \
	"     WHEN 'pay' THEN EXISTS (SELECT FROM wxpay.orders o" \
	"       WHERE o.mch_id OPERATOR(pg_catalog.=) n.mch_id" \
	"         AND o.out_trade_no OPERATOR(pg_catalog.=) n.out_trade_no" \
	"         AND NOT wxpay.order_state_pending(o.state))" \
	"     WHEN 'refund' THEN EXISTS (SELECT FROM wxpay.refunds r" \
	"       WHERE r.mch_id OPERATOR(pg_catalog.=) n.mch_id" \
	"         AND r.out_refund_no OPERATOR(pg_catalog.=) n.out_refund_no" \
	"         AND wxpay.refund_state_final(r.state))" \
	"     ELSE false END" \
	"  RETURNING n.id, n.kind, n.received_at, n.body, n.mch_id, n.out_trade_no, n.out_refund_no," \
	"   n.transaction_id, n.outcome, n.reason, n.verified, n.headers, n.resource)" \
	" INSERT INTO wxpay.notifications_archive (id, kind, received_at, body, mch_id, out_trade_no," \
	"  out_refund_no, transaction_id, outcome, reason, verified, headers, resource)" \
	" SELECT * FROM moved"

/*
 * wxpay.archive_notifications(older_than interval) -> bigint
 *
 * Moves the settled notifications received more than older_than ago into
 * wxpay.notifications_archive; returns how many moved.
 */
Datum
wxpay_archive_notifications(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {INTERVALOID};
	Datum		values[1];
	Interval   *horizon;
	uint64		moved;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("older_than must be given"),
				 errhint("Say how old a settled notification must be to move, such as '400 days'.")));
	horizon = PG_GETARG_INTERVAL_P(0);
	if (horizon->month < 0 || horizon->day < 0 || horizon->time < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative")));
	values[0] = IntervalPGetDatum(horizon);

	SPI_connect();
	wxpay_set_change_source("archive");
	wxpay_spi_exec(ARCHIVE_NOTIFICATIONS, 1, types, values, NULL, false, SPI_OK_INSERT);
	wxpay_set_change_source(NULL);
	moved = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) moved);
}
