/*
 * bill_worker.c
 *	  The worker's daily bills: for every merchant with bills_enabled,
 *	  yesterday's ALL bill (days are Beijing time) once the Beijing clock
 *	  is past wxpay.bill_fetch_after, downloaded, imported and reconciled
 *	  through the same endpoint as wxpay_downloadbill (bill.c).  Bill
 *	  Creating, or any other failure, is tried again after
 *	  wxpay.bill_retry_interval.  Each attempt is recorded in
 *	  wxpay.bill_fetches (wxpay.bill_status shows it); a day is done once
 *	  wxpay.bills has its ALL bill, No Bill Exist included.
 *
 * As for orders, no transaction is open while the bill travels: the
 * request is made in one, the transfer runs outside any, and the import
 * is a transaction of its own.  An API v3 merchant's verified answer names
 * the file (bill_v3.c): its download is a second transfer, outside any
 * transaction too, before the import.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "bill.h"
#include "endpoint.h"
#include "spi_util.h"
#include "txn.h"

char	   *wxpay_bill_fetch_after = NULL;
int			wxpay_bill_retry_interval = 1800;

/* Yesterday (Beijing), and whether merchant m has its ALL bill: the day is done. */
#define YESTERDAY \
	"(SELECT (pg_catalog.now() AT TIME ZONE 'Asia/Shanghai')::pg_catalog.date OPERATOR(pg_catalog.-) 1 AS day) d"
#define DAY_DONE \
	"EXISTS (SELECT FROM wxpay.bills b WHERE b.mch_id OPERATOR(pg_catalog.=) m.mch_id" \
	"        AND b.kind OPERATOR(pg_catalog.=) 'trade' AND b.bill_type OPERATOR(pg_catalog.=) 'ALL'" \
	"        AND b.bill_date OPERATOR(pg_catalog.=) d.day)"

/* Merchants whose bill of yesterday is due: not there yet, not waiting to retry. */
#define DUE_BILLS \
	"SELECT m.mch_id, pg_catalog.to_char(d.day, 'YYYYMMDD') FROM wxpay.merchants m, " YESTERDAY \
	" WHERE m.bills_enabled" \
	"   AND (pg_catalog.now() AT TIME ZONE 'Asia/Shanghai')::pg_catalog.time OPERATOR(pg_catalog.>=) $1::pg_catalog.time" \
	"   AND NOT " DAY_DONE \
	"   AND NOT EXISTS (SELECT FROM wxpay.bill_fetches f WHERE f.mch_id OPERATOR(pg_catalog.=) m.mch_id" \
	"        AND f.bill_date OPERATOR(pg_catalog.=) d.day AND f.next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now())" \
	" ORDER BY m.mch_id"

/*
 * When the next of those is due, in ms from now (NULL: no merchant has
 * bills): a day not done is due at its fetch time or its next retry,
 * whichever is later; a day done, at the next day's fetch time.
 */
#define NEXT_BILL_DUE \
	"SELECT pg_catalog.ceil(1000 OPERATOR(pg_catalog.*) EXTRACT(epoch FROM" \
	"  pg_catalog.min(due) OPERATOR(pg_catalog.-) pg_catalog.now()))::int8 FROM" \
	" (SELECT CASE WHEN " DAY_DONE \
	"   THEN (d.day OPERATOR(pg_catalog.+) 2 OPERATOR(pg_catalog.+) $1::pg_catalog.time) AT TIME ZONE 'Asia/Shanghai'" \
	"   ELSE GREATEST((d.day OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.+) $1::pg_catalog.time) AT TIME ZONE 'Asia/Shanghai'," \
	"     (SELECT f.next_attempt_at FROM wxpay.bill_fetches f WHERE f.mch_id OPERATOR(pg_catalog.=) m.mch_id" \
	"       AND f.bill_date OPERATOR(pg_catalog.=) d.day)) END" \
	"  FROM wxpay.merchants m, " YESTERDAY " WHERE m.bills_enabled) s(due)"

