/*
 * refund.c
 *	  Refunds: the refund and refundquery endpoints, applying refund
 *	  reports, and wxpay_refund and wxpay_refundquery.
 *
 * Money leaves here.  wxpay_refund checks its arguments as the caller and
 * hands the rest to an autonomous step (autonomous.c), which locks the
 * order, sums its refunds so they never exceed what was paid, records the
 * refund and commits; only then is the request sent, and the answer is
 * recorded and committed in turn.  A retry with the same out_refund_no
 * sends identical parameters, which WeChat Pay refunds once.  Refund
 * notifications are in refund_notify.c.  A v3 merchant's refund goes to
 * /v3/refund/domestic/refunds by the same path: extra.refund_desc is its
 * reason, extra.refund_fee_type amount.currency (CNY when absent) and
 * extra.refund_account REFUND_SOURCE_RECHARGE_FUNDS funds_account
 * AVAILABLE.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "args.h"
#include "autonomous.h"
#include "orders.h"
#include "refund.h"
#include "spi_util.h"
#include "states.h"
#include "txn.h"

PG_FUNCTION_INFO_V1(wxpay_refund);
PG_FUNCTION_INFO_V1(wxpay_refundquery);

/*--------------------------------------------------------------------
 * Applying refund reports (query answers, notifications)
 *--------------------------------------------------------------------
 */

/*
 * Lock the refund a report names and check that it is ours: the same
 * order, amount and refund_id.  Returns its state, or NULL with *reason.
 */
char *
wxpay_lock_matching_refund(const char *mch_id, const WxRefundReport *r, char **reason)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(mch_id), CStringGetTextDatum(r->out_refund_no)};
	char	   *refund_id;

	*reason = NULL;
	wxpay_spi_exec("SELECT state, out_trade_no, refund_fee::text, refund_id FROM wxpay.refunds"
				   " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_refund_no OPERATOR(pg_catalog.=) $2"
				   " FOR UPDATE", 2, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		*reason = psprintf("unknown refund %s", r->out_refund_no);
		return NULL;
	}
	refund_id = wxpay_spi_value(0, 4);
	if ((r->out_trade_no && strcmp(r->out_trade_no, wxpay_spi_value(0, 2)) != 0) ||
		(r->refund_fee && strcmp(r->refund_fee, wxpay_spi_value(0, 3)) != 0))
		*reason = psprintf("refund %s is for order %s and %s fen, not as reported",
						   r->out_refund_no, wxpay_spi_value(0, 2), wxpay_spi_value(0, 3));
	else if (refund_id && r->refund_id && strcmp(refund_id, r->refund_id) != 0)
		*reason = psprintf("refund %s has refund_id %s, not %s", r->out_refund_no, refund_id, r->refund_id);
	return *reason ? NULL : wxpay_spi_value(0, 1);
}

/*
 * Apply a verified report of a refund's status under a row lock.  The
 * report must name the refund's own order and amount.
 */
WxApplyResult
wxpay_apply_refund_report(const char *mch_id, const WxRefundReport *r,
						  const char *source, char **reason)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[8] = "       ";
	char	   *state;

	if ((state = wxpay_lock_matching_refund(mch_id, r, reason)) == NULL)
		return WX_APPLY_REJECTED;
	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(r->out_refund_no);
	if (strcmp(state, r->status) == 0)
		return WX_APPLY_UNCHANGED;
	if (wx_refund_state_final(state) || strcmp(r->status, "PROCESSING") == 0)
	{
		*reason = psprintf("refund %s is %s here; WeChat Pay reports %s", r->out_refund_no, state, r->status);
		return WX_APPLY_REJECTED;
	}

	values[2] = CStringGetTextDatum(r->status);
	values[3] = r->refund_id ? CStringGetTextDatum(r->refund_id) : (Datum) 0;
	nulls[3] = r->refund_id ? ' ' : 'n';
	values[4] = r->success_time ? CStringGetTextDatum(r->success_time) : (Datum) 0;
	nulls[4] = r->success_time ? ' ' : 'n';
	values[5] = r->recv_accout ? CStringGetTextDatum(r->recv_accout) : (Datum) 0;
	nulls[5] = r->recv_accout ? ' ' : 'n';
	values[6] = r->account ? CStringGetTextDatum(r->account) : (Datum) 0;
	nulls[6] = r->account ? ' ' : 'n';
	wxpay_set_change_source(source);
	wxpay_spi_exec("UPDATE wxpay.refunds SET state = $3, refund_id = COALESCE(refund_id, $4),"
			 " success_time = $5::pg_catalog.timestamptz,"
			 " refund_recv_accout = $6, refund_account = $7"
			 " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_refund_no OPERATOR(pg_catalog.=) $2",
			 7, types, values, nulls, false, SPI_OK_UPDATE);
	wxpay_set_change_source(NULL);
	return WX_APPLY_CHANGED;
}

