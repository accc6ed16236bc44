/*
 * worker.c
 *	  The wxpay background worker: reconciles every pending order with
 *	  WeChat Pay, so an order reaches its true state even when every
 *	  notification is lost.
 *
 * Each round has three steps, and no transaction or row lock is held
 * across the network:
 *	 1. claim: a short transaction picks due pending orders and refunds
 *		(wxpay.order_state_pending, wxpay.refund_state_pending) with FOR
 *		UPDATE SKIP LOCKED, pushes their next_query_at out by a lease (so a
 *		crash mid-round only delays them), loads their merchants and signs
 *		the requests, then commits;
 *	 2. ask: the requests run concurrently on a libcurl multi handle, at
 *		most wxpay.max_concurrency at once, with CHECK_FOR_INTERRUPTS every
 *		100 ms so SIGTERM ends the worker promptly;
 *	 3. apply: finished answers are applied in short transactions while the
 *		other requests are still in flight (the slots are refilled first, so
 *		the network never idles while we write, and no transaction ever waits
 *		on the network).  Each answer goes through the same endpoint pipeline
 *		as the SQL functions' (endpoint.c), one subtransaction per row so a
 *		poisoned row costs only its own attempt, and the next query is
 *		scheduled with a growing interval (poll_interval doubling, capped at
 *		5 minutes).  Orders past time_expire and at least five minutes old
 *		are closed instead of queried.  Unsettled micropay orders are on
 *		micropay's schedule instead: queried every micropay_interval inside
 *		their window, then reversed (micropay.c).
 * All state is in wxpay.orders, so a restarted worker continues where the
 * last one stopped.  The round's memory is one context, reset every time.
 */
#include "endpoint.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
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

#include "bill.h"
#include "micropay.h"
#include "spi_util.h"
#include "txn.h"

PGDLLEXPORT void wxpay_worker_main(Datum main_arg);

PG_FUNCTION_INFO_V1(wxpay_worker_queries);

/* Orders claimed per round; a full batch means another round at once. */
#define WORKER_BATCH 1000
/* Sleep while the extension is not installed in wxpay.database. */
#define NOT_INSTALLED_SLEEP_MS 5000
/* How soon to look again at due rows other sessions held locked. */
#define LOCKED_RETRY_MS 500
/* How soon to look again at paid events left behind a running transaction. */
#define PAID_EVENTS_RETRY_MS 10
/* After a publish, how long paying commits gather before the next one. */
#define PAID_EVENTS_BATCH_MS 10

/* Whether the last round found the extension installed at our version. */
static bool schema_ready = false;

/* One claimed order or refund: the call to make about it, and its transfer. */
typedef struct WxJob
{
	WxCall		call;
	char	   *mch_id;
	char	   *key;			/* out_trade_no, or out_refund_no */
	char	   *error;			/* set when no request could be made */
	bool		micropay;		/* on micropay's schedule (micropay.c) */
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

/* Commit it; commit leaves us in TopMemoryContext, the round works in its own. */
static void
end_transaction(void)
{
	wxpay_txn_commit();
	MemoryContextSwitchTo(round_cxt);
}

/*
 * Whether the installed schema is the one this library was built for.  An
 * upgraded library waits (and says so once) until ALTER EXTENSION wxpay
 * UPDATE brings the schema along: its SQL names objects the old one lacks.
 */
static bool
schema_matches(void)
{
	static bool warned = false;
	char	   *installed;

	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension"
					" WHERE extname OPERATOR(pg_catalog.=) 'wxpay'", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		return false;
	installed = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(installed, WXPAY_EXTVERSION) == 0)
	{
		warned = false;
		return true;
	}
	if (!warned)
		ereport(LOG,
				(errmsg("wxpay worker waits: the installed extension is version %s, this library is %s",
						installed, WXPAY_EXTVERSION),
				 errhint("Run ALTER EXTENSION wxpay UPDATE in database \"%s\".", wxpay_database)));
	warned = true;
	return false;
}

