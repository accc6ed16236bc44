/*
 * subxact.c
 *	  wxpay_run_isolated: one step in an internal subtransaction (the
 *	  PL/pgSQL exception-block technique).  The notification handlers use it
 *	  so that whatever a body provokes, it is still recorded; the worker, so
 *	  that a poisoned row costs only its own attempt.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "subxact.h"

/*
 * Run step(arg) in a subtransaction.  Returns NULL when it completed, or
 * the error it raised (in the caller's memory context), after rolling back
 * whatever it did.
 */
ErrorData *
wxpay_run_isolated(WxStep step, void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
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