/*
 * Find a refund in a verified refundquery answer (indexed fields
 * out_refund_no_$n, refund_status_$n, ...).  Returns false if absent.
 */
static bool
refundquery_report(const WxParamList *resp, const char *out_refund_no,
				   WxRefundReport *r)
{
	for (int n = 0; n < 50; n++)
	{
		const char *no = wxpay_list_get(resp, psprintf("out_refund_no_%d", n));

		if (no == NULL)
			break;
		if (strcmp(no, out_refund_no) != 0)
			continue;
		memset(r, 0, sizeof(*r));
		r->out_refund_no = no;
		r->out_trade_no = wxpay_list_get(resp, "out_trade_no");
		r->refund_fee = wxpay_list_get(resp, psprintf("refund_fee_%d", n));
		r->refund_id = wxpay_list_get(resp, psprintf("refund_id_%d", n));
		r->status = wxpay_list_get(resp, psprintf("refund_status_%d", n));
		r->success_time = wxpay_v2_refund_time(wxpay_list_get(resp, psprintf("refund_success_time_%d", n)));
		r->recv_accout = wxpay_list_get(resp, psprintf("refund_recv_accout_%d", n));
		r->account = wxpay_list_get(resp, psprintf("refund_account_%d", n));
		return r->status != NULL;
	}
	return false;
}

/* The refundquery endpoint names the refund by out_refund_no. */
static void
build_refundquery(const WxCall *call, WxParamList *req)
{
	wxpay_list_add_cstr(req, "out_refund_no", call->out_refund_no);
}

/* A refundquery answer: this refund's refund_status_$n. */
static bool
read_refundquery(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	if (!wxpay_v2_result(call->endpoint, &answer->fields, fail))
		return false;
	if (!refundquery_report(&answer->fields, call->out_refund_no, &answer->refund))
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered /pay/refundquery without refund %s", call->out_refund_no));
	if (!wx_refund_state_valid(answer->refund.status))
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("unknown refund_status %s", answer->refund.status));
	return true;
}

/* Apply a refundquery report to the refund. */
static bool
apply_refundquery(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	char	   *reason;
	WxApplyResult result = wxpay_apply_refund_report(call->merchant->mch_id, &answer->refund,
													 "query", &reason);

	return wxpay_apply_outcome(result, reason, answer, fail);
}

/* A v3 refund object for the refund the call names, as a report. */
static bool
read_v3_refundquery(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	if (!wxpay_v3_result(call, answer, fail))
		return false;
	wxpay_v3_refund_report(&answer->fields, "status", &answer->refund);
	if (answer->refund.out_refund_no == NULL ||
		strcmp(answer->refund.out_refund_no, call->out_refund_no) != 0)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered %s without refund %s",
								   wxpay_call_path(call), call->out_refund_no));
	if (!wx_refund_state_valid(answer->refund.status))
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("unknown refund status %s", wxpay_list_get(&answer->fields, "status")));
	return true;
}

static const WxEndpointV3 v3_refundquery = {
	.method = "GET",
	.path = "/v3/refund/domestic/refunds/{out_refund_no}",
	.read = read_v3_refundquery,
};

const WxEndpoint wx_endpoint_refundquery = {
	.name = "refundquery",
	.path = "/pay/refundquery",
	.client_cert = false,
	.source = "query",
	.build = build_refundquery,
	.read = read_refundquery,
	.apply = apply_refundquery,
	.v3 = &v3_refundquery,
};

/*--------------------------------------------------------------------
 * wxpay_refund
 *--------------------------------------------------------------------
 */

/* A validated wxpay_refund call. */
typedef struct WxRefundArgs
{
	const char *mch_id;
	const char *out_trade_no;
	const char *out_refund_no;
	int32		refund_fee;
	WxParamList extra;
	Jsonb	   *params;
} WxRefundArgs;

