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
 * (WX001).  The file is imported by bill_store.c.  A v3 merchant's
 * calls of the same endpoints ask /v3/bill/tradebill and
 * /v3/bill/fundflowbill instead (bill_v3.c) and end in the same apply.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"

#include "bill.h"
#include "endpoint.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(wxpay_downloadbill);
PG_FUNCTION_INFO_V1(wxpay_downloadfundflow);
PG_FUNCTION_INFO_V1(wxpay_bill_import);

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
		return wxpay_fail_remote(fail, path, msg ? msg : "return_code FAIL", wxpay_list_get(resp, "error_code"));
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
 * Import the file (or record that there is none) and reconcile a new
 * trade bill; the answer says what it did.
 */
static bool
apply_bill(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	WxBillKind	kind = call->endpoint == &wx_endpoint_downloadbill ? WX_BILL_TRADE : WX_BILL_FUND;
	const char *mch_id = call->merchant->mch_id;
	WxBillImport imp;

	if (answer->no_file)
		wxpay_bill_record_none(mch_id, kind, call->bill_date, call->bill_type, &imp);
	else if (!wxpay_bill_store(mch_id, kind, call->bill_date, call->bill_type,
								answer->file, answer->file_len, answer->file_sha1, &imp, fail))
		return false;
	wxpay_list_init(&answer->fields, 8);
	wxpay_list_add_cstr(&answer->fields, "bill_id", psprintf(INT64_FORMAT, imp.bill_id));
	wxpay_list_add_cstr(&answer->fields, "version", psprintf("%d", imp.version));
	wxpay_list_add_cstr(&answer->fields, "outcome", imp.outcome);
	if (!answer->no_file)
	{
		wxpay_list_add_cstr(&answer->fields, "rows", psprintf(INT64_FORMAT, imp.rows));
		wxpay_list_add_cstr(&answer->fields, "byte_size", psprintf(INT64_FORMAT, imp.byte_size));
		wxpay_list_add_cstr(&answer->fields, "sha1", pstrdup(imp.sha1));	/* the list borrows */
	}
	answer->changed = strcmp(imp.outcome, "unchanged") != 0;
	if (kind == WX_BILL_TRADE && answer->changed)
		wxpay_list_add_cstr(&answer->fields, "discrepancies", reconcile(imp.bill_id));
	return true;
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

/*
 * The day as yyyyMMdd, refused when WeChat Pay cannot have its bill: in
 * the future (Beijing time), or (kept_by_wechat) older than the three
 * months it keeps.
 */
static char *
bill_day(DateADT day, bool kept_by_wechat)
{
	int			y,
				m,
				d;
	Oid			types[1] = {DATEOID};
	Datum		values[1] = {DateADTGetDatum(day)};

	if (DATE_NOT_FINITE(day))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("bill_date must be a day")));
	wxpay_spi_exec("SELECT $1 OPERATOR(pg_catalog.>) (pg_catalog.now() AT TIME ZONE 'Asia/Shanghai')::pg_catalog.date,"
				   " $1 OPERATOR(pg_catalog.<) ((pg_catalog.now() AT TIME ZONE 'Asia/Shanghai')::pg_catalog.date"
				   " OPERATOR(pg_catalog.-) '3 months'::pg_catalog.interval)::pg_catalog.date",
				   1, types, values, NULL, true, SPI_OK_SELECT);
	if (strcmp(wxpay_spi_value(0, 1), "t") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("there is no bill for a day that has not begun in Beijing time")));
	if (kept_by_wechat && strcmp(wxpay_spi_value(0, 2), "t") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("WeChat Pay keeps bills for three months only"),
				 errhint("Bills older than that are on the merchant platform (pay.weixin.qq.com).")));
	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	return psprintf("%04d%02d%02d", y, m, d);
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
				 errmsg("\"%s\" is not a %s", type, endpoint == &wx_endpoint_downloadbill ? "bill_type" : "account_type"),
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
	call.bill_date = bill_day(PG_GETARG_DATEADT(1), true);
	call.bill_type = type;
	wxpay_list_init(&fields, 1);
	if (PG_GETARG_BOOL(3))
		wxpay_list_add_cstr(&fields, "tar_type", "GZIP");
	call.fields = &fields;
	wxpay_endpoint_call(&call, &answer);
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, &answer.fields));
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
	WxFailure	fail;

	if (!one_of(type, trade_types) && !one_of(type, account_types))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is neither a bill_type nor an account_type", type),
				 errhint("Trade bills: ALL, SUCCESS, REFUND, RECHARGE_REFUND; fund flow: Basic, Operation, Fees.")));
	SPI_connect();
	wxpay_call_init(&call, one_of(type, trade_types) ? &wx_endpoint_downloadbill : &wx_endpoint_downloadfundflow,
					wxpay_merchant_get(mch_id, CurrentMemoryContext));
	call.bill_date = bill_day(PG_GETARG_DATEADT(1), false);
	call.bill_type = type;
	memset(&answer, 0, sizeof(answer));
	answer.file = VARDATA_ANY(file);
	answer.file_len = VARSIZE_ANY_EXHDR(file);
	if (!call.endpoint->apply(&call, &answer, &fail))
		wxpay_raise_failure(&fail, mch_id, "a bill file");
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, &answer.fields));
}
