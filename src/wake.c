/*
 * wake.c
 *	  Waking the worker when work becomes due, at commit: a refund
 *	  notification schedules an immediate refundquery, and the worker
 *	  should not sleep through it.
 *
 * The worker's pid is looked up when the wake is asked for (inside the
 * transaction, where SQL can run) and its latch set once the transaction
 * commits; an aborted transaction wakes nobody.  No shared memory is
 * needed, so this works without shared_preload_libraries too (there is
 * then simply no worker to wake).
 */
#include "wxpay.h"

#include "access/xact.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"

#include "spi_util.h"

static pid_t wake_pid = 0;
static bool callback_registered = false;

/* At commit, set the worker's latch; at any end, forget it. */
static void
wake_at_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_pid != 0)
	{
		PGPROC	   *proc = BackendPidGetProc(wake_pid);

		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		wake_pid = 0;
}

/* Wake the worker when the current transaction commits.  SPI connected. */
void
wxpay_wake_worker_at_commit(void)
{
	static SPIPlanPtr plan = NULL;

	wxpay_spi_exec_plan(&plan,
						"SELECT pid FROM pg_catalog.pg_stat_activity"
						" WHERE backend_type OPERATOR(pg_catalog.=) 'wxpay worker'",
						0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	wake_pid = (pid_t) pg_strtoint32(wxpay_spi_value(0, 1));
	if (!callback_registered)
	{
		RegisterXactCallback(wake_at_end, NULL);
		callback_registered = true;
	}
}
