/*
 * order_wait.c
 *	  A till that waits: wxpay_micropay_wait blocks in its backend until an
 *	  order is settled (no longer pending) or a timeout passes, and is woken
 *	  by the commit that settles it.
 *
 * A waiting backend publishes a hash of the order it waits for in its own
 * slot of a shared array (one per backend, indexed by pgprocno, written
 * only by its owner).  Every transaction that moves an order goes through
 * wxpay_apply_payment, which notes the order here; once that transaction
 * has committed (its change is visible), wake.c has the latch of every
 * backend waiting for the order set.  The waiter then reads the order with a
 * fresh snapshot.
 *
 * Why not LISTEN: a backend receives notifications only between
 * transactions, never inside a function call, and a LISTEN takes effect
 * only at commit; a till would have to poll with its own client loop.  The
 * latch wakes the waiting call itself, which stays cancellable
 * (CHECK_FOR_INTERRUPTS, statement_timeout).
 *
 * The waiter also looks again at least every second, so a change made
 * outside wxpay_apply_payment (by hand) is seen within a second; without
 * shared_preload_libraries there is no array, and it looks every 100 ms.
 */
#include "wxpay.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "args.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(wxpay_micropay_wait);

/* How often a waiter looks even when nobody wakes it, with and without the array. */
#define RECHECK_WOKEN_MS 1000
#define RECHECK_POLLING_MS 100
/* Orders one transaction may wake precisely; beyond, it wakes every waiter. */
#define MAX_PENDING_WAKES 64

typedef struct WxWaiters
{
	pg_atomic_uint32 nwaiting;	/* slots in use: commits skip the scan at 0 */
	int			nslots;
	pg_atomic_uint32 key[FLEXIBLE_ARRAY_MEMBER];	/* 0: not waiting */
} WxWaiters;

static WxWaiters *waiters = NULL;

static uint32 pending[MAX_PENDING_WAKES];
static int	npending = 0;
static bool pending_overflow = false;

/* The array: a slot per backend (background workers included). */
static Size
waiters_size(void)
{
	return add_size(offsetof(WxWaiters, key), mul_size(MaxBackends, sizeof(pg_atomic_uint32)));
}

/* Initialise the array, once, in the postmaster. */
static void
waiters_init(void *part)
{
	WxWaiters  *array = part;

	pg_atomic_init_u32(&array->nwaiting, 0);
	array->nslots = MaxBackends;
	for (int i = 0; i < array->nslots; i++)
		pg_atomic_init_u32(&array->key[i], 0);
}

/* Called from _PG_init while preloading. */
void
wxpay_order_wait_shmem_init(void)
{
	wxpay_shmem_add("wxpay order waiters", waiters_size, waiters_init, (void **) &waiters);
}

/* The order's key: a hash of mch_id/out_trade_no, never 0. */
static uint32
order_key(const char *mch_id, const char *out_trade_no)
{
	char	   *name = psprintf("%s/%s", mch_id, out_trade_no);

	return hash_bytes((const unsigned char *) name, strlen(name)) | 1;
}

/* Whether a commit should wake the waiter of key. */
static bool
wake_pending_for(uint32 key)
{
	if (pending_overflow)
		return true;
	for (int i = 0; i < npending; i++)
		if (pending[i] == key)
			return true;
	return false;
}

/* The transaction committed: set the latches of the waiters of the orders it moved. */
void
wxpay_order_waiters_wake_committed(void)
{
	if (npending == 0 || pg_atomic_read_u32(&waiters->nwaiting) == 0)
		return;
	for (int i = 0; i < waiters->nslots; i++)
	{
		uint32		key = pg_atomic_read_u32(&waiters->key[i]);

		if (key != 0 && wake_pending_for(key))
			SetLatch(&ProcGlobal->allProcs[i].procLatch);
	}
}

/* The transaction ended: forget the orders it moved. */
void
wxpay_order_waiters_forget(void)
{
	npending = 0;
	pending_overflow = false;
}

/*
 * The order moved: wake its waiters when this transaction commits.  Cheap
 * (a hash and an array slot), since every applied payment comes here.
 */
void
wxpay_order_waiters_wake_at_commit(const char *mch_id, const char *out_trade_no)
{
	if (waiters == NULL)
		return;
	if (npending < MAX_PENDING_WAKES)
		pending[npending++] = order_key(mch_id, out_trade_no);
	else
		pending_overflow = true;
	wxpay_wake_at_end_of_transaction();
}

