/*
 * autonomous.c
 *	  Steps that move money run in a process of their own, so that what
 *	  they record does not depend on the caller's transaction committing.
 *
 * wxpay_run_autonomous starts a dynamic background worker in the caller's
 * database, hands it a step name and its arguments (jsonb) in a dynamic
 * shared memory segment, and waits for it to finish.  The step commits its
 * own transactions: the local record before the request, the answer after
 * it.  The caller then returns the step's result or raises its error (same
 * SQLSTATE, message, detail and hint), but nothing the caller does
 * afterwards, a ROLLBACK included, undoes what the step committed.  If the
 * caller is cancelled while waiting, the step still runs to the end.
 *
 * No shared_preload_libraries is needed: dynamic workers load the library
 * by name.  Each step takes a slot of max_worker_processes while it runs.
 */
#include "wxpay.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "autonomous.h"
#include "history.h"
#include "remote_error.h"
#include "txn.h"

PGDLLEXPORT void wxpay_autonomous_main(Datum main_arg);

#define SEGMENT_SIZE (256 * 1024)

/* The segment: what to run, and what came of it. */
typedef struct WxAutonomousSlot
{
	Oid			database;
	Oid			role;
	Oid			actor;			/* the caller's role, for the history's db_user */
	char		step[NAMEDATALEN];
	bool		finished;		/* the step ran to the end, well or not */
	bool		failed;
	int			sqlstate;
	char		message[2048];
	char		detail[2048];
	char		hint[1024];
	Size		args_len;		/* the arguments' jsonb, then the result's */
	Size		result_len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} WxAutonomousSlot;

#define SLOT_DATA_SIZE (SEGMENT_SIZE - offsetof(WxAutonomousSlot, data))

/* A bounded, NUL-terminated copy of an error text. */
static void
copy_text(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

/* Raise the error the step reported, as it was raised there. */
static void
raise_step_error(const WxAutonomousSlot *slot)
{
	ereport(ERROR,
			(errcode(slot->sqlstate),
			 errmsg("%s", slot->message),
			 slot->detail[0] ? errdetail("%s", slot->detail) : 0,
			 slot->hint[0] ? errhint("%s", slot->hint) : 0));
}

/*
 * Run step(args) in a dynamic background worker as the extension's owner,
 * for the caller's role (the history's db_user), and return its result; its
 * error is raised here.
 */
Jsonb *
wxpay_run_autonomous(const char *step, Jsonb *args, Oid owner)
{
	dsm_segment *seg;
	WxAutonomousSlot *slot;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	Jsonb	   *result;

	if (VARSIZE(args) > SLOT_DATA_SIZE / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("arguments of %s are too large", step)));
	seg = dsm_create(SEGMENT_SIZE, 0);
	slot = dsm_segment_address(seg);
	memset(slot, 0, offsetof(WxAutonomousSlot, data));
	slot->database = MyDatabaseId;
	slot->role = owner;
	slot->actor = GetOuterUserId();
	strlcpy(slot->step, step, sizeof(slot->step));
	slot->args_len = VARSIZE(args);
	memcpy(slot->data, args, VARSIZE(args));

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "wxpay");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "wxpay_autonomous_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "wxpay %s for PID %d", step, MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "wxpay %s", step);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a background worker for %s", step),
				 errdetail("Nothing was recorded or sent."),
				 errhint("Every such call needs a free slot of max_worker_processes while it runs.")));

	status = WaitForBackgroundWorkerShutdown(handle);
	if (status == BGWH_POSTMASTER_DIED)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster exited while %s was running", step)));
	if (!slot->finished)
		ereport(ERROR,
				(errcode(ERRCODE_WXPAY_RETRY),
				 errmsg("%s ended before it could report its outcome", step),
				 errhint("Whatever it recorded is in the tables; repeat the call with identical parameters.")));
	if (slot->failed)
		raise_step_error(slot);
	result = palloc(slot->result_len);
	memcpy(result, slot->data + slot->args_len, slot->result_len);
	dsm_detach(seg);
	return result;
}

/* Record the error that ends a step in the slot, for the caller. */
static void
report_error(WxAutonomousSlot *slot, ErrorData *edata)
{
	slot->failed = true;
	slot->sqlstate = edata->sqlerrcode;
	copy_text(slot->message, sizeof(slot->message), edata->message);
	copy_text(slot->detail, sizeof(slot->detail), edata->detail);
	copy_text(slot->hint, sizeof(slot->hint), edata->hint);
}

/* Store a step's result after its arguments. */
static void
report_result(WxAutonomousSlot *slot, Jsonb *result)
{
	if (VARSIZE(result) > SLOT_DATA_SIZE - slot->args_len)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the result of %s is too large to return", slot->step),
				 errdetail("Its outcome is in the tables.")));
	memcpy(slot->data + slot->args_len, result, VARSIZE(result));
	slot->result_len = VARSIZE(result);
}

/*
 * In a step, between its transactions: commit what was recorded, make the
 * request outside any transaction, and begin the transaction that records
 * the answer (its activity).  Memory stays in cxt.
 */
WxHttpFailure
wxpay_step_exchange(const WxHttpRequest *req, WxHttpResponse *resp, char **message,
					MemoryContext cxt, const char *activity)
{
	WxHttpFailure transport;

	wxpay_step_commit(cxt);
	pgstat_report_activity(STATE_RUNNING, "wxpay: waiting for WeChat Pay");
	transport = wxpay_http_perform(req, resp, message);
	wxpay_txn_begin(activity);
	return transport;
}

/* Commit a step's transaction, back in cxt (commit leaves TopMemoryContext). */
void
wxpay_step_commit(MemoryContext cxt)
{
	wxpay_txn_commit();
	MemoryContextSwitchTo(cxt);
}

/* The steps there are, by name. */
Jsonb *
wxpay_autonomous_step(const char *step, Jsonb *args, MemoryContext cxt)
{
	if (strcmp(step, "refund") == 0)
		return wxpay_refund_step(args, cxt);
	if (strcmp(step, "micropay") == 0)
		return wxpay_micropay_step(args, cxt);
	if (strcmp(step, "reverse") == 0)
		return wxpay_reverse_step(args, cxt);
	elog(ERROR, "unknown autonomous step \"%s\"", step);
	return NULL;				/* not reached */
}

/*
 * The dynamic worker: connect, run the step, report, exit.  The step's
 * error is caught to be handed to the caller, who raises it.
 */
void
wxpay_autonomous_main(Datum main_arg)
{
	dsm_segment *seg;
	WxAutonomousSlot *slot;
	MemoryContext cxt;
	Jsonb	   *args;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("wxpay: the caller of an autonomous step went away before it started")));
	slot = dsm_segment_address(seg);
	BackgroundWorkerInitializeConnectionByOid(slot->database, slot->role, 0);
	wxpay_set_change_actor(slot->actor);

	cxt = AllocSetContextCreate(TopMemoryContext, "wxpay autonomous step", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);
	args = palloc(slot->args_len);
	memcpy(args, slot->data, slot->args_len);
	PG_TRY();
	{
		report_result(slot, wxpay_autonomous_step(slot->step, args, cxt));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		report_error(slot, edata);
	}
	PG_END_TRY();
	slot->finished = true;
	dsm_detach(seg);
	proc_exit(0);
}
