/*
 * worker.c
 *	  The wxpay background worker: reconciles every pending order with
 *	  WeChat Pay, so an order reaches its true state even when every
 *	  notification is lost.
 *
 * Each round has three steps, and no transaction or row lock is held
 * across the network:
 *	 1. claim: a short transaction picks due NOTPAY/USERPAYING orders (and
 *		PROCESSING or CHANGE refunds, asked about with refundquery) with
 *		FOR UPDATE SKIP LOCKED, pushes their next_query_at out by a lease
 *		(so a crash mid-round only delays them), loads their merchants and
 *		signs the requests, then commits;
 *	 2. ask: the requests run concurrently on a libcurl multi handle, at
 *		most wxpay.max_concurrency at once, with CHECK_FOR_INTERRUPTS every
 *		100 ms so SIGTERM ends the worker promptly;
 *	 3. apply: finished answers are applied in short transactions while the
 *		other requests are still in flight (the slots are refilled first, so
 *		the network never idles while we write, and no transaction ever waits
 *		on the network).  Each answer is judged like any other and applied
 *		through wxpay_apply_report, one subtransaction per order so a
 *		poisoned row costs only its own attempt, and the next query is
 *		scheduled with a growing interval (poll_interval doubling, capped at
 *		5 minutes).  Orders past time_expire and at least five minutes old
 *		are closed instead of queried.
 * All state is in wxpay.orders, so a restarted worker continues where the
 * last one stopped.  The round's memory is one context, reset every time.
 */
#include "wxpay.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "http.h"

PGDLLEXPORT void wxpay_worker_main(Datum main_arg);

/* Orders claimed per round; a full batch means another round at once. */
#define WORKER_BATCH 1000
/* Sleep while the extension is not installed in wxpay.database. */
#define NOT_INSTALLED_SLEEP_MS 5000

/* What a job asks. */
typedef enum WxJobKind
{
	JOB_QUERY,					/* orderquery for a pending order */
	JOB_CLOSE,					/* closeorder for an expired one */
	JOB_REFUND					/* refundquery for a refund in progress */
} WxJobKind;

static const char *const job_paths[] = {"/pay/orderquery", "/pay/closeorder", "/pay/refundquery"};

/* One claimed order or refund and its request. */
typedef struct WxJob
{
	WxJobKind	kind;
	char	   *mch_id;
	char	   *key;			/* out_trade_no, or out_refund_no */
	WxMerchant *merchant;
	WxHttpRequest req;
	WxHttpResponse resp;
	CURLcode	code;
} WxJob;

static MemoryContext round_cxt = NULL;
static CURLM *worker_multi = NULL;
static CURL **free_handles = NULL;
static int	nfree_handles = 0;
static int	nhandles = 0;

void
wxpay_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* Restart soon after a crash: all its state is in tables. */
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "wxpay");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "wxpay_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "wxpay worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "wxpay worker");
	RegisterBackgroundWorker(&worker);
}