/* Our slot, or NULL when there is no array to publish in. */
static pg_atomic_uint32 *
own_slot(void)
{
	if (waiters == NULL || MyProc == NULL || MyProc->pgprocno >= waiters->nslots)
		return NULL;
	return &waiters->key[MyProc->pgprocno];
}

/* A non-negative interval in milliseconds. */
static int64
interval_ms(const Interval *span)
{
	int64		usecs = span->time +
		((int64) span->month * DAYS_PER_MONTH + span->day) * USECS_PER_DAY;

	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	return usecs / 1000;
}

#define ORDER_NOW \
	"SELECT state, NOT wxpay.order_state_pending(state), transaction_id, total_fee::text, last_error" \
	" FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2"

/*
 * Read the order with a fresh snapshot (SPI takes one per statement in
 * READ COMMITTED); true when it is settled.
 */
static bool
read_order(Datum *key)
{
	static SPIPlanPtr plan = NULL;

	wxpay_spi_exec_plan(&plan, ORDER_NOW, 2, (Oid[]) {TEXTOID, TEXTOID}, key, NULL, false,
						SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown order %s of merchant %s",
						TextDatumGetCString(key[1]), TextDatumGetCString(key[0]))));
	return strcmp(wxpay_spi_value(0, 2), "t") == 0;
}

/* Wait until the order is settled or deadline passes; SPI connected. */
static void
wait_for_order(Datum *key, pg_atomic_uint32 *slot, TimestampTz deadline)
{
	long		recheck = slot ? RECHECK_WOKEN_MS : RECHECK_POLLING_MS;

	for (;;)
	{
		long		left;

		ResetLatch(MyLatch);
		SPI_freetuptable(SPI_tuptable);
		if (read_order(key))
			return;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(left, recheck), PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * wxpay_micropay_wait(mch_id text, out_trade_no text, timeout interval) -> jsonb
 *
 * {"out_trade_no", "state", "settled", "total_fee", "transaction_id",
 * "last_error"} as soon as the order is settled, or when timeout passes.
 */
Datum
wxpay_micropay_wait(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"mch_id", "out_trade_no", "timeout"};
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id;
	char	   *out_trade_no;
	TimestampTz deadline;
	Datum		key[2];
	pg_atomic_uint32 *slot;
	WxParamList out;

	wxpay_require_args(fcinfo, names, lengthof(names));
	mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   interval_ms(PG_GETARG_INTERVAL_P(2)));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("wxpay_micropay_wait must run in a READ COMMITTED transaction"),
				 errdetail("A transaction snapshot would never show the order change.")));
	SPI_connect();
	(void) wxpay_merchant_get(mch_id, CurrentMemoryContext);
	key[0] = CStringGetTextDatum(mch_id);
	key[1] = CStringGetTextDatum(out_trade_no);

	slot = own_slot();
	if (slot != NULL)
	{
		pg_atomic_write_u32(slot, order_key(mch_id, out_trade_no));
		pg_atomic_fetch_add_u32(&waiters->nwaiting, 1);
	}
	/* The slot is shared memory, not memory a context frees: always clear it. */
	PG_TRY();
	{
		wait_for_order(key, slot, deadline);
	}
	PG_FINALLY();
	{
		if (slot != NULL)
		{
			pg_atomic_write_u32(slot, 0);
			pg_atomic_fetch_sub_u32(&waiters->nwaiting, 1);
		}
	}
	PG_END_TRY();

	wxpay_list_init(&out, 6);
	wxpay_list_add_cstr(&out, "out_trade_no", out_trade_no);
	wxpay_list_add_cstr(&out, "state", wxpay_spi_value(0, 1));
	wxpay_list_add_cstr(&out, "settled", strcmp(wxpay_spi_value(0, 2), "t") == 0 ? "true" : "false");
	wxpay_list_add_cstr(&out, "total_fee", wxpay_spi_value(0, 4));
	if (wxpay_spi_value(0, 3) != NULL)
		wxpay_list_add_cstr(&out, "transaction_id", wxpay_spi_value(0, 3));
	if (wxpay_spi_value(0, 5) != NULL)
		wxpay_list_add_cstr(&out, "last_error", wxpay_spi_value(0, 5));
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, &out));
}