/*
 * Whether the extension is installed, at this library's version, and its
 * orders table can be read without waiting: a DROP EXTENSION in progress
 * is never blocked by us.
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
	return OidIsValid(orders) && ConditionalLockRelationOid(orders, AccessShareLock) &&
		schema_matches();
}

/*
 * A merchant in the round's memory, loaded once per round; NULL if it is
 * gone.  The worker acts for every merchant: allowed_roles limits the
 * application roles, not the extension's own reconciliation.
 */
static WxMerchant *
round_merchant(List **cache, const char *mch_id)
{
	ListCell   *lc;
	WxMerchant *found;
	MemoryContext old;

	foreach(lc, *cache)
		if (strcmp(((WxMerchant *) lfirst(lc))->mch_id, mch_id) == 0)
			return lfirst(lc);
	if ((found = wxpay_merchant_find(mch_id, round_cxt)) == NULL)
		return NULL;
	old = MemoryContextSwitchTo(round_cxt);
	*cache = lappend(*cache, found);
	MemoryContextSwitchTo(old);
	return found;
}

/* Make the job's request in the round's memory, or say why it cannot be. */
static void
prepare_job(WxJob *job, const WxMerchant *m)
{
	WxFailure	fail;
	MemoryContext old = MemoryContextSwitchTo(round_cxt);

	job->call.merchant = m;
	if (m == NULL)
		job->error = psprintf("merchant %s is not in wxpay.merchants", job->mch_id);
	else if (!wxpay_endpoint_request(&job->call, &job->req, &fail))
		job->error = fail.message;
	MemoryContextSwitchTo(old);
}

/*
 * The claims find the due rows they locked again by ctid (a TID scan): a
 * join on the key let the planner hash-join a sequential scan of the whole
 * table once it held a few hundred thousand finished rows (bench section 6).
 */
#define CLAIM_ORDERS \
	"UPDATE wxpay.orders o SET next_query_at = pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"  pg_catalog.make_interval(secs => $2)" \
	" WHERE o.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM wxpay.orders" \
	"        WHERE wxpay.order_state_pending(state)" \
	"          AND next_query_at OPERATOR(pg_catalog.<=) pg_catalog.now()" \
	"        ORDER BY next_query_at LIMIT $1 FOR UPDATE SKIP LOCKED))" \
	" RETURNING o.mch_id, o.out_trade_no, CASE" \
	"  WHEN o.reverse_requested_at IS NOT NULL THEN 'reverse'" \
	"  WHEN o.reverse_after IS NOT NULL THEN 'micropay'" \
	"  WHEN o.time_expire OPERATOR(pg_catalog.<) pg_catalog.now() AND" \
	"   o.created_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '5 minutes')" \
	"   THEN 'close' ELSE 'query' END"

#define CLAIM_REFUNDS \
	"UPDATE wxpay.refunds r SET next_query_at = pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"  pg_catalog.make_interval(secs => $2)" \
	" WHERE r.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM wxpay.refunds" \
	"        WHERE wxpay.refund_state_pending(state)" \
	"          AND next_query_at OPERATOR(pg_catalog.<=) pg_catalog.now()" \
	"        ORDER BY next_query_at LIMIT $1 FOR UPDATE SKIP LOCKED))" \
	" RETURNING r.mch_id, r.out_refund_no, 'refundquery'"

/*
 * Expired orders whose close WeChat Pay refused because they are paid
 * (ORDERPAID, v3's ORDER_PAID), as "mch_id/out_trade_no": their next look
 * is the query that records the payment through the verified path, not
 * the same close again (the claim would choose a close for as long as the
 * order is expired and unpaid here, at once, round after round).  Kept
 * for the worker's life; a restart costs one more refused close.
 */
static List *paid_not_closed = NIL;

/* Remember, or (take) forget and say whether remembered, an order's refused close. */
static bool
paid_not_closed_mark(const WxJob *job, bool take)
{
	char	   *name = psprintf("%s/%s", job->mch_id, job->key);
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, paid_not_closed)
		if (strcmp(lfirst(lc), name) == 0)
		{
			if (take)
				paid_not_closed = foreach_delete_current(paid_not_closed, lc);
			return true;
		}
	if (!take)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		paid_not_closed = lappend(paid_not_closed, pstrdup(name));
		MemoryContextSwitchTo(old);
	}
	return false;
}

