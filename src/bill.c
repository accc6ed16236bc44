/*
 * bill.c
 *	  The downloadbill and downloadfundflow endpoints, and their SQL
 *	  functions wxpay_downloadbill and wxpay_downloadfundflow.  The worker
 *	  runs the same endpoints (worker.c).
 *
 * Their success answer is the bill file itself, unsigned (text, or gzip
 * with tar_type=GZIP); a refusal is a v2 message: downloadbill's is an
 * unsigned return_code FAIL (No Bill Exist, Bill Creating, ...), and
 * downloadfundflow's a signed result_code FAIL (NO_BILL_EXIST,
 * BILL_CREATING, ...).  No Bill Exist is an ordinary answer, a day
 * without trades, and is recorded as such; Bill Creating is "try later"
 * (WX001); any other return_code FAIL is what it is for every endpoint,
 * an unsigned answer that cannot be trusted (WX007, proto_v2.c).  The
 * file is imported by bill_store.c.  A v3 merchant's calls of the same
 * endpoints ask /v3/bill/tradebill and /v3/bill/fundflowbill instead
 * (bill_v3.c) and end in the same apply.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "bill.h"
#include "endpoint.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(wxpay_downloadbill);
PG_FUNCTION_INFO_V1(wxpay_downloadfundflow);
PG_FUNCTION_INFO_V1(wxpay_bill_import);
PG_FUNCTION_INFO_V1(wxpay_bill_check_date_sql);

static const char *const trade_types[] = {"ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND", NULL};
static const char *const account_types[] = {"Basic", "Operation", "Fees", NULL};

/* A day's gzip bill of a million rows is about 40 MB; its text 300 MB. */
#define MAX_BILL_ANSWER ((size_t) 1024 * 1024 * 1024)

/* The day, the bill or account type, and tar_type when the caller asked. */
static void
build_bill(const WxCall *call, WxParamList *req)
{
	wxpay_list_add_cstr(req, "bill_date", call->bill_date);
	wxpay_list_add_cstr(req, call->endpoint == &wx_endpoint_downloadbill ? "bill_type" : "account_type",
						call->bill_type);
	if (call->fields != NULL)
		wxpay_list_append(req, call->fields);
}

/*
 * Any other return_code FAIL: WX007 with WeChat's return_msg, and its
 * numeric error_code (downloadbill's answers carry one); a signature
 * WeChat Pay could not verify is the merchant's API key, not the network.
 */
static bool
bill_return_failure(const char *path, const WxParamList *resp, WxFailure *fail)
{
	const char *code = wxpay_list_get(resp, "error_code");
	const char *msg = wxpay_list_get(resp, "return_msg");

	(void) wxpay_v2_return_failure(path, resp, fail);
	if (code != NULL)
		fail->message = psprintf("%s (error_code %s)", fail->message, code);
	if (msg != NULL && (strstr(msg, "签名错误") != NULL || pg_strcasecmp(msg, "SIGN ERROR") == 0))
		fail->hint = "WeChat Pay could not verify the request's signature: check the merchant's api_key "
			"(and sign_type) in wxpay.merchants; asking again will not help.";
	return false;
}

/* A file, No Bill Exist, or a refusal (Bill Creating is a retry). */
static bool
read_bill(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *resp = &answer->fields;
	const char *path = call->endpoint->path;
	const char *msg = wxpay_list_get(resp, "return_msg");

	if (answer->file != NULL)
		return true;
	if (wxpay_list_is(resp, "return_code", "FAIL"))
	{
		/* Compared without case: the documentation once wrote NO Bill Exist. */
		if (msg != NULL && pg_strcasecmp(msg, "No Bill Exist") == 0)
			return (answer->no_file = true);
		if (msg != NULL && pg_strcasecmp(msg, "Bill Creating") == 0)
			return wxpay_fail_remote(fail, path, "BILL_CREATING", msg);
		return bill_return_failure(path, resp, fail);
	}
	if (wxpay_list_is(resp, "err_code", "NO_BILL_EXIST"))
		return (answer->no_file = true);
	if (!wxpay_v2_result(call->endpoint, resp, fail))
		return false;
	return wxpay_fail(fail, WX_FAIL_MISMATCH, psprintf("%s answered SUCCESS without a bill", path));
}

/* Reconcile a new trade bill (wxpay.bill_reconcile): how many discrepancies. */
static char *
reconcile(int64 bill_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(bill_id)};

	wxpay_spi_exec("SELECT wxpay.bill_reconcile($1)", 1, types, values, NULL, false, SPI_OK_SELECT);
	return wxpay_spi_value(0, 1);
}