static void
begin_transaction(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_transaction(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* Commit leaves us in TopMemoryContext; the round works in its own. */
	MemoryContextSwitchTo(round_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Whether the extension is installed and its orders table can be read
 * without waiting: a DROP EXTENSION in progress is never blocked by us.
 */
static bool
extension_ready(void)
{
	Oid			nsp;
	Oid			orders;

	if (!OidIsValid(get_extension_oid("wxpay", true)))
		return false;
	nsp = get_namespace_oid("wxpay", true);
	orders = OidIsValid(nsp) ? get_relname_relid("orders", nsp) : InvalidOid;
	return OidIsValid(orders) && ConditionalLockRelationOid(orders, AccessShareLock);
}

static char *
copy_or_null(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

/* A merchant in the round's memory, loaded once per round. */
static WxMerchant *
round_merchant(List **cache, const char *mch_id)
{
	ListCell   *lc;
	WxMerchant *found;
	WxMerchant *copy;
	MemoryContext old;

	foreach(lc, *cache)
		if (strcmp(((WxMerchant *) lfirst(lc))->mch_id, mch_id) == 0)
			return lfirst(lc);
	found = wxpay_merchant_get(mch_id);
	old = MemoryContextSwitchTo(round_cxt);
	copy = palloc(sizeof(WxMerchant));
	*copy = *found;
	copy->mch_id = pstrdup(found->mch_id);
	copy->appid = pstrdup(found->appid);
	copy->api_key = pstrdup(found->api_key);
	copy->notify_url = copy_or_null(found->notify_url);
	copy->api_base = pstrdup(found->api_base);
	copy->ca_pem = copy_or_null(found->ca_pem);
	copy->cert_pem = copy_or_null(found->cert_pem);
	copy->key_pem = copy_or_null(found->key_pem);
	*cache = lappend(*cache, copy);
	MemoryContextSwitchTo(old);
	return copy;
}

/* Sign the job's request in the round's memory. */
static void
prepare_job(WxJob *job)
{
	WxParamList req;

	wxpay_list_init(&req, 8);
	wxpay_list_add_cstr(&req, job->kind == JOB_REFUND ? "out_refund_no" : "out_trade_no", job->key);
	job->req.url = psprintf("%s%s", job->merchant->api_base, job_paths[job->kind]);
	job->req.body = wxpay_request_body(job->merchant, &req, &job->req.body_len);
	job->req.ca_pem = job->merchant->ca_pem;
}

#define CLAIM_ORDERS \
	"UPDATE wxpay.orders o SET next_query_at = pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"  pg_catalog.make_interval(secs => $2)" \
	" FROM (SELECT mch_id, out_trade_no FROM wxpay.orders" \
	"        WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['NOTPAY', 'USERPAYING'])" \
	"          AND next_query_at OPERATOR(pg_catalog.<=) pg_catalog.now()" \
	"        ORDER BY next_query_at LIMIT $1 FOR UPDATE SKIP LOCKED) due" \
	" WHERE o.mch_id OPERATOR(pg_catalog.=) due.mch_id" \
	"   AND o.out_trade_no OPERATOR(pg_catalog.=) due.out_trade_no" \
	" RETURNING o.mch_id, o.out_trade_no," \
	"  o.time_expire OPERATOR(pg_catalog.<) pg_catalog.now() AND" \
	"  o.created_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '5 minutes')"

#define CLAIM_REFUNDS \
	"UPDATE wxpay.refunds r SET next_query_at = pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"  pg_catalog.make_interval(secs => $2)" \
	" FROM (SELECT mch_id, out_refund_no FROM wxpay.refunds" \
	"        WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['PROCESSING', 'CHANGE'])" \
	"          AND next_query_at OPERATOR(pg_catalog.<=) pg_catalog.now()" \
	"        ORDER BY next_query_at LIMIT $1 FOR UPDATE SKIP LOCKED) due" \
	" WHERE r.mch_id OPERATOR(pg_catalog.=) due.mch_id" \
	"   AND r.out_refund_no OPERATOR(pg_catalog.=) due.out_refund_no" \
	" RETURNING r.mch_id, r.out_refund_no, false"

/*
 * Claim due rows with one of the statements above, pushing each out by a
 * lease, and append them to jobs.  Returns the new number of jobs.
 */
static int
claim(const char *sql, int limit, bool refunds, WxJob *jobs, int njobs)
{
	Oid			types[2] = {INT4OID, FLOAT8OID};
	Datum		values[2];

	values[0] = Int32GetDatum(limit);
	values[1] = Float8GetDatum(wxpay_http_timeout / 1000.0 + 60);
	if (SPI_execute_with_args(sql, 2, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim due %s", refunds ? "refunds" : "orders");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		WxJob	   *job = &jobs[njobs++];
		bool		isnull;

		job->mch_id = MemoryContextStrdup(round_cxt, SPI_getvalue(row, desc, 1));
		job->key = MemoryContextStrdup(round_cxt, SPI_getvalue(row, desc, 2));
		job->kind = refunds ? JOB_REFUND :
			DatumGetBool(SPI_getbinval(row, desc, 3, &isnull)) ? JOB_CLOSE : JOB_QUERY;
	}
	return njobs;
}

/* Step 1: claim due orders and refunds and prepare their requests. */
static WxJob *
claim_jobs(int *njobs)
{
	List	   *merchants = NIL;
	WxJob	   *jobs = MemoryContextAllocZero(round_cxt, sizeof(WxJob) * WORKER_BATCH);

	*njobs = claim(CLAIM_ORDERS, WORKER_BATCH, false, jobs, 0);
	*njobs = claim(CLAIM_REFUNDS, WORKER_BATCH - *njobs, true, jobs, *njobs);
	for (int i = 0; i < *njobs; i++)
	{
		MemoryContext old;

		jobs[i].merchant = round_merchant(&merchants, jobs[i].mch_id);
		old = MemoryContextSwitchTo(round_cxt);
		prepare_job(&jobs[i]);
		MemoryContextSwitchTo(old);
	}
	return jobs;
}

/* An easy handle from the pool; handles live as long as the worker. */
static CURL *
take_handle(void)
{
	CURL	   *easy;

	if (nfree_handles > 0)
		return free_handles[--nfree_handles];
	if ((easy = curl_easy_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create libcurl handle")));
	nhandles++;
	free_handles = free_handles == NULL ?
		MemoryContextAlloc(TopMemoryContext, sizeof(CURL *) * nhandles) :
		repalloc(free_handles, sizeof(CURL *) * nhandles);
	return easy;
}

static void
start_job(WxJob *job)
{
	CURL	   *easy = take_handle();

	wxpay_http_prepare(easy, &job->req, &job->resp);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, job);
	if (curl_multi_add_handle(worker_multi, easy) != CURLM_OK)
		elog(ERROR, "could not start libcurl transfer");
}

/* Collect finished transfers into done; returns how many finished. */
static int
collect_finished(WxJob **done, int *ndone)
{
	CURLMsg    *msg;
	int			queued;
	int			finished = 0;

	while ((msg = curl_multi_info_read(worker_multi, &queued)) != NULL)
	{
		WxJob	   *job;
		CURL	   *easy = msg->easy_handle;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &job);
		job->code = msg->data.result;
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &job->resp.status);
		curl_multi_remove_handle(worker_multi, easy);
		free_handles[nfree_handles++] = easy;
		done[(*ndone)++] = job;
		finished++;
	}
	return finished;
}

#define SCHEDULE(table, key) \
	"UPDATE wxpay." table " SET query_count = query_count OPERATOR(pg_catalog.+) 1," \
	" last_query_at = pg_catalog.now(), last_error = $3," \
	" next_query_at = CASE WHEN $5 THEN pg_catalog.now() ELSE pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"  LEAST(pg_catalog.make_interval(secs => $4 OPERATOR(pg_catalog.*)" \
	"   pg_catalog.power(2, LEAST(query_count, 16))), interval '5 minutes') END" \
	" WHERE mch_id OPERATOR(pg_catalog.=) $1 AND " key " OPERATOR(pg_catalog.=) $2"

/* Record an attempt and when to try next: poll_interval doubling, at most 5 minutes. */
static void
schedule(const WxJob *job, const char *error, bool again_now)
{
	static SPIPlanPtr plans[2];
	bool		refund = job->kind == JOB_REFUND;
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, FLOAT8OID, BOOLOID};
	Datum		values[5];
	char		nulls[6] = "     ";

	values[0] = CStringGetTextDatum(job->mch_id);
	values[1] = CStringGetTextDatum(job->key);
	values[2] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[2] = error ? ' ' : 'n';
	values[3] = Float8GetDatum(wxpay_poll_interval / 1000.0);
	values[4] = BoolGetDatum(again_now);
	if (SPI_execute_plan(wxpay_saved_plan(&plans[refund],
										  refund ? SCHEDULE("refunds", "out_refund_no") :
										  SCHEDULE("orders", "out_trade_no"), 5, types),
						 values, nulls, false, 1) != SPI_OK_UPDATE)
		elog(ERROR, "could not schedule %s", job->key);
}

