/*
 * merchant_marks.c
 *	  Moments kept per merchant in shared memory, for what must be bounded
 *	  per merchant across every backend: when an answer or notification of
 *	  the merchant last named a certificate serial we do not know (the
 *	  worker downloads that merchant's certificates, v3_certificates.c), and
 *	  when a wrong APIv3 key was last reported in the log (notify_v3.c).
 *
 * Shared memory rather than a table: the backend that notices is often in
 * a transaction that rolls back (a WX007 raised to the caller), and a
 * notification handler must not write rows it could fail on.  The table
 * is small and fixed (MARK_SLOTS merchants); a merchant not in it takes
 * the slot used longest ago, so at worst an old mark is forgotten (its
 * merchant is then downloaded at the 24-hour refresh, or warned about
 * again).  Only merchants that exist reach it: callers have loaded the
 * merchant row first.  Without shared_preload_libraries there is no table
 * (and no worker): nothing is kept and every mark is taken as due.
 */
#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "merchant_marks.h"
#include "wxpay.h"

/* Merchants the table holds at once. */
#define MARK_SLOTS 128
/* Longest mch_id (wxpay.merchants' CHECK says 32). */
#define MARK_MCH_ID_MAX 32

typedef struct WxMarkSlot
{
	char		mch_id[MARK_MCH_ID_MAX + 1];	/* "" when free */
	TimestampTz at[WX_MARK_KINDS];	/* 0: never */
} WxMarkSlot;

typedef struct WxMarks
{
	LWLock		lock;
	int			tranche;
	WxMarkSlot	slots[MARK_SLOTS];
} WxMarks;

static WxMarks *marks = NULL;

/* The table's size. */
static Size
marks_size(void)
{
	return sizeof(WxMarks);
}

/* Initialise the table, once, in the postmaster. */
static void
marks_init(void *part)
{
	WxMarks    *t = part;

	memset(t, 0, sizeof(WxMarks));
	t->tranche = LWLockNewTrancheId();
	LWLockInitialize(&t->lock, t->tranche);
}

/* Called from _PG_init while preloading. */
void
wxpay_merchant_marks_shmem_init(void)
{
	wxpay_shmem_add("wxpay merchant marks", marks_size, marks_init, (void **) &marks);
}

/* Take the table's lock (naming its tranche for wait events, once). */
static void
marks_lock(LWLockMode mode)
{
	static bool registered = false;

	if (!registered)
	{
		LWLockRegisterTranche(marks->tranche, "wxpay_merchant_marks");
		registered = true;
	}
	LWLockAcquire(&marks->lock, mode);
}

/* The latest moment of a slot, any kind. */
static TimestampTz
slot_latest(const WxMarkSlot *s)
{
	TimestampTz latest = 0;

	for (int k = 0; k < WX_MARK_KINDS; k++)
		latest = Max(latest, s->at[k]);
	return latest;
}

/* The merchant's slot, or a free one, or the one used longest ago (cleared). */
static WxMarkSlot *
slot_for(const char *mch_id)
{
	WxMarkSlot *oldest = &marks->slots[0];

	for (int i = 0; i < MARK_SLOTS; i++)
	{
		WxMarkSlot *s = &marks->slots[i];

		if (strcmp(s->mch_id, mch_id) == 0)
			return s;
		if (s->mch_id[0] == '\0' ? oldest->mch_id[0] != '\0' : slot_latest(s) < slot_latest(oldest))
			oldest = s;
	}
	memset(oldest, 0, sizeof(*oldest));
	strlcpy(oldest->mch_id, mch_id, sizeof(oldest->mch_id));
	return oldest;
}

/*
 * Mark the merchant now, unless it was marked so less than min_interval_ms
 * ago; returns whether it did (true without shared memory, keeping nothing).
 */
bool
wxpay_merchant_mark(const char *mch_id, WxMarkKind kind, int min_interval_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	WxMarkSlot *s;
	bool		due;

	if (marks == NULL || mch_id == NULL || strlen(mch_id) > MARK_MCH_ID_MAX)
		return true;
	marks_lock(LW_EXCLUSIVE);
	s = slot_for(mch_id);
	due = s->at[kind] == 0 || TimestampDifferenceExceeds(s->at[kind], now, min_interval_ms);
	if (due)
		s->at[kind] = now;
	LWLockRelease(&marks->lock);
	return due;
}

/*
 * The merchants marked with kind (at most max, palloc'd mch_ids) and when,
 * into mch_ids and at; returns how many.  *latest is the latest mark of
 * kind of any merchant (0: none).
 */
int
wxpay_merchant_marked(WxMarkKind kind, char **mch_ids, TimestampTz *at, int max,
					  TimestampTz *latest)
{
	int			n = 0;

	*latest = 0;
	if (marks == NULL)
		return 0;
	marks_lock(LW_SHARED);
	for (int i = 0; i < MARK_SLOTS; i++)
	{
		const WxMarkSlot *s = &marks->slots[i];

		if (s->mch_id[0] == '\0' || s->at[kind] == 0)
			continue;
		*latest = Max(*latest, s->at[kind]);
		if (n < max)
		{
			mch_ids[n] = pstrdup(s->mch_id);
			at[n++] = s->at[kind];
		}
	}
	LWLockRelease(&marks->lock);
	return n;
}

/* How many merchants the table holds (for callers sizing their arrays). */
int
wxpay_merchant_mark_slots(void)
{
	return MARK_SLOTS;
}