/*
 * The call a claimed row's action asks for: a close of an expired order
 * (a query instead when its last close was refused as paid), a reverse of
 * a micropay order whose window passed unpaid, else a query (micropay
 * orders on micropay's schedule).
 */
static void
set_job_action(WxJob *job, const char *action)
{
	if (strcmp(action, "refundquery") == 0)
	{
		job->call.endpoint = &wx_endpoint_refundquery;
		job->call.out_refund_no = job->key;
		return;
	}
	job->call.out_trade_no = job->key;
	job->micropay = strcmp(action, "reverse") == 0 || strcmp(action, "micropay") == 0;
	job->call.endpoint = strcmp(action, "close") == 0 && !paid_not_closed_mark(job, true) ?
		&wx_endpoint_closeorder :
		strcmp(action, "reverse") == 0 ? &wx_endpoint_reverse : &wx_endpoint_orderquery;
}

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

		job->mch_id = MemoryContextStrdup(round_cxt, SPI_getvalue(row, desc, 1));
		job->key = MemoryContextStrdup(round_cxt, SPI_getvalue(row, desc, 2));
		set_job_action(job, SPI_getvalue(row, desc, 3));
	}
	return njobs;
}

/* Step 1: claim due orders and refunds and prepare their requests. */
static WxJob *
claim_jobs(int *njobs)
{
	static bool leases_released = false;
	List	   *merchants = NIL;
	WxJob	   *jobs = MemoryContextAllocZero(round_cxt, sizeof(WxJob) * WORKER_BATCH);

	/* Once per worker: micropay orders a dead worker had claimed are due now. */
	if (!leases_released)
	{
		wxpay_micropay_release_leases();
		leases_released = true;
	}
	*njobs = claim(CLAIM_ORDERS, WORKER_BATCH, false, jobs, 0);
	*njobs = claim(CLAIM_REFUNDS, WORKER_BATCH - *njobs, true, jobs, *njobs);
	for (int i = 0; i < *njobs; i++)
		prepare_job(&jobs[i], round_merchant(&merchants, jobs[i].mch_id));
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

	wxpay_http_prepare(easy, &job->req, &job->resp, round_cxt);
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
		wxpay_http_release(&job->resp);
		free_handles[nfree_handles++] = easy;
		done[(*ndone)++] = job;
		finished++;
	}
	return finished;
}

/*
 * A row the answer settled keeps its next_query_at: nothing follows it any
 * more, and an UPDATE that leaves every indexed column alone is HOT (no
 * index entry), where moving next_query_at wrote one in every index.
 */
#define SCHEDULE(table, key, pending) \
	"UPDATE wxpay." table " SET query_count = query_count OPERATOR(pg_catalog.+) 1," \
	" last_query_at = pg_catalog.now(), last_error = $3," \
	" next_query_at = CASE WHEN NOT wxpay." pending "(state) THEN next_query_at" \
	"  WHEN $5 THEN pg_catalog.now() ELSE pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"  LEAST(pg_catalog.make_interval(secs => $4 OPERATOR(pg_catalog.*)" \
	"   pg_catalog.power(2, LEAST(query_count, 16))), interval '5 minutes') END" \
	" WHERE mch_id OPERATOR(pg_catalog.=) $1 AND " key " OPERATOR(pg_catalog.=) $2"

/*
 * A copy of s that is valid UTF-8: last_error is text that pg_dump writes
 * out, and a message may quote bytes from the network.
 */
static char *
valid_text(const char *s)
{
	char	   *copy = pstrdup(s);

	wx_utf8_clip(copy);
	return copy;
}

/*
 * Record an attempt and when to try next: poll_interval doubling, at most
 * 5 minutes; micropay orders follow micropay's schedule.
 */
