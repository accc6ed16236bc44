/*
 * txn.c
 *	  Transactions of our own processes (the worker, autonomous steps), and
 *	  wxpay_run_isolated: one step in an internal subtransaction (the
 *	  PL/pgSQL exception-block technique).  The notification handlers use
 *	  the latter so that whatever a body provokes, it is still recorded; the
 *	  worker, so that a poisoned row costs only its own attempt.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "txn.h"

/*
 * Run step(arg) in a subtransaction.  Returns NULL when it completed, or
 * the error it raised (in the caller's memory context), after rolling back
 * whatever it did.
 */
ErrorData *
wxpay_run_isolated(WxStep step, void *arg)
{
	return wxpay_run_isolated_waiting(step, arg, 0);
}

/*
 * The same, waiting at most lock_timeout_ms for any lock (0: as the
 * session would): our own processes and notification handlers must never
 * wait indefinitely behind a row an application holds.
 */
ErrorData *
wxpay_run_isolated_waiting(WxStep step, void *arg, int lock_timeout_ms)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		/*
		 * Saved at the subtransaction's own GUC nesting level: its end,
		 * commit or abort, restores the caller's lock_timeout (a nesting
		 * level of our own would walk every setting once more per call).
		 */
		if (lock_timeout_ms > 0)
			(void) set_config_option("lock_timeout", psprintf("%d", lock_timeout_ms),
									 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		step(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	return edata;
}

/*
 * Start a transaction in a background process, with SPI connected and a
 * snapshot, showing activity in pg_stat_activity.
 */
void
wxpay_txn_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit what wxpay_txn_begin started; we are left in TopMemoryContext. */
void
wxpay_txn_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}