/*
 * The day's open cases now (wxpay.bill_discrepancies), for a bill that
 * was there already: they may have been fixed, or have come, since.
 */
static char *
open_cases(const char *mch_id, int64 bill_id)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {CStringGetTextDatum(mch_id), Int64GetDatum(bill_id)};

	wxpay_spi_exec("SELECT pg_catalog.count(*) FROM wxpay.bill_discrepancies d WHERE d.mch_id OPERATOR(pg_catalog.=) $1"
				   " AND d.bill_date OPERATOR(pg_catalog.=) (SELECT b.bill_date FROM wxpay.bills b"
				   " WHERE b.bill_id OPERATOR(pg_catalog.=) $2)", 2, types, values, NULL, false, SPI_OK_SELECT);
	return wxpay_spi_value(0, 1);
}

/*
 * Import the file (or record that there is none) and reconcile a new
 * trade bill; the answer says what it did, imp why a file was refused.
 */
static bool
import_answer(const WxCall *call, WxAnswer *answer, WxBillImport *imp, WxFailure *fail)
{
	WxBillKind	kind = call->endpoint == &wx_endpoint_downloadbill ? WX_BILL_TRADE : WX_BILL_FUND;
	const char *mch_id = call->merchant->mch_id;

	if (answer->no_file)
		wxpay_bill_record_none(mch_id, kind, call->bill_date, call->bill_type, imp);
	else if (!wxpay_bill_store(mch_id, kind, call->bill_date, call->bill_type,
								answer->file, answer->file_len, answer->file_sha1, imp, fail))
		return false;
	wxpay_list_init(&answer->fields, 8);
	wxpay_list_add_cstr(&answer->fields, "bill_id", psprintf(INT64_FORMAT, imp->bill_id));
	wxpay_list_add_cstr(&answer->fields, "version", psprintf("%d", imp->version));
	wxpay_list_add_cstr(&answer->fields, "outcome", imp->outcome);
	if (!answer->no_file)
	{
		wxpay_list_add_cstr(&answer->fields, "rows", psprintf(INT64_FORMAT, imp->rows));
		wxpay_list_add_cstr(&answer->fields, "byte_size", psprintf(INT64_FORMAT, imp->byte_size));
		wxpay_list_add_cstr(&answer->fields, "sha1", pstrdup(imp->sha1));	/* the list borrows */
	}
	answer->changed = strcmp(imp->outcome, "unchanged") != 0;
	if (kind == WX_BILL_TRADE)
		wxpay_list_add_cstr(&answer->fields, "discrepancies",
							answer->changed ? reconcile(imp->bill_id) : open_cases(mch_id, imp->bill_id));
	return true;
}

/* The endpoints' apply: the downloaded file imported. */
static bool
apply_bill(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	WxBillImport imp;

	return import_answer(call, answer, &imp, fail);
}

const WxEndpoint wx_endpoint_downloadbill = {
	.name = "downloadbill",
	.path = "/pay/downloadbill",
	.client_cert = false,
	.file_answer = true,
	.max_answer = MAX_BILL_ANSWER,
	.build = build_bill,
	.read = read_bill,
	.apply = apply_bill,
	.v3 = &wx_v3_tradebill,			/* bill_v3.c */
};

const WxEndpoint wx_endpoint_downloadfundflow = {
	.name = "downloadfundflow",
	.path = "/pay/downloadfundflow",
	.client_cert = true,
	.file_answer = true,
	.max_answer = MAX_BILL_ANSWER,
	.build = build_bill,
	.read = read_bill,
	.apply = apply_bill,
	.v3 = &wx_v3_fundflowbill,			/* bill_v3.c */
};

/* Whether word is one of the NULL-terminated words. */
static bool
one_of(const char *word, const char *const *words)
{
	for (; *words != NULL; words++)
		if (strcmp(word, *words) == 0)
			return true;
	return false;
}

/* Today in Beijing time (UTC+8), as of the transaction's start, like now(). */
static DateADT
beijing_today(void)
{
	Datum		local = DirectFunctionCall2(timestamptz_zone, CStringGetTextDatum("Asia/Shanghai"),
											TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));

	return DatumGetDateADT(DirectFunctionCall1(timestamp_date, local));
}

/* The first day WeChat Pay still has a bill of: three months before today. */
static DateADT
first_kept_day(DateADT today)
{
	Interval	three_months = {.time = 0, .day = 0, .month = 3};
	Datum		ts = DirectFunctionCall2(date_mi_interval, DateADTGetDatum(today),
										 IntervalPGetDatum(&three_months));

	return DatumGetDateADT(DirectFunctionCall1(timestamp_date, ts));
}

