/*
 * worker_start.c
 *	  How the worker connects to wxpay.database, and waits quietly while
 *	  that database does not exist.
 *
 * A background worker that asks for a missing database dies (FATAL) and
 * is restarted every second, forever.  So one flag in shared memory
 * remembers that an incarnation died before it was connected; the next
 * one connects to no database (shared catalogs only), says once that it
 * waits, checks every few seconds, and exits to be restarted, this time to
 * connect, once the database is there.
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
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "wxpay.h"

/* How often a waiting worker looks for its database. */
#define DATABASE_CHECK_MS 2000

typedef struct WxWorkerShared
{
	bool		database_missing;	/* the last worker died before connecting */
} WxWorkerShared;

static WxWorkerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;
static bool connected_or_leaving = false;

/* Ask for the shared flag. */
static void
request_shmem(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WxWorkerShared)));
}

/* Find (or create) the shared flag. */
static void
startup_shmem(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("wxpay worker", sizeof(WxWorkerShared), &found);
	if (!found)
		shared->database_missing = false;
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init while preloading. */
void
wxpay_worker_shmem_init(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = request_shmem;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = startup_shmem;
}

/* At exit: a worker that never got connected found no database. */
static void
note_exit(int code, Datum arg)
{
	if (!connected_or_leaving && shared != NULL)
		shared->database_missing = true;
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

/* Wait, connected to no database, until wxpay.database exists; then exit. */
static void
wait_for_database(void)
{
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	ereport(LOG,
			(errmsg("wxpay worker waits: database \"%s\" does not exist", wxpay_database),
			 errhint("Create it, or set wxpay.database and restart the server.")));
	pgstat_report_activity(STATE_IDLE, psprintf("wxpay: waiting for database \"%s\"", wxpay_database));
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (database_exists(wxpay_database))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 DATABASE_CHECK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	ereport(LOG,
			(errmsg("wxpay worker: database \"%s\" exists now; restarting to connect to it", wxpay_database)));
	shared->database_missing = false;
	connected_or_leaving = true;
	proc_exit(1);				/* restarted after bgw_restart_time */
}

/* Connect the worker to wxpay.database, or wait for it to exist. */
void
wxpay_worker_connect(void)
{
	on_proc_exit(note_exit, (Datum) 0);
	if (shared != NULL && shared->database_missing)
		wait_for_database();
	BackgroundWorkerInitializeConnection(wxpay_database, NULL, 0);
	connected_or_leaving = true;
	shared->database_missing = false;
}
