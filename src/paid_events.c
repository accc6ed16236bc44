/*
 * paid_events.c
 *	  Publishing paid events, in the worker: appending the orders that
 *	  became SUCCESS to wxpay.paid_events and ringing the wxpay_order_paid
 *	  doorbell once per batch.
 *
 * A paying transaction only writes its order_events row (with its xid)
 * and, at commit, counts itself and wakes the worker (wake.c); it takes no
 * lock another commit waits on.  The worker then publishes, in its own
 * short transaction, every SUCCESS event written by a transaction older
 * than its snapshot's xmin: all of those have ended, so an event that
 * commits late (its transaction began before one that committed first) is
 * never passed over, and each publish covers exactly the xids from the last
 * horizon to the new one.  The first publish after the worker starts looks
 * at every committed SUCCESS event not yet published instead (a crash, a
 * restart, a restored dump).  Consumers read wxpay.paid_events in seq
 * order, which is the order of these single-writer commits.
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/xid8.h"

#include "spi_util.h"
#include "txn.h"
#include "wxpay.h"

/* Paying commits seen when the worker last published. */
static uint64 seen_commits = 0;

/* Whether a publish has run since the worker started. */
static bool caught_up = false;

/* Committed events were left behind the horizon: look again soon. */
static bool retry_soon = false;

/* The horizon of the last publish: events of older xids are published. */
static FullTransactionId horizon;

/* SUCCESS events not yet published, and how publishing inserts them. */
#define UNPUBLISHED \
	" FROM wxpay.order_events e WHERE e.new_state OPERATOR(pg_catalog.=) 'SUCCESS'" \
	"  AND NOT EXISTS (SELECT FROM wxpay.paid_events p WHERE p.event_id OPERATOR(pg_catalog.=) e.id)"
#define INSERT_PAID "INSERT INTO wxpay.paid_events (event_id, mch_id) SELECT e.id, e.mch_id"

/* After a start: everything committed and not yet published. */
#define CATCH_UP INSERT_PAID UNPUBLISHED " ORDER BY e.id RETURNING seq"

/* Then: the events of the xids from the last horizon ($1) to the new one ($2). */
#define PUBLISH INSERT_PAID UNPUBLISHED \
	"  AND e.xid OPERATOR(pg_catalog.>=) $1 AND e.xid OPERATOR(pg_catalog.<) $2" \
	"  ORDER BY e.xid, e.id RETURNING seq"

/*
 * Whether committed events of xids from the new horizon ($1) on wait for
 * older ones.  Ordered by xid so that the generic plan reads
 * order_events_paid_xid_idx from $1 on: with a bare LIMIT 1 it walked the
 * primary key of every event, 1.4 s a publish at a million orders.  Both
 * this and PUBLISH run with that generic plan, made once: planning them
 * for each publish's xids cost the worker more than running them.
 */
#define LEFT_BEHIND "SELECT" UNPUBLISHED "  AND e.xid OPERATOR(pg_catalog.>=) $1 ORDER BY e.xid LIMIT 1"

/* The statements of every publish after the first, for wxpay.worker_queries(). */
const char *const wxpay_paid_events_publish_sql = PUBLISH;
const char *const wxpay_paid_events_left_behind_sql = LEFT_BEHIND;

/* The xmin of a fresh snapshot: every older transaction has ended. */
static FullTransactionId
snapshot_xmin(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;

	wxpay_spi_exec_plan(&plan, "SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())",
						0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	return DatumGetFullTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Ring the doorbell: the payload is the newest seq, nothing about payments. */
static void
ring(void)
{
	bool		isnull;
	int64		newest = 0;

	for (uint64 i = 0; i < SPI_processed; i++)
		newest = Max(newest, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)));
	Async_Notify("wxpay_order_paid", psprintf(INT64_FORMAT, newest));
}

/* One publish, in the current transaction; SPI connected.  Whether it published any. */
static bool
publish(void)
{
	static SPIPlanPtr catch_up_plan = NULL;
	static SPIPlanPtr publish_plan = NULL;
	static SPIPlanPtr behind_plan = NULL;
	Oid			types[2] = {XID8OID, XID8OID};
	FullTransactionId next = snapshot_xmin();
	Datum		args[2] = {FullTransactionIdGetDatum(horizon), FullTransactionIdGetDatum(next)};
	bool		published;

	if (!caught_up)
		wxpay_spi_exec_plan(&catch_up_plan, CATCH_UP, 0, NULL, NULL, NULL, false, SPI_OK_INSERT_RETURNING);
	else
		wxpay_spi_exec_generic_plan(&publish_plan, PUBLISH, 2, types, args, NULL, false, SPI_OK_INSERT_RETURNING);
	published = SPI_processed > 0;
	if (published)
		ring();
	wxpay_spi_exec_generic_plan(&behind_plan, LEFT_BEHIND, 1, types + 1, args + 1, NULL, false, SPI_OK_SELECT);
	retry_soon = SPI_processed > 0;
	horizon = next;
	caught_up = true;
	return published;
}

/*
 * Publish what is due: after paying commits, after the worker started, or
 * when events were left behind last time.  Runs its own transaction; the
 * caller must not be in one.  The installed schema must be this library's.
 * Returns whether it published any event.
 */
bool
wxpay_publish_paid_events(void)
{
	uint64		commits = wxpay_paid_commits();
	MemoryContext cxt = CurrentMemoryContext;
	bool		published;

	if (caught_up && !retry_soon && commits == seen_commits)
		return false;
	seen_commits = commits;
	wxpay_txn_begin("wxpay: publishing paid events");
	published = publish();
	wxpay_txn_commit();
	MemoryContextSwitchTo(cxt);
	return published;
}

/* Whether committed paid events are waiting for older transactions to end. */
bool
wxpay_paid_events_waiting(void)
{
	return retry_soon;
}