/* A day in format, given year, month and day ("%04d-%02d-%02d"). */
static char *
day_text(DateADT day, const char *format)
{
	int			y,
				m,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	return psprintf(format, y, m, d);
}

/* A day as yyyy-MM-dd (for messages, whatever DateStyle is). */
static char *
iso_day(DateADT day)
{
	return day_text(day, "%04d-%02d-%02d");
}

/* The one rule for the days that have a bill (see bill.h). */
char *
wxpay_bill_check_date(DateADT day, bool downloadable)
{
	DateADT		today;

	if (DATE_NOT_FINITE(day))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("bill_date must be a day")));
	today = beijing_today();
	if (day >= today)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 day == today ?
				 errmsg("the bill of %s is not complete yet: it is %s in Beijing time", iso_day(day), iso_day(today)) :
				 errmsg("there is no bill of %s yet: it is %s in Beijing time", iso_day(day), iso_day(today)),
				 errdetail("A day's bill (Beijing time) is made the next morning; the last complete day is %s.",
						   iso_day(today - 1)),
				 downloadable ?
				 errhint("Yesterday in Beijing time is (now() AT TIME ZONE 'Asia/Shanghai')::date - 1; WeChat Pay "
						 "makes its bill from about 09:00 Beijing time (the worker asks after wxpay.bill_fetch_after, "
						 "10:00 by default).") :
				 errhint("Nothing was imported: a file of a day not over yet in Beijing time cannot be its whole "
						 "bill. Import the file WeChat Pay makes from about 09:00 Beijing time the next day.")));
	if (downloadable && day < first_kept_day(today))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("WeChat Pay keeps bills for three months only: the first day it has is %s",
						iso_day(first_kept_day(today))),
				 errhint("Bills older than that are on the merchant platform (pay.weixin.qq.com); "
						 "wxpay_bill_import takes such a file.")));
	return day_text(day, "%04d%02d%02d");
}

/*
 * wxpay.bill_check_date(day date, downloadable boolean) -> text
 *
 * wxpay_bill_check_date for SQL callers (wxpay_bill_backfill): the day as
 * yyyyMMdd, or the error.
 */
Datum
wxpay_bill_check_date_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(wxpay_bill_check_date(PG_GETARG_DATEADT(0), PG_GETARG_BOOL(1))));
}

/* The answer's fields that are counts or ids: numbers in the SQL result. */
static const char *const number_fields[] = {"bill_id", "version", "rows", "byte_size", "discrepancies", NULL};

/*
 * What an import did as the SQL functions' jsonb, in the caller's memory
 * (ends the SPI connection): counts and ids as numbers, like
 * wxpay_bill_summary's.
 */
static Jsonb *
bill_result(MemoryContext caller, const WxParamList *fields)
{
	StringInfoData json;
	Jsonb	   *result;

	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (int i = 0; i < fields->count; i++)
	{
		const WxParam *f = &fields->items[i];
		char	   *name = pnstrdup(f->name, f->name_len);
		char	   *value = pnstrdup(f->value, f->value_len);

		if (i > 0)
			appendStringInfoString(&json, ", ");
		escape_json(&json, name);
		appendStringInfoString(&json, ": ");
		if (one_of(name, number_fields))
			appendStringInfoString(&json, value);	/* digits we printed */
		else
			escape_json(&json, value);
	}
	appendStringInfoChar(&json, '}');
	MemoryContextSwitchTo(caller);
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
	SPI_finish();
	return result;
}

/*
 * Download and import a bill for (mch_id, bill_date, type); gzip says
 * whether to ask for it compressed.  Returns what the import did.
 */
static Datum
bill_call(FunctionCallInfo fcinfo, const WxEndpoint *endpoint, const char *const *types,
		  const char *type_hint)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *type = text_to_cstring(PG_GETARG_TEXT_PP(2));
	WxParamList fields;
	WxMerchant *m;
	WxCall		call;
	WxAnswer	answer;

	if (!one_of(type, types))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not %s", type, endpoint == &wx_endpoint_downloadbill ? "a bill_type" : "an account_type"),
				 errhint("%s", type_hint)));
	SPI_connect();
	m = wxpay_merchant_get(mch_id, CurrentMemoryContext);

	/*
	 * downloadfundflow accepts HMAC-SHA256 only.  A v2 API key signs either
	 * way, so a merchant whose other calls use MD5 gets this one (and its
	 * signed error answers) in HMAC-SHA256.
	 */
	if (endpoint == &wx_endpoint_downloadfundflow)
		m->sign_type = WX_SIGN_HMAC_SHA256;
	wxpay_call_init(&call, endpoint, m);
	call.bill_date = wxpay_bill_check_date(PG_GETARG_DATEADT(1), true);
	call.bill_type = type;
	wxpay_list_init(&fields, 1);
	if (PG_GETARG_BOOL(3))
		wxpay_list_add_cstr(&fields, "tar_type", "GZIP");
	call.fields = &fields;
	wxpay_endpoint_call(&call, &answer);
	PG_RETURN_JSONB_P(bill_result(caller, &answer.fields));
}

