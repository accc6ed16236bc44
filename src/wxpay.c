/*
 * wxpay.c
 *	  Module entry point of pg_wxpay: the magic block, settings, _PG_init.
 *
 * _PG_init runs in the postmaster when the library is preloaded, so it
 * only defines settings and registers callbacks and workers; libcurl is
 * initialised lazily in the process that uses it.
 */
#include "wxpay.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "bill.h"
#include "http.h"
#include "merchant_marks.h"

PG_MODULE_MAGIC;

int			wxpay_order_ttl = 7200;
char	   *wxpay_database = NULL;
int			wxpay_poll_interval = 30000;
int			wxpay_max_concurrency = 16;
int			wxpay_lock_timeout = 2000;
int			wxpay_micropay_interval = 5000;
int			wxpay_micropay_window = 30000;

/* Whether this process loaded the library from shared_preload_libraries. */
static bool preloaded = false;

PG_FUNCTION_INFO_V1(wxpay_preloaded);

void		_PG_init(void);

/* wxpay.bill_fetch_after is a time of day, HH:MM. */
static bool
check_time_of_day(char **newval, void **extra, GucSource source)
{
	int			h,
				m;
	char		end;

	if (*newval != NULL && sscanf(*newval, "%2d:%2d%c", &h, &m, &end) == 2 &&
		h >= 0 && h < 24 && m >= 0 && m < 60)
		return true;
	GUC_check_errdetail("A time of day is HH:MM, like 10:00.");
	return false;
}

static void
define_settings(void)
{
	DefineCustomIntVariable("wxpay.http_timeout",
							"Total time limit of one request to WeChat Pay.",
							NULL,
							&wxpay_http_timeout,
							10000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.connect_timeout",
							"Time limit for connecting to WeChat Pay, TLS handshake included.",
							NULL,
							&wxpay_connect_timeout,
							5000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.order_ttl",
							"How long a new order stays payable (its time_expire).",
							"WeChat Pay requires at least one minute.",
							&wxpay_order_ttl,
							7200, 60, 30 * 24 * 3600,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.poll_interval",
							"Delay before the worker first queries a new order; later queries back off from it, up to 5 minutes.",
							NULL,
							&wxpay_poll_interval,
							30000, 100, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.lock_timeout",
							"How long the worker, and a notification handler, wait for a row another session holds locked.",
							"Past it the worker retries the row later, and a notification is answered FAIL (WeChat Pay retries it) with its body recorded.",
							&wxpay_lock_timeout,
							2000, 10, 600000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.micropay_interval",
							"How often the worker queries a micropay order whose outcome is not known yet, and repeats a reverse that has not gone through.",
							NULL,
							&wxpay_micropay_interval,
							5000, 100, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.micropay_window",
							"How long after wxpay_micropay the worker waits for the payer before it reverses an unpaid micropay order.",
							"Keep it longer than wxpay.http_timeout: a reverse must not overtake the micropay request itself.",
							&wxpay_micropay_window,
							30000, 1000, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.max_concurrency",
							"Requests the worker keeps in flight at once.",
							NULL,
							&wxpay_max_concurrency,
							16, 1, 1024,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("wxpay.bill_fetch_after",
							   "Beijing time of day after which the worker fetches yesterday's bills (HH:MM).",
							   "WeChat Pay makes a day's bill from about 09:00 the next day.",
							   &wxpay_bill_fetch_after,
							   "10:00",
							   PGC_SIGHUP,
							   0,
							   check_time_of_day, NULL, NULL);
	DefineCustomIntVariable("wxpay.bill_retry_interval",
							"How long the worker waits before asking again for a bill that was not ready (Bill Creating) or failed.",
							NULL,
							&wxpay_bill_retry_interval,
							1800, 1, 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	/*
	 * A PGC_POSTMASTER setting can only be defined while preloading: defined
	 * later (CREATE EXTENSION without preload) it would end the session.
	 * Only the worker reads it.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("wxpay.database",
								   "Database the wxpay worker reconciles orders in.",
								   NULL,
								   &wxpay_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);
	MarkGUCPrefixReserved("wxpay");
}

/*
 * wxpay.preloaded() -> boolean.  Backends inherit the postmaster's copy of
 * the library, so in a preloaded server every backend says true.
 */
Datum
wxpay_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(preloaded);
}

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;
	preloaded = process_shared_preload_libraries_in_progress;
	define_settings();
	wxpay_orders_init();
	if (process_shared_preload_libraries_in_progress)
	{
		wxpay_worker_shmem_init();
		wxpay_order_wait_shmem_init();
		wxpay_merchant_marks_shmem_init();
		wxpay_worker_register();
	}
}