static void
apply_report(const WxJob *job, const char *trade_state, const WxParamList *fields,
			 const char *source, char **error)
{
	if (wxpay_apply_report(job->mch_id, job->key, trade_state, fields,
						   source, error) == WX_APPLY_CHANGED)
		ereport(LOG,
				(errmsg("wxpay: order %s of merchant %s reconciled to %s (%s)",
						job->key, job->mch_id, trade_state, source)));
}

/* The error text of a FAIL result: err_code and its description. */
static char *
result_error(const WxParamList *resp)
{
	const char *code = wxpay_list_get(resp, "err_code");
	const char *des = wxpay_list_get(resp, "err_code_des");

	return psprintf("%s: %s", code ? code : "result_code FAIL", des ? des : "");
}

/* A closeorder answer: CLOSED, or paid after all (query it next). */
static char *
apply_close(const WxJob *job, const WxParamList *resp, bool *again_now)
{
	char	   *error = NULL;

	if (wxpay_list_is(resp, "result_code", "SUCCESS") ||
		wxpay_list_is(resp, "err_code", "ORDERCLOSED") ||
		wxpay_list_is(resp, "err_code", "ORDERNOTEXIST"))
		apply_report(job, "CLOSED", resp, "close", &error);
	else if (wxpay_list_is(resp, "err_code", "ORDERPAID"))
	{
		error = pstrdup("ORDERPAID: closing refused, querying");
		*again_now = true;
	}
	else
		error = result_error(resp);
	return error;
}