/* The worker sleeps at least this long for a bill (one it cannot attempt does not spin it). */
#define MIN_BILL_SLEEP_MS 1000

#define RECORD_ATTEMPT \
	"INSERT INTO wxpay.bill_fetches AS f (mch_id, bill_date, attempts, last_attempt_at, next_attempt_at, last_error, bill_id)" \
	" VALUES ($1, $2::pg_catalog.date, 1, pg_catalog.now(), pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"   pg_catalog.make_interval(secs => $3), $4, $5)" \
	" ON CONFLICT (mch_id, bill_date) DO UPDATE SET attempts = f.attempts OPERATOR(pg_catalog.+) 1," \
	"   last_attempt_at = excluded.last_attempt_at, next_attempt_at = excluded.next_attempt_at," \
	"   last_error = excluded.last_error, bill_id = excluded.bill_id"

/* One day's bill of one merchant, from request to import. */
typedef struct BillJob
{
	WxCall		call;
	WxHttpRequest req;
	WxHttpResponse resp;
	WxHttpFailure transport;
	char	   *message;
	WxAnswer	answer;
	WxFailure	fail;
	bool		ok;
} BillJob;

/* wxpay_run_isolated's step: judge, read, import and reconcile. */
static void
import_step(void *arg)
{
	BillJob    *job = arg;

	job->ok = wxpay_endpoint_finish(&job->call, job->transport, job->message, &job->resp,
									&job->answer, &job->fail);
}

/* The same for a file the answer named (v3): import and reconcile. */
static void
named_file_step(void *arg)
{
	BillJob    *job = arg;

	job->ok = wxpay_named_file_finish(&job->call, job->transport, job->message, &job->resp,
									  &job->answer, &job->fail);
}

/* Run a step isolated: NULL when it worked, else what went wrong. */
static char *
run_step(BillJob *job, WxStep step)
{
	ErrorData  *edata = wxpay_run_isolated(step, job);

	if (edata != NULL)
		return edata->message;
	return job->ok ? NULL : wxpay_failure_text(&job->fail);
}

/*
 * Called in a transaction, and ends in a new one: fetch the file the
 * verified answer named (v3) outside any transaction, then import it.
 */
static char *
fetch_named_file(BillJob *job, MemoryContext cxt)
{
	bool		requested;

	job->answer.file_path = MemoryContextStrdup(cxt, job->answer.file_path);
	job->answer.file_sha1 = MemoryContextStrdup(cxt, job->answer.file_sha1);
	wxpay_txn_commit();
	MemoryContextSwitchTo(cxt);
	requested = wxpay_named_file_request(&job->call, &job->answer, &job->req, &job->fail);
	if (requested)
		job->transport = wxpay_http_perform(&job->req, &job->resp, &job->message);
	wxpay_txn_begin("wxpay: importing a bill");
	return requested ? run_step(job, named_file_step) : wxpay_failure_text(&job->fail);
}

/* Record the attempt: its error, or the bill it imported. */
static void
record_attempt(const BillJob *job, const char *error)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[5] = {TEXTOID, TEXTOID, FLOAT8OID, TEXTOID, INT8OID};
	Datum		values[5];
	char		nulls[5] = "     ";
	const char *bill_id = error ? NULL : wxpay_list_get(&job->answer.fields, "bill_id");

	values[0] = CStringGetTextDatum(job->call.merchant->mch_id);
	values[1] = CStringGetTextDatum(job->call.bill_date);
	values[2] = Float8GetDatum(wxpay_bill_retry_interval);
	values[3] = wxpay_text_or_null(error, nulls, 3);
	nulls[4] = bill_id ? ' ' : 'n';
	values[4] = bill_id ? Int64GetDatum(pg_strtoint64(bill_id)) : (Datum) 0;
	wxpay_spi_exec_plan(&plan, RECORD_ATTEMPT, 5, types, values, nulls, false, SPI_OK_INSERT);
}

