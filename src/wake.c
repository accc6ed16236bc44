/*
 * wake.c
 *	  Waking the worker at commit: when work becomes due (a refund
 *	  notification schedules an immediate refundquery) and when an order
 *	  became SUCCESS (the worker publishes paid events and rings the
 *	  wxpay_order_paid doorbell).
 *
 * The latch is set, and paying commits counted, once the transaction
 * commits; an aborted transaction wakes nobody.  Both use only the
 * worker's shared memory: no lock that other commits wait on.  Without
 * shared_preload_libraries there is no worker, and nothing to do.
 */
#include "wxpay.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "storage/latch.h"

PG_FUNCTION_INFO_V1(wxpay_paid_event_at_commit_sql);
PG_FUNCTION_INFO_V1(wxpay_wake_worker_trigger);

static bool wake_at_commit = false;
static bool paid_at_commit = false;
static bool callback_registered = false;

/* At commit, count a payment and set the worker's latch; at any end, forget. */
static void
wake_at_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && (wake_at_commit || paid_at_commit))
	{
		Latch	   *latch;

		if (paid_at_commit)
			wxpay_count_paid_commit();
		if ((latch = wxpay_worker_latch()) != NULL)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		wake_at_commit = paid_at_commit = false;
}

/* Make sure wake_at_end runs at the end of transactions. */
static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wake_at_end, NULL);
		callback_registered = true;
	}
}

/* Wake the worker when the current transaction commits. */
void
wxpay_wake_worker_at_commit(void)
{
	wake_at_commit = true;
	register_callback();
}

/* Tell the worker when the current transaction commits that it paid an order. */
void
wxpay_paid_event_at_commit(void)
{
	paid_at_commit = true;
	register_callback();
}

/*
 * wxpay.paid_event_at_commit() -> void, for the history trigger.
 */
Datum
wxpay_paid_event_at_commit_sql(PG_FUNCTION_ARGS)
{
	wxpay_paid_event_at_commit();
	PG_RETURN_VOID();
}

/*
 * wxpay.wake_worker() -> trigger, AFTER UPDATE FOR EACH ROW: a row made due
 * now (an operator's "ask again at once") wakes the worker at commit,
 * instead of waiting for the end of its sleep.
 */
Datum
wxpay_wake_worker_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "wxpay.wake_worker() must be called as a trigger");
	wxpay_wake_worker_at_commit();
	return PointerGetDatum(NULL);
}