/* An orderquery answer: decided by trade_state, never by result_code. */
static char *
apply_query(const WxJob *job, const WxParamList *resp)
{
	char	   *error = NULL;

	if (!wxpay_list_is(resp, "result_code", "SUCCESS"))
		return result_error(resp);
	if (!wxpay_list_is(resp, "out_trade_no", job->key) ||
		wxpay_list_get(resp, "trade_state") == NULL)
		return pstrdup("answer lacks this order's out_trade_no or trade_state");
	apply_report(job, wxpay_list_get(resp, "trade_state"), resp, "query", &error);
	return error;
}

/* A refundquery answer: the refund's refund_status_$n. */
static char *
apply_refund(const WxJob *job, const WxParamList *resp)
{
	WxRefundReport report;
	char	   *error = NULL;

	if (!wxpay_list_is(resp, "result_code", "SUCCESS"))
		return result_error(resp);
	if (!wxpay_refundquery_report(resp, job->key, &report))
		return pstrdup("answer lacks this refund");
	if (wxpay_apply_refund_report(job->mch_id, &report, "query", &error) == WX_APPLY_CHANGED)
		ereport(LOG,
				(errmsg("wxpay: refund %s of merchant %s reconciled to %s (query)",
						job->key, job->mch_id, report.status)));
	return error;
}

/* Step 3 for one job: judge its answer, apply it, schedule the next look. */
static void
apply_job(const WxJob *job)
{
	WxParamList resp;
	bool		again_now = false;
	char	   *error = wxpay_http_failure(&job->req, job->code, &job->resp);

	if (error == NULL)
		error = wxpay_judge_response(job->merchant, job_paths[job->kind],
									 job->resp.body ? job->resp.body : "",
									 job->resp.len, &resp);
	if (error == NULL)
		error = job->kind == JOB_CLOSE ? apply_close(job, &resp, &again_now) :
			job->kind == JOB_REFUND ? apply_refund(job, &resp) : apply_query(job, &resp);
	schedule(job, error, again_now);
}

/*
 * Apply one job in a subtransaction; an error inside it is recorded as
 * the order's last_error and costs only this attempt.
 */
static void
apply_job_isolated(const WxJob *job)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		apply_job(job);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(WARNING,
				(errmsg("wxpay: could not apply the answer for %s: %s",
						job->key, edata->message)));
		schedule(job, edata->message, false);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
}

/* Step 3 for a chunk of finished jobs, in one short transaction. */
static void
apply_chunk(WxJob **done, int ndone)
{
	begin_transaction("wxpay: applying answers");
	for (int i = 0; i < ndone; i++)
		apply_job_isolated(done[i]);
	end_transaction();
}

/*
 * Steps 2 and 3: run every request, at most wxpay.max_concurrency at once,
 * and apply answers in chunks of half the concurrency (or whatever is left
 * when nothing is in flight).  Free slots are refilled before a chunk is
 * applied, so requests stay in flight while we write.
 */