static void
schedule(const WxJob *job, const char *error, bool again_now)
{
	static SPIPlanPtr plans[2];
	bool		refund = job->call.endpoint == &wx_endpoint_refundquery;
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, FLOAT8OID, BOOLOID};
	Datum		values[5];
	char		nulls[6] = "     ";

	if (job->micropay)
	{
		wxpay_micropay_schedule(job->mch_id, job->key, error,
								job->call.endpoint == &wx_endpoint_reverse);
		return;
	}
	values[0] = CStringGetTextDatum(job->mch_id);
	values[1] = CStringGetTextDatum(job->key);
	values[2] = error ? CStringGetTextDatum(valid_text(error)) : (Datum) 0;
	nulls[2] = error ? ' ' : 'n';
	values[3] = Float8GetDatum(wxpay_poll_interval / 1000.0);
	values[4] = BoolGetDatum(again_now);
	if (SPI_execute_plan(wxpay_saved_plan(&plans[refund],
										  refund ? SCHEDULE("refunds", "out_refund_no", "refund_state_pending") :
										  SCHEDULE("orders", "out_trade_no", "order_state_pending"), 5, types, 0),
						 values, nulls, false, 1) != SPI_OK_UPDATE)
		elog(ERROR, "could not schedule %s", job->key);
}

/* A LOG line for every row the worker moved. */
static void
log_change(const WxJob *job, const WxAnswer *answer)
{
	const WxEndpoint *ep = job->call.endpoint;

	if (ep == &wx_endpoint_refundquery)
		ereport(LOG,
				(errmsg("wxpay: refund %s of merchant %s reconciled to %s (query)",
						job->key, job->mch_id, answer->refund.status)));
	else
		ereport(LOG,
				(errmsg("wxpay: order %s of merchant %s reconciled to %s (%s)",
						job->key, job->mch_id, answer->payment.state, ep->source)));
}

/*
 * Step 3 for one job: judge its answer, apply it, schedule the next look.
 * A close refused because the order was paid is followed by a query now
 * (paid_not_closed), which records the payment.
 */
static void
apply_job(void *arg)
{
	WxJob	   *job = arg;
	WxAnswer	answer;
	WxFailure	fail;
	WxHttpFailure transport;
	char	   *message;

	if (job->error != NULL)
	{
		schedule(job, job->error, false);
		return;
	}
	transport = wxpay_http_failure(&job->req, job->code, &job->resp, &message);
	if (!wxpay_endpoint_finish(&job->call, transport, message, &job->resp, &answer, &fail))
	{
		bool		paid = wxpay_failure_sqlstate(&fail) == ERRCODE_WXPAY_ORDER_PAID;

		if (paid && job->call.endpoint == &wx_endpoint_closeorder)
			(void) paid_not_closed_mark(job, false);
		schedule(job, wxpay_failure_text(&fail), paid);
		return;
	}
	if (answer.changed)
		log_change(job, &answer);
	schedule(job, NULL, false);
}

/* wxpay_run_isolated's step: record a job's failure as its last_error. */
static void
schedule_failed(void *arg)
{
	WxJob	   *job = arg;

	schedule(job, job->error, false);
}

/*
 * Apply one job in a subtransaction; an error inside it is recorded as
 * the row's last_error and costs only this attempt.
 */
static void
apply_job_isolated(WxJob *job)
{
	ErrorData  *edata = wxpay_run_isolated_waiting(apply_job, job, wxpay_lock_timeout);

	if (edata == NULL)
		return;
	ereport(WARNING,
			(errmsg("wxpay: could not apply the answer for %s: %s", job->key, edata->message)));
	job->error = edata->message;
	/* The row may be what is locked: then its lease brings it back later. */
	if ((edata = wxpay_run_isolated_waiting(schedule_failed, job, wxpay_lock_timeout)) != NULL)
		ereport(WARNING,
				(errmsg("wxpay: could not record the failure for %s, retried after its lease: %s",
						job->key, edata->message)));
}

/* The requests of one round: those left to send, in flight, answered. */
typedef struct WxFlight
{
	WxJob	   *jobs;
	int			njobs;
	int			next;			/* jobs[next] is the next to send */
	int			active;			/* transfers in flight */
	WxJob	  **done;			/* answered, or with nothing to send: to apply */
	int			ndone;
} WxFlight;

/*
 * Answers applied between two looks at the transfers while a chunk is
 * applied: a few, so that a slot freed meanwhile is soon sent again.
 */
#define APPLIED_PER_LOOK 4

/*
 * Collect finished transfers and send jobs into the free slots, up to
 * wxpay.max_concurrency at once.  Touches no table: it runs between the
 * answers of a chunk as well as between chunks.
 */