/*
 * wxpay_downloadbill(mch_id text, bill_date date, bill_type text DEFAULT 'ALL',
 *					  gzip boolean DEFAULT true) -> jsonb
 */
Datum
wxpay_downloadbill(PG_FUNCTION_ARGS)
{
	return bill_call(fcinfo, &wx_endpoint_downloadbill, trade_types, "bill_type is ALL, SUCCESS, REFUND or RECHARGE_REFUND.");
}

/*
 * wxpay_downloadfundflow(mch_id text, bill_date date, account_type text DEFAULT 'Basic',
 *						  gzip boolean DEFAULT true) -> jsonb
 */
Datum
wxpay_downloadfundflow(PG_FUNCTION_ARGS)
{
	return bill_call(fcinfo, &wx_endpoint_downloadfundflow, account_types, "account_type is Basic, Operation or Fees (with that capitalisation).");
}

/*
 * A file the caller handed in and that is refused: invalid input, not an
 * answer from WeChat Pay, so a data exception (22P02: not a bill that
 * reads and adds up; 22023: a bill of another day than bill_date, or of
 * another bill_type) with advice about the file, not about downloading.
 */
static void
raise_import_refusal(const WxBillImport *imp, const char *type, const char *mch_id, DateADT day)
{
	const char *hint;

	if (imp->refusal == WX_BILL_OTHER_DAY)
		hint = "Nothing was imported. A bill lists one Beijing day: import the file with the bill_date of its rows.";
	else if (imp->refusal == WX_BILL_WRONG_TYPE)
		hint = "Nothing was imported. The header tells a trade bill's type: ALL has refund columns (27, or 24 "
			"in the legacy format), SUCCESS none (20), REFUND also 退款申请时间 (29); import the file with "
			"the bill_type it is.";
	else
		hint = "Nothing was imported. Import the file as the merchant platform gives it, whole and unedited (text or gzip).";
	ereport(ERROR,
			(errcode(imp->refusal == WX_BILL_MALFORMED ? ERRCODE_INVALID_TEXT_REPRESENTATION : ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the file is not the %s bill of %s for %s: %s", type, mch_id, iso_day(day), imp->reason),
			 imp->detail ? errdetail("%s", imp->detail) : 0,
			 errhint("%s", hint)));
}

/*
 * wxpay_bill_import(mch_id text, bill_date date, bill_type text, file bytea) -> jsonb
 *
 * A bill file obtained otherwise (the merchant platform keeps more than
 * three months), imported exactly as a downloaded one: the same checks,
 * the same tables, the same reconciliation.  bill_type says its kind: a
 * trade bill_type, or a fund-flow account_type.
 */
Datum
wxpay_bill_import(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *type = text_to_cstring(PG_GETARG_TEXT_PP(2));
	bytea	   *file = PG_GETARG_BYTEA_PP(3);
	WxCall		call;
	WxAnswer	answer;
	WxBillImport imp;
	WxFailure	fail;

	if (!one_of(type, trade_types) && !one_of(type, account_types))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is neither a bill_type nor an account_type", type),
				 errhint("Trade bills: ALL, SUCCESS, REFUND, RECHARGE_REFUND; fund flow: Basic, Operation, Fees.")));
	SPI_connect();
	wxpay_call_init(&call, one_of(type, trade_types) ? &wx_endpoint_downloadbill : &wx_endpoint_downloadfundflow,
					wxpay_merchant_get(mch_id, CurrentMemoryContext));
	call.bill_date = wxpay_bill_check_date(PG_GETARG_DATEADT(1), false);
	call.bill_type = type;
	memset(&answer, 0, sizeof(answer));
	answer.file = VARDATA_ANY(file);
	answer.file_len = VARSIZE_ANY_EXHDR(file);
	if (!import_answer(&call, &answer, &imp, &fail))
		raise_import_refusal(&imp, type, mch_id, PG_GETARG_DATEADT(1));
	PG_RETURN_JSONB_P(bill_result(caller, &answer.fields));
}