static void
ask_and_apply(WxJob *jobs, int njobs)
{
	WxJob	  **done = palloc(sizeof(WxJob *) * njobs);
	int			ndone = 0;
	int			next = 0;
	int			active = 0;
	int			running;

	/* Keep one open connection per slot, or rounds pay new TLS handshakes. */
	curl_multi_setopt(worker_multi, CURLMOPT_MAXCONNECTS, (long) wxpay_max_concurrency);
	for (;;)
	{
		int			chunk = Max(1, wxpay_max_concurrency / 2);

		while (active < wxpay_max_concurrency && next < njobs)
		{
			start_job(&jobs[next++]);
			active++;
		}
		pgstat_report_activity(STATE_RUNNING, "wxpay: waiting for WeChat Pay");
		if (curl_multi_perform(worker_multi, &running) != CURLM_OK)
			elog(ERROR, "libcurl multi interface failed");
		active -= collect_finished(done, &ndone);
		if (active < wxpay_max_concurrency && next < njobs)
			continue;			/* refill before writing */
		if (ndone >= chunk || (ndone > 0 && active == 0))
		{
			apply_chunk(done, ndone);
			ndone = 0;
		}
		if (active == 0 && next == njobs && ndone == 0)
			break;
		if (active > 0 && wxpay_http_poll(worker_multi) != CURLM_OK)
			elog(ERROR, "libcurl multi interface failed");
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Milliseconds until the next pending order or refund is due, at most
 * poll_interval.  The clamping is done here, not with GREATEST in SQL:
 * GREATEST ignores NULLs, so with nothing pending it would say "0 ms" and
 * the worker would never sleep.
 */
static long
next_due_ms(void)
{
	bool		isnull;
	Datum		d;
	int64		ms;

	if (SPI_execute("SELECT pg_catalog.ceil(1000 OPERATOR(pg_catalog.*) EXTRACT(epoch FROM"
					" pg_catalog.min(due) OPERATOR(pg_catalog.-) pg_catalog.now()))::int8 FROM"
					" (SELECT pg_catalog.min(next_query_at) FROM wxpay.orders"
					"   WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['NOTPAY', 'USERPAYING'])"
					"  UNION ALL SELECT pg_catalog.min(next_query_at) FROM wxpay.refunds"
					"   WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['PROCESSING', 'CHANGE'])) s(due)",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not find the next due order");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return wxpay_poll_interval;
	ms = DatumGetInt64(d);
	return (long) Max(0, Min(ms, (int64) wxpay_poll_interval));
}

/* One round; returns how long to sleep before the next. */
static long
run_round(void)
{
	WxJob	   *jobs;
	int			njobs;
	long		sleep_ms;

	begin_transaction("wxpay: claiming due orders");
	if (!extension_ready())
	{
		end_transaction();
		return NOT_INSTALLED_SLEEP_MS;
	}
	jobs = claim_jobs(&njobs);
	end_transaction();
	if (njobs == 0)
		sleep_ms = -1;
	else
	{
		ask_and_apply(jobs, njobs);
		sleep_ms = njobs == WORKER_BATCH ? 0 : -1;
	}
	if (sleep_ms < 0)
	{
		begin_transaction("wxpay: scheduling");
		sleep_ms = extension_ready() ? next_due_ms() : NOT_INSTALLED_SLEEP_MS;
		end_transaction();
		/*
		 * Nothing claimed yet something due: those rows are locked by other
		 * sessions (we skip locked rows).  Retry them a poll interval later
		 * rather than spinning until the locks go.
		 */
		if (njobs == 0 && sleep_ms == 0)
			sleep_ms = wxpay_poll_interval;
	}
	return sleep_ms;
}

void
wxpay_worker_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(wxpay_database, NULL, 0);

	round_cxt = AllocSetContextCreate(TopMemoryContext, "wxpay worker round",
									  ALLOCSET_DEFAULT_SIZES);
	wxpay_http_global_init();
	if ((worker_multi = curl_multi_init()) == NULL)
		elog(ERROR, "could not create libcurl multi handle");
	ereport(LOG,
			(errmsg("wxpay worker started in database \"%s\"", wxpay_database)));

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		sleep_ms = run_round();
		if (sleep_ms > 0)
		{
			/* Shown in pg_stat_activity: wait_event "Extension", this query text. */
			pgstat_report_activity(STATE_IDLE, "wxpay: idle until the next due order");
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
