/*
 * worker_start.c
 *	  The worker's shared state: how it connects to wxpay.database (and
 *	  waits quietly while that database does not exist), how other
 *	  backends find its latch, and the count of paying commits it follows.
 *
 * A background worker that asks for a missing database dies (FATAL) and
 * is restarted every second, forever.  So one flag in shared memory
 * remembers that an incarnation died before it was connected; the next
 * one connects to no database (shared catalogs only), says once that it
 * waits, checks every few seconds, and exits to be restarted, this time to
 * connect, once the database is there.
 *
 * A DBA's DROP DATABASE fails while the worker is connected.  So
 * wxpay.worker_leave() asks the worker to leave its database for a while:
 * it exits between rounds, its next incarnation waits unconnected until
 * the time is up (or wxpay.worker_leave('0') calls it back), and then
 * connects again - or, if the database was dropped meanwhile, waits for it
 * quietly as above.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "fmgr.h"
#include "http.h"
#include "wxpay.h"

PG_FUNCTION_INFO_V1(wxpay_worker_leave);

/* How often a waiting worker looks for its database. */
#define DATABASE_CHECK_MS 2000

typedef struct WxWorkerShared
{
	bool		database_missing;	/* the last worker died before connecting */
	bool		connected;		/* the worker is connected to wxpay.database */
	pid_t		pid;			/* the worker's pid while it runs, or 0 */
	int			pgprocno;		/* its PGPROC, for its latch, while pid != 0 */
	TimestampTz away_until;		/* asked to stay out of its database until then */
	pg_atomic_uint64 paid_commits;	/* commits that made an order SUCCESS */
	pg_atomic_uint64 work_wakes;	/* wake-ups asking for a round */
} WxWorkerShared;

static WxWorkerShared *shared = NULL;
static bool connected_or_leaving = false;

/* The shared state's size. */
static Size
worker_shared_size(void)
{
	return sizeof(WxWorkerShared);
}

/* Initialise the shared state, once, in the postmaster. */
static void
worker_shared_init(void *part)
{
	WxWorkerShared *state = part;

	memset(state, 0, sizeof(WxWorkerShared));
	pg_atomic_init_u64(&state->paid_commits, 0);
	pg_atomic_init_u64(&state->work_wakes, 0);
}

/* Called from _PG_init while preloading. */
void
wxpay_worker_shmem_init(void)
{
	wxpay_shmem_add("wxpay worker", worker_shared_size, worker_shared_init, (void **) &shared);
}

/* At exit: a worker that never got connected found no database. */
static void
note_exit(int code, Datum arg)
{
	if (shared == NULL)
		return;
	if (!connected_or_leaving)
		shared->database_missing = true;
	shared->connected = false;
	shared->pid = 0;
}

/*
 * Whether a database of that name exists.  Without a database connection
 * only shared catalogs can be read, and only by a heap scan (as the
 * autovacuum launcher lists databases): no syscache, no index.
 */
static bool
database_exists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), name) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * Wait connected to no database, checking every DATABASE_CHECK_MS (or when
 * the latch is set) until done(); then exit, to be restarted connected.
 */
static void
wait_unconnected(bool (*done) (void), const char *activity)
{
	pgstat_report_activity(STATE_IDLE, activity);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (done())
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 DATABASE_CHECK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	connected_or_leaving = true;
	proc_exit(1);				/* restarted after bgw_restart_time */
}

/* Whether wxpay.database exists (done() of the wait for it). */
static bool
database_is_there(void)
{
	if (!database_exists(wxpay_database))
		return false;
	ereport(LOG,
			(errmsg("wxpay worker: database \"%s\" exists now; restarting to connect to it", wxpay_database)));
	shared->database_missing = false;
	return true;
}

/* Whether the time away from the database is up (done() of the wait). */
static bool
away_is_over(void)
{
	return GetCurrentTimestamp() >= shared->away_until;
}