/* Download, import and record the ALL bill of day for merchant mch_id. */
static void
fetch_bill(const char *mch_id, const char *day, MemoryContext cxt)
{
	BillJob    *job = MemoryContextAllocZero(cxt, sizeof(BillJob));
	WxParamList *fields;
	WxMerchant *m;
	char	   *error = NULL;
	char	   *iso;

	/* Every SPI call leaves us in SPI's context: what outlives it is made in cxt. */
	wxpay_txn_begin("wxpay: asking for a bill");
	if ((m = wxpay_merchant_find(mch_id, cxt)) == NULL)
	{
		wxpay_txn_commit();
		return;
	}
	MemoryContextSwitchTo(cxt);
	wxpay_call_init(&job->call, &wx_endpoint_downloadbill, m);
	job->call.bill_date = day;
	job->call.bill_type = "ALL";
	fields = palloc(sizeof(WxParamList));
	wxpay_list_init(fields, 1);
	wxpay_list_add_cstr(fields, "tar_type", "GZIP");
	job->call.fields = fields;
	if (!wxpay_endpoint_request(&job->call, &job->req, &job->fail))
		error = wxpay_failure_text(&job->fail);
	wxpay_txn_commit();
	MemoryContextSwitchTo(cxt);
	if (error == NULL)
		job->transport = wxpay_http_perform(&job->req, &job->resp, &job->message);

	/* The import's results are read before this transaction ends. */
	wxpay_txn_begin("wxpay: importing a bill");
	if (error == NULL)
		error = run_step(job, import_step);
	if (error == NULL && job->answer.file_path != NULL)
		error = fetch_named_file(job, cxt);
	/* Bill Creating (or a network failure) is the day's bill not in yet; anything else needs a look. */
	iso = psprintf("%.4s-%.2s-%.2s", day, day + 4, day + 6);
	if (error != NULL && job->fail.kind != WX_FAIL_NONE && wxpay_failure_retryable(&job->fail))
		ereport(LOG,
				(errmsg("wxpay worker: the %s bill of merchant %s is not in yet: %s", iso, mch_id, error)));
	else if (error != NULL)
		ereport(WARNING,
				(errmsg("wxpay worker: the %s bill of merchant %s cannot be fetched: %s", iso, mch_id, error),
				 job->fail.hint ? errhint("%s", job->fail.hint) :
				 errhint("The worker tries again after wxpay.bill_retry_interval; wxpay.bill_status shows the last error.")));
	record_attempt(job, error);
	wxpay_txn_commit();
}

/*
 * The bills part of a worker round: every due bill, one after the other
 * (a merchant has one a day).  Called outside a transaction.
 */
void
wxpay_bill_round(void)
{
	static MemoryContext cxt = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	List	   *due = NIL;
	ListCell   *lc;

	if (cxt == NULL)
		cxt = AllocSetContextCreate(TopMemoryContext, "wxpay worker bills", ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(cxt);
	wxpay_txn_begin("wxpay: looking for due bills");
	values[0] = CStringGetTextDatum(wxpay_bill_fetch_after);
	wxpay_spi_exec(DUE_BILLS, 1, types, values, NULL, true, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		due = lappend(due, list_make2(pstrdup(wxpay_spi_value(i, 1)), pstrdup(wxpay_spi_value(i, 2))));
		MemoryContextSwitchTo(old);
	}
	wxpay_txn_commit();
	foreach(lc, due)
	{
		List	   *row = lfirst(lc);

		fetch_bill(linitial(row), lsecond(row), cxt);
	}
	MemoryContextSwitchTo(TopMemoryContext);
}

/*
 * Milliseconds until the next bill is due, at most max_ms (the worker's
 * sleep ends then, whatever wxpay.poll_interval is).  In a transaction.
 */
long
wxpay_bill_next_due_ms(long max_ms)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(wxpay_bill_fetch_after)};
	char	   *ms;

	wxpay_spi_exec(NEXT_BILL_DUE, 1, types, values, NULL, true, SPI_OK_SELECT);
	if ((ms = wxpay_spi_value(0, 1)) == NULL)
		return max_ms;
	return (long) Min(Max(pg_strtoint64(ms), MIN_BILL_SLEEP_MS), (int64) max_ms);
}