/* The optional fields a refund request may carry. */
static const WxOptionalField refund_fields[] = {
	{"refund_desc", 80},
	{"refund_account", 32, "^REFUND_SOURCE_(UNSETTLED|RECHARGE)_FUNDS$",
	"Use REFUND_SOURCE_UNSETTLED_FUNDS or REFUND_SOURCE_RECHARGE_FUNDS."},
	{"notify_url", 256, "^https?://[^?#[:space:]]+$", "An absolute http(s) URL without a query string."},
	{"refund_fee_type", 16, "^[A-Z]{3}$", "Use an ISO 4217 code such as CNY."},
};

/* Read and validate the arguments of wxpay_refund. */
static void
read_refund_args(FunctionCallInfo fcinfo, WxRefundArgs *a)
{
	static const char *const names[] = {"mch_id", "out_trade_no", "out_refund_no", "refund_fee", "extra"};

	wxpay_require_args(fcinfo, names, lengthof(names));
	a->mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	a->out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	a->out_refund_no = text_to_cstring(PG_GETARG_TEXT_PP(2));
	a->refund_fee = PG_GETARG_INT32(3);
	if (a->refund_fee <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refund_fee must be a positive number of fen, not %d", a->refund_fee)));
	wxpay_check_pattern("out_trade_no", a->out_trade_no, WX_OUT_TRADE_NO_PATTERN,
				  "Use the out_trade_no of a paid order.");
	wxpay_check_pattern("out_refund_no", a->out_refund_no, WX_OUT_REFUND_NO_PATTERN,
				  "Use 1 to 64 characters from 0-9, A-Z, a-z and _-|*@.");
	wxpay_extra_to_list(PG_GETARG_JSONB_P(4), refund_fields, lengthof(refund_fields), &a->extra);
	a->params = wxpay_list_to_jsonb(&a->extra);
}

/*
 * Lock the order, check it is paid and that this refund fits in what is
 * left, and record the refund (or find the identical earlier attempt).
 * Returns the order's total_fee.
 */
static int32
record_refund(const WxRefundArgs *a)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, JSONBOID};
	Datum		values[5];
	char	   *state;
	int32		total_fee;
	int64		refunded;

	values[0] = CStringGetTextDatum(a->mch_id);
	values[1] = CStringGetTextDatum(a->out_trade_no);
	values[2] = CStringGetTextDatum(a->out_refund_no);
	values[3] = Int32GetDatum(a->refund_fee);
	values[4] = JsonbPGetDatum(a->params);

	wxpay_spi_exec("SELECT state, total_fee FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1"
			 " AND out_trade_no OPERATOR(pg_catalog.=) $2 FOR UPDATE",
			 2, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown order %s of merchant %s", a->out_trade_no, a->mch_id)));
	state = wxpay_spi_value(0, 1);
	total_fee = pg_strtoint32(wxpay_spi_value(0, 2));
	if (!wx_order_state_paid(state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s is %s, not paid: there is nothing to refund",
						a->out_trade_no, a->mch_id, state)));

	wxpay_spi_exec("SELECT out_trade_no OPERATOR(pg_catalog.=) $2 AND refund_fee OPERATOR(pg_catalog.=) $4"
			 " AND params OPERATOR(pg_catalog.=) $5, state, last_error FROM wxpay.refunds"
			 " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_refund_no OPERATOR(pg_catalog.=) $3",
			 5, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		if (strcmp(wxpay_spi_value(0, 1), "t") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("refund %s of merchant %s exists with different parameters", a->out_refund_no, a->mch_id),
					 errhint("A retry must repeat the original refund exactly; a new refund needs a new out_refund_no.")));
		if (strcmp(wxpay_spi_value(0, 2), "REFUNDCLOSE") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("refund %s of merchant %s is closed", a->out_refund_no, a->mch_id),
					 wxpay_spi_value(0, 3) ? errdetail("%s", wxpay_spi_value(0, 3)) : 0,
					 errhint("A new attempt needs a new out_refund_no.")));
		return total_fee;
	}

	/* Closed refunds returned nothing; every other one counts. */
	wxpay_spi_exec("SELECT COALESCE(pg_catalog.sum(refund_fee), 0) FROM wxpay.refunds"
			 " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2"
			 " AND wxpay.refund_state_counts(state)",
			 2, types, values, NULL, false, SPI_OK_SELECT);
	refunded = pg_strtoint64(wxpay_spi_value(0, 1));
	if (refunded + a->refund_fee > total_fee)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refund of %d fen would bring order %s to %lld fen refunded, more than the %d fen paid",
						a->refund_fee, a->out_trade_no, (long long) (refunded + a->refund_fee), total_fee),
				 errdetail("%lld fen are refunded or being refunded already.", (long long) refunded)));

	wxpay_set_change_source("refund");
	wxpay_spi_exec("INSERT INTO wxpay.refunds (mch_id, out_trade_no, out_refund_no, refund_fee, params, total_fee)"
			 " VALUES ($1, $2, $3, $4, $5, $6)",
			 6, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, INT4OID, JSONBOID, INT4OID},
			 (Datum[]) {values[0], values[1], values[2], values[3], values[4], Int32GetDatum(total_fee)},
			 NULL, false, SPI_OK_INSERT);
	wxpay_set_change_source(NULL);
	return total_fee;
}