static void
keep_in_flight(WxFlight *f)
{
	int			running;

	/*
	 * Every perform is followed by a collect: a transfer that finished in
	 * a perform and was not collected would wait for the next socket event.
	 */
	for (;;)
	{
		if (f->active > 0 && curl_multi_perform(worker_multi, &running) != CURLM_OK)
			elog(ERROR, "libcurl multi interface failed");
		f->active -= collect_finished(f->done, &f->ndone);
		if (f->active >= wxpay_max_concurrency || f->next >= f->njobs)
			return;
		while (f->active < wxpay_max_concurrency && f->next < f->njobs)
		{
			WxJob	   *job = &f->jobs[f->next++];

			if (job->error != NULL)
				f->done[f->ndone++] = job;	/* nothing to send: recorded as it is */
			else
			{
				start_job(job);
				f->active++;
			}
		}
	}
}

/*
 * Step 3 for the answers collected so far, in one short transaction.
 * Between every few of them the transfers are looked at again, so
 * requests stay in flight while we write (an answer that arrives
 * meanwhile waits for the next chunk).
 */
static void
apply_chunk(WxFlight *f)
{
	int			n = f->ndone;

	wxpay_txn_begin("wxpay: applying answers");
	for (int i = 0; i < n; i++)
	{
		apply_job_isolated(f->done[i]);
		if ((i + 1) % APPLIED_PER_LOOK == 0 && i + 1 < n)
			keep_in_flight(f);
	}
	end_transaction();
	f->ndone -= n;
	memmove(f->done, f->done + n, sizeof(WxJob *) * f->ndone);
}

/*
 * Steps 2 and 3: run every request, at most wxpay.max_concurrency at once,
 * and apply answers in chunks of half the concurrency (or whatever is left
 * when nothing is in flight).
 */
static void
ask_and_apply(WxJob *jobs, int njobs)
{
	WxFlight	f = {.jobs = jobs,.njobs = njobs,.done = palloc(sizeof(WxJob *) * njobs)};
	int			chunk = Max(1, wxpay_max_concurrency / 2);

	/* Keep one open connection per slot, or rounds pay new TLS handshakes. */
	curl_multi_setopt(worker_multi, CURLMOPT_MAXCONNECTS, (long) wxpay_max_concurrency);
	for (;;)
	{
		pgstat_report_activity(STATE_RUNNING, "wxpay: waiting for WeChat Pay");
		keep_in_flight(&f);
		if (f.ndone >= chunk || (f.ndone > 0 && f.active == 0))
			apply_chunk(&f);
		if (f.active == 0 && f.next == f.njobs && f.ndone == 0)
			break;
		if (f.active > 0 && wxpay_http_poll(worker_multi) != CURLM_OK)
			elog(ERROR, "libcurl multi interface failed");
		CHECK_FOR_INTERRUPTS();
		wxpay_publish_paid_events();	/* a long round does not hold them back */
	}
}