/* Connect the worker to wxpay.database, or wait for it to exist. */
/* Connect the worker to wxpay.database, or wait for it to exist. */
void
wxpay_worker_connect(void)
{
	on_proc_exit(note_exit, (Datum) 0);
	shared->pgprocno = MyProc->pgprocno;
	pg_write_barrier();
	shared->pid = MyProcPid;
	if (shared->away_until > GetCurrentTimestamp())
	{
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
		wait_unconnected(away_is_over,
						 psprintf("wxpay: away from database \"%s\" until %s (wxpay.worker_leave)",
								  wxpay_database, timestamptz_to_str(shared->away_until)));
	}
	if (shared->database_missing)
	{
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
		ereport(LOG,
				(errmsg("wxpay worker waits: database \"%s\" does not exist", wxpay_database),
				 errhint("Create it, or set wxpay.database and restart the server.")));
		wait_unconnected(database_is_there,
						 psprintf("wxpay: waiting for database \"%s\"", wxpay_database));
	}
	BackgroundWorkerInitializeConnection(wxpay_database, NULL, 0);
	connected_or_leaving = true;
	shared->database_missing = false;
	shared->connected = true;
}

/*
 * Between rounds: if wxpay.worker_leave() asked, leave the database (exit;
 * the next incarnation waits unconnected).
 */
void
wxpay_worker_leave_if_asked(void)
{
	if (shared->away_until <= GetCurrentTimestamp())
		return;
	ereport(LOG,
			(errmsg("wxpay worker leaves database \"%s\" until %s, as asked by wxpay.worker_leave()",
					wxpay_database, timestamptz_to_str(shared->away_until))));
	proc_exit(1);
}

/* The running worker's latch, or NULL (not preloaded, or not running). */
Latch *
wxpay_worker_latch(void)
{
	if (shared == NULL || shared->pid == 0)
		return NULL;
	pg_read_barrier();
	return &ProcGlobal->allProcs[shared->pgprocno].procLatch;
}

/* Count a commit that made an order SUCCESS (the worker publishes it). */
void
wxpay_count_paid_commit(void)
{
	if (shared != NULL)
		pg_atomic_fetch_add_u64(&shared->paid_commits, 1);
}

/* How many such commits there have been since the server started. */
uint64
wxpay_paid_commits(void)
{
	return shared != NULL ? pg_atomic_read_u64(&shared->paid_commits) : 0;
}

/*
 * Set the worker's latch, if it runs, for paid events alone: it publishes
 * them without a round (paying commits come by the thousand a second).
 */
void
wxpay_wake_worker_to_publish(void)
{
	Latch	   *latch = wxpay_worker_latch();

	if (latch != NULL)
		SetLatch(latch);
}

/* Wake the worker for a round: work may be due. */
void
wxpay_wake_worker(void)
{
	if (shared != NULL)
		pg_atomic_fetch_add_u64(&shared->work_wakes, 1);
	wxpay_wake_worker_to_publish();
}

/* How many wake-ups have asked for a round since the server started. */
uint64
wxpay_worker_wakes(void)
{
	return shared != NULL ? pg_atomic_read_u64(&shared->work_wakes) : 0;
}

/*
 * wxpay.worker_leave(away interval) -> boolean
 *
 * Ask the worker to leave its database for away (at once, between two
 * rounds) and wait until it has: then DROP DATABASE works.  True when the
 * worker is out of the database within the wait.  A zero or negative
 * interval calls it back (it reconnects within a few seconds).
 */
Datum
wxpay_worker_leave(PG_FUNCTION_ARGS)
{
	Interval   *away = PG_GETARG_INTERVAL_P(0);
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
																TimestampTzGetDatum(now),
																PointerGetDatum(away)));
	TimestampTz deadline = TimestampTzPlusMilliseconds(now, wxpay_http_timeout + 5000);

	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("there is no wxpay worker to ask"),
				 errhint("The worker runs only with wxpay in shared_preload_libraries.")));
	shared->away_until = until > now ? until : 0;
	wxpay_wake_worker();
	while (until > now && shared->connected)
	{
		if (GetCurrentTimestamp() >= deadline)
			PG_RETURN_BOOL(false);
		CHECK_FOR_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	PG_RETURN_BOOL(true);
}