/* The refund request: its own fields, then what extra carries. */
static void
build_refund(const WxCall *call, WxParamList *req)
{
	wxpay_list_append(req, call->fields);
	wxpay_list_add_cstr(req, "out_trade_no", call->out_trade_no);
	wxpay_list_add_cstr(req, "out_refund_no", call->out_refund_no);
	wxpay_list_add_cstr(req, "total_fee", psprintf("%d", call->total_fee));
	wxpay_list_add_cstr(req, "refund_fee", psprintf("%d", call->refund_fee));
}

/* An accepted refund: the same refund, with WeChat's refund_id. */
static bool
read_refund(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *resp = &answer->fields;

	if (!wxpay_v2_result(call->endpoint, resp, fail))
		return false;
	memset(&answer->refund, 0, sizeof(answer->refund));
	answer->refund.refund_id = wxpay_list_get(resp, "refund_id");
	if (!wxpay_list_is(resp, "out_refund_no", call->out_refund_no) ||
		!wxpay_list_is(resp, "refund_fee", psprintf("%d", call->refund_fee)) ||
		answer->refund.refund_id == NULL)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay accepted refund %s with other details than requested",
								   call->out_refund_no));
	answer->refund.out_refund_no = call->out_refund_no;
	answer->refund.out_trade_no = call->out_trade_no;
	answer->refund.status = "PROCESSING";
	return true;
}

/* After WeChat Pay accepted: the refund_id, and the order is REFUND. */
static bool
store_acceptance(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	Datum		values[3] = {CStringGetTextDatum(call->merchant->mch_id),
		CStringGetTextDatum(call->out_refund_no),
	CStringGetTextDatum(answer->refund.refund_id)};
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};

	wxpay_spi_exec("UPDATE wxpay.refunds SET refund_id = $3 WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND out_refund_no OPERATOR(pg_catalog.=) $2 AND refund_id IS NULL",
				   3, types, values, NULL, false, SPI_OK_UPDATE);
	wxpay_order_mark_refunded(call->merchant->mch_id, call->out_trade_no);
	answer->changed = true;
	return true;
}

/* The v3 refund body, from the same validated call as v2's. */
static Jsonb *
build_v3_refund(const WxCall *call)
{
	const WxParamList *extra = call->fields;
	const char *currency = wxpay_list_get(extra, "refund_fee_type");
	WxJson		j;

	wxpay_json_begin(&j);
	wxpay_json_string(&j, "out_trade_no", call->out_trade_no);
	wxpay_json_string(&j, "out_refund_no", call->out_refund_no);
	wxpay_json_string(&j, "reason", wxpay_list_get(extra, "refund_desc"));
	wxpay_json_string(&j, "notify_url", wxpay_list_get(extra, "notify_url"));
	if (wxpay_list_is(extra, "refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"))
		wxpay_json_string(&j, "funds_account", "AVAILABLE");
	wxpay_json_object(&j, "amount");
	wxpay_json_int(&j, "refund", call->refund_fee);
	wxpay_json_int(&j, "total", call->total_fee);
	wxpay_json_string(&j, "currency", currency ? currency : "CNY");
	wxpay_json_end(&j);
	return wxpay_json_finish(&j);
}