#define NEXT_DUE \
	"SELECT pg_catalog.ceil(1000 OPERATOR(pg_catalog.*) EXTRACT(epoch FROM" \
	" pg_catalog.min(due) OPERATOR(pg_catalog.-) pg_catalog.now()))::int8 FROM" \
	" (SELECT pg_catalog.min(next_query_at) FROM wxpay.orders" \
	"   WHERE wxpay.order_state_pending(state)" \
	"  UNION ALL SELECT pg_catalog.min(next_query_at) FROM wxpay.refunds" \
	"   WHERE wxpay.refund_state_pending(state)) s(due)"

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

	if (SPI_execute(NEXT_DUE, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not find the next due order");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return wxpay_poll_interval;
	ms = DatumGetInt64(d);
	return (long) Max(0, Min(ms, (int64) wxpay_poll_interval));
}

/*
 * One round; returns how long to sleep before the next, and in *idle what
 * pg_stat_activity shows meanwhile.
 */
static long
run_round(const char **idle)
{
	WxJob	   *jobs;
	int			njobs;
	long		sleep_ms;

	*idle = "wxpay: idle until the next due order";
	wxpay_txn_begin("wxpay: claiming due orders");
	schema_ready = extension_ready();
	if (!schema_ready)
	{
		end_transaction();
		*idle = "wxpay: idle, waiting for the extension (CREATE or ALTER EXTENSION wxpay)";
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
	wxpay_bill_round();			/* yesterday's bills, when due (bill_worker.c) */
	if (sleep_ms < 0)
	{
		wxpay_txn_begin("wxpay: scheduling");
		/* The next due order or refund, or sooner the next due bill. */
		sleep_ms = extension_ready() ? wxpay_bill_next_due_ms(next_due_ms()) : NOT_INSTALLED_SLEEP_MS;
		end_transaction();
		/*
		 * Nothing claimed yet something due: those rows are locked by other
		 * sessions (we skip locked rows).  Retry them shortly rather than
		 * spinning until the locks go, and rather than a whole poll interval
		 * (a till's micropay holds its row for a moment; its window is
		 * seconds).
		 */
		if (njobs == 0 && sleep_ms == 0)
			sleep_ms = Min(wxpay_poll_interval, LOCKED_RETRY_MS);
	}
	return sleep_ms;
}

/*
 * wxpay.worker_queries() -> setof (name, query, argtypes): the statements
 * that scan for due work and publish paid events, so a test and the
 * benchmark can EXPLAIN them as they are.
 */
Datum
wxpay_worker_queries(PG_FUNCTION_ARGS)
{
	const struct
	{
		const char *name;
		const char *sql;
		const char *argtypes;
	}			queries[] = {
		{"claim_orders", CLAIM_ORDERS, "integer, double precision"},
		{"claim_refunds", CLAIM_REFUNDS, "integer, double precision"},
		{"next_due", NEXT_DUE, ""},
		{"paid_events_publish", wxpay_paid_events_publish_sql, "xid8, xid8"},
		{"paid_events_left_behind", wxpay_paid_events_left_behind_sql, "xid8"},
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (size_t i = 0; i < lengthof(queries); i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(queries[i].name);
		values[1] = CStringGetTextDatum(queries[i].sql);
		values[2] = CStringGetTextDatum(queries[i].argtypes);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

void
wxpay_worker_main(Datum main_arg)
{
	TimestampTz round_at = 0;	/* when the next round is due */
	uint64		wakes_seen = 0; /* wxpay_worker_wakes() at the last round */
	const char *idle = "wxpay: idle until the next due order";

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	wxpay_worker_connect();

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
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			round_at = 0;
		}
		wxpay_worker_leave_if_asked();
		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		/*
		 * A round when its time has come or something asked for one; a
		 * wake-up by paying commits alone only publishes their events,
		 * once a round has found the schema ready (a paying commit is also
		 * the first sign of a CREATE EXTENSION the worker slept through).
		 */
		if (!schema_ready || GetCurrentTimestamp() >= round_at || wxpay_worker_wakes() != wakes_seen)
		{
			wakes_seen = wxpay_worker_wakes();
			sleep_ms = run_round(&idle);
			round_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(sleep_ms, 0));
		}

		/*
		 * Certificates at any wake-up, round or not: the look limits itself
		 * (every DOWNLOAD_CHECK_MS, at once for a merchant whose are wanted).
		 */
		if (schema_ready)
			wxpay_v3_download_certificates();
		/*
		 * After a publish, let paying commits gather for a moment: under a
		 * stream of payments one transaction publishes a batch rather than
		 * each commit its own (the latch stays set meanwhile, so the wait
		 * below ends at once if any came).
		 */
		if (schema_ready && wxpay_publish_paid_events())
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, PAID_EVENTS_BATCH_MS,
							 PG_WAIT_EXTENSION);
		now = GetCurrentTimestamp();
		sleep_ms = now >= round_at ? 0 : (long) ((round_at - now + 999) / 1000);
		if (schema_ready)
			sleep_ms = wxpay_v3_certificates_sleep_ms(sleep_ms);	/* a refresh due sooner */
		if (schema_ready && wxpay_paid_events_waiting())
			sleep_ms = Min(sleep_ms, PAID_EVENTS_RETRY_MS);
		if (sleep_ms > 0)
		{
			/* Shown in pg_stat_activity: wait_event "Extension", this query text. */
			pgstat_report_activity(STATE_IDLE, idle);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
