/*
 * wake.c
 *	  What a commit wakes: the worker, when work becomes due (a refund
 *	  notification schedules an immediate refundquery, an operator's "ask
 *	  again at once") and when an order became SUCCESS (the worker publishes
 *	  paid events and rings the wxpay_order_paid doorbell); and the
 *	  backends waiting for an order the transaction moved (order_wait.c).
 *
 * Everything happens once the transaction commits; an aborted transaction
 * wakes nobody.  Only the extension's shared memory is touched: no lock
 * that other commits wait on.  Without shared_preload_libraries there is
 * no worker and no waiter, and nothing to do.
 */
#include "wxpay.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"

PG_FUNCTION_INFO_V1(wxpay_wake_worker_trigger);

static bool wake_at_commit = false;
static bool paid_at_commit = false;
static bool callback_registered = false;

/* Whether the event ends the transaction, committed or not. */
static bool
transaction_ends(XactEvent event)
{
	return event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE;
}

/* At commit, wake whom the transaction asked for; at any end, forget. */
static void
wake_at_end(XactEvent event, void *arg)
{
	if (!transaction_ends(event))
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (paid_at_commit)
			wxpay_count_paid_commit();
		if (wake_at_commit)
			wxpay_wake_worker();
		else if (paid_at_commit)
			wxpay_wake_worker_to_publish();
		wxpay_order_waiters_wake_committed();
	}
	wake_at_commit = paid_at_commit = false;
	wxpay_order_waiters_forget();
}

/* Make sure wake_at_end runs at the end of transactions. */
void
wxpay_wake_at_end_of_transaction(void)
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
	wxpay_wake_at_end_of_transaction();
}

/* Tell the worker when the current transaction commits that it paid an order. */
void
wxpay_paid_event_at_commit(void)
{
	paid_at_commit = true;
	wxpay_wake_at_end_of_transaction();
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
