/*
 * orders.c
 *	  Who is changing wxpay.orders: the source recorded in order_events.
 *
 * The extension's own C code names itself (unifiedorder, notify, query,
 * close, refund) right before it writes; the trigger asks
 * wxpay.change_source() and gets 'manual' for every other writer.  The
 * value lives in C, not in a GUC, so SQL cannot forge it, and transaction
 * and subtransaction aborts reset it so it never outlives a failed write.
 */
#include "wxpay.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wxpay_change_source);

static const char *change_source = NULL;

void
wxpay_set_change_source(const char *source)
{
	change_source = source;
}

static void
reset_on_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		change_source = NULL;
}

static void
reset_on_subabort(SubXactEvent event, SubTransactionId mySubid,
				  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		change_source = NULL;
}

void
wxpay_orders_init(void)
{
	RegisterXactCallback(reset_on_abort, NULL);
	RegisterSubXactCallback(reset_on_subabort, NULL);
}

/*
 * wxpay.change_source() -> text
 */
Datum
wxpay_change_source(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(change_source ? change_source : "manual"));
}