/* An accepted v3 refund: the same refund and amount, with its refund_id. */
static bool
read_v3_refund(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	WxRefundReport *r = &answer->refund;

	if (!wxpay_v3_result(call, answer, fail))
		return false;
	wxpay_v3_refund_report(&answer->fields, "status", r);
	if (r->out_refund_no == NULL || strcmp(r->out_refund_no, call->out_refund_no) != 0 ||
		r->refund_fee == NULL || strcmp(r->refund_fee, psprintf("%d", call->refund_fee)) != 0 ||
		r->refund_id == NULL)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay accepted refund %s with other details than requested",
								   call->out_refund_no));
	r->out_trade_no = call->out_trade_no;
	r->status = "PROCESSING";
	return true;
}

static const WxEndpointV3 v3_refund = {
	.method = "POST",
	.path = "/v3/refund/domestic/refunds",
	.body = build_v3_refund,
	.read = read_v3_refund,
};

const WxEndpoint wx_endpoint_refund = {
	.name = "refund",
	.path = "/secapi/pay/refund",
	.client_cert = true,
	.source = "refund",
	.build = build_refund,
	.read = read_refund,
	.apply = store_acceptance,
	.v3 = &v3_refund,
};

/*
 * After a failed request: the reason on the refund, and a refund WeChat
 * Pay certainly did not make and never will (wxpay_failure_not_done: not
 * an outcome unknown, nor a refusal to be sent again with the same
 * out_refund_no, such as v3's SIGN_ERROR or NOT_ENOUGH) is closed, so its
 * amount is free again.  Returns whether it was closed.
 */
static bool
record_refund_failure(const WxRefundArgs *a, const WxFailure *fail, bool v3)
{
	bool		refused = wxpay_failure_not_done(fail, v3);
	char	   *text = wxpay_failure_text(fail);

	wx_utf8_clip(text);
	wxpay_set_change_source("refund");
	wxpay_spi_exec("UPDATE wxpay.refunds SET last_error = $3,"
				   " state = CASE WHEN $4 THEN 'REFUNDCLOSE' ELSE state END"
				   " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_refund_no OPERATOR(pg_catalog.=) $2"
				   " AND state OPERATOR(pg_catalog.=) 'PROCESSING'",
				   4, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, BOOLOID},
				   (Datum[]) {CStringGetTextDatum(a->mch_id), CStringGetTextDatum(a->out_refund_no),
				   CStringGetTextDatum(text), BoolGetDatum(refused)},
				   NULL, false, SPI_OK_UPDATE);
	wxpay_set_change_source(NULL);
	return refused;
}

/* The step's arguments: the validated call, flat. */
static Jsonb *
refund_step_args(const WxRefundArgs *a)
{
	WxParamList args;

	wxpay_list_init(&args, a->extra.count + 4);
	wxpay_list_add_cstr(&args, "mch_id", a->mch_id);
	wxpay_list_add_cstr(&args, "out_trade_no", a->out_trade_no);
	wxpay_list_add_cstr(&args, "out_refund_no", a->out_refund_no);
	wxpay_list_add_cstr(&args, "refund_fee", psprintf("%d", a->refund_fee));
	wxpay_list_append(&args, &a->extra);
	return wxpay_list_to_jsonb(&args);
}

/* The validated call back from the step's arguments. */
static void
refund_step_read(Jsonb *jb, WxRefundArgs *a)
{
	WxParamList args;

	wxpay_list_from_jsonb(jb, &args, "refund arguments");
	memset(a, 0, sizeof(*a));
	wxpay_list_init(&a->extra, args.count);
	for (int i = 0; i < args.count; i++)
	{
		const char *name = args.items[i].name;

		if (strcmp(name, "mch_id") == 0)
			a->mch_id = wxpay_list_get(&args, name);
		else if (strcmp(name, "out_trade_no") == 0)
			a->out_trade_no = wxpay_list_get(&args, name);
		else if (strcmp(name, "out_refund_no") == 0)
			a->out_refund_no = wxpay_list_get(&args, name);
		else if (strcmp(name, "refund_fee") == 0)
			a->refund_fee = pg_strtoint32(wxpay_list_get(&args, name));
		else
			wxpay_list_add(&a->extra, name, args.items[i].value, args.items[i].value_len);
	}
	a->params = wxpay_list_to_jsonb(&a->extra);
}

/*
 * The refund, in its own process (autonomous.c): record it and commit,
 * then ask WeChat Pay, then record the answer and commit.  The caller's
 * transaction has no part in either, so a ROLLBACK there cannot lose the
 * record of money that moved.
 */
Jsonb *
wxpay_refund_step(Jsonb *args, MemoryContext cxt)
{
	WxRefundArgs a;
	WxCall		call;
	WxAnswer	answer;
	WxFailure	fail;
	WxHttpRequest req;
	WxHttpResponse resp;
	WxHttpFailure transport;
	char	   *message;
	Jsonb	   *result;

	refund_step_read(args, &a);
	wxpay_txn_begin("wxpay: recording a refund");
	wxpay_call_init(&call, &wx_endpoint_refund, wxpay_merchant_find(a.mch_id, cxt));
	if (call.merchant == NULL)
		elog(ERROR, "merchant %s vanished", a.mch_id);
	call.out_trade_no = a.out_trade_no;
	call.out_refund_no = a.out_refund_no;
	call.refund_fee = a.refund_fee;
	call.total_fee = record_refund(&a);
	call.fields = &a.extra;
	MemoryContextSwitchTo(cxt);
	if (!wxpay_endpoint_request(&call, &req, &fail))
		wxpay_raise_failure(&fail, a.mch_id, wxpay_call_path(&call));
	transport = wxpay_step_exchange(&req, &resp, &message, cxt, "wxpay: recording the refund's answer");
	if (!wxpay_endpoint_finish(&call, transport, message, &resp, &answer, &fail))
	{
		WxFailure	kept;

		if (!record_refund_failure(&a, &fail, call.merchant->v3) && fail.kind == WX_FAIL_REMOTE &&
			fail.hint == NULL && !wxpay_failure_retryable(&fail))
			fail.hint = "The refund stays PROCESSING: WeChat Pay may not have refused it for good. Once the cause is fixed, retry with identical parameters and the same out_refund_no (a new one could refund twice).";
		wxpay_failure_copy(&kept, &fail, cxt);
		wxpay_step_commit(cxt);
		wxpay_raise_failure(&kept, a.mch_id, req.url);
	}
	MemoryContextSwitchTo(cxt);
	result = wxpay_answer_jsonb(&answer);
	wxpay_step_commit(cxt);
	return result;
}

/*
 * wxpay_refund(mch_id, out_trade_no, out_refund_no, refund_fee, extra) -> jsonb
 *
 * Validated and checked here, as the caller; recorded and sent by the
 * autonomous step, as the extension's owner.
 */
Datum
wxpay_refund(PG_FUNCTION_ARGS)
{
	WxRefundArgs a;
	WxCall		call;
	WxFailure	fail;

	read_refund_args(fcinfo, &a);
	SPI_connect();
	wxpay_call_init(&call, &wx_endpoint_refund, wxpay_merchant_get(a.mch_id, CurrentMemoryContext));
	if (!wxpay_endpoint_usable(&call, &fail))
		wxpay_raise_failure(&fail, a.mch_id, wxpay_call_path(&call));
	SPI_finish();
	PG_RETURN_JSONB_P(wxpay_run_autonomous("refund", refund_step_args(&a), GetUserId()));
}

/*
 * wxpay_refundquery(mch_id text, out_refund_no text) -> jsonb
 */
Datum
wxpay_refundquery(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *out_refund_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxCall		call;
	WxAnswer	answer;

	wxpay_check_pattern("out_refund_no", out_refund_no, WX_OUT_REFUND_NO_PATTERN,
						"Use the out_refund_no given to wxpay_refund.");
	SPI_connect();
	wxpay_call_init(&call, &wx_endpoint_refundquery, wxpay_merchant_get(mch_id, CurrentMemoryContext));
	/* Like wxpay_orderquery: a refund unknown here is a bad argument. */
	wxpay_spi_exec("SELECT FROM wxpay.refunds WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND out_refund_no OPERATOR(pg_catalog.=) $2",
				   2, (Oid[]) {TEXTOID, TEXTOID},
				   (Datum[]) {CStringGetTextDatum(mch_id), CStringGetTextDatum(out_refund_no)},
				   NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown refund %s of merchant %s", out_refund_no, mch_id)));
	call.out_refund_no = out_refund_no;
	wxpay_endpoint_call(&call, &answer);
	PG_RETURN_JSONB_P(wxpay_answer_result(caller, &answer));
}
