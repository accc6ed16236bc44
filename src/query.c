/*
 * query.c
 *	  The orderquery and closeorder endpoints, and their SQL functions
 *	  wxpay_orderquery and wxpay_closeorder.  The worker runs the same
 *	  endpoints (worker.c).
 *
 * An orderquery answer is decided by trade_state, never by result_code,
 * and applied through the same wxpay_apply_payment as a notification:
 * SUCCESS only with the order's own amount, every move along the state
 * machine.  closeorder's ORDERCLOSED and ORDERNOTEXIST (WeChat Pay never
 * had the order) both leave the order CLOSED; ORDERPAID is a refusal that
 * says the order was paid.  In API v3 the same: ORDER_CLOSED and
 * ORDER_NOT_EXIST close, ORDER_PAID refuses; a query by transaction id
 * (wxpay_orderquery_by_transaction_id) reports the order it names.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "args.h"
#include "spi_util.h"
#include "states.h"

PG_FUNCTION_INFO_V1(wxpay_orderquery);
PG_FUNCTION_INFO_V1(wxpay_closeorder);
PG_FUNCTION_INFO_V1(wxpay_orderquery_by_transaction_id);

/* An orderquery answer: this order's trade_state. */
static bool
read_orderquery(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const char *trade_state;

	if (!wxpay_v2_result(call->endpoint, &answer->fields, fail))
		return false;
	trade_state = wxpay_list_get(&answer->fields, "trade_state");
	if (!wxpay_list_is(&answer->fields, "out_trade_no", call->out_trade_no) || trade_state == NULL)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered /pay/orderquery for %s without its out_trade_no and trade_state",
								   call->out_trade_no));
	wxpay_v2_payment_report(&answer->fields, trade_state, &answer->payment);
	return true;
}

/* A closeorder answer: closed (or never there), else a refusal. */
static bool
read_closeorder(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *resp = &answer->fields;

	if (!wxpay_v2_result(call->endpoint, resp, fail) &&
		!wxpay_list_is(resp, "err_code", "ORDERCLOSED") &&
		!wxpay_list_is(resp, "err_code", "ORDERNOTEXIST"))
	{
		if (wxpay_list_is(resp, "err_code", "ORDERPAID"))
			fail->hint = "The order was paid: wxpay_orderquery records the payment, and the worker does so on its next round.";
		return false;
	}
	memset(&answer->payment, 0, sizeof(answer->payment));
	answer->payment.out_trade_no = call->out_trade_no;
	answer->payment.state = "CLOSED";
	return true;
}

/* The transaction answers a query by transaction id: its out_trade_no. */
static bool
read_orderquery_by_id(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const char *trade_state;

	if (!wxpay_v2_result(call->endpoint, &answer->fields, fail))
		return false;
	trade_state = wxpay_list_get(&answer->fields, "trade_state");
	if (!wxpay_list_is(&answer->fields, "transaction_id", call->transaction_id) || trade_state == NULL ||
		wxpay_list_get(&answer->fields, "out_trade_no") == NULL)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered /pay/orderquery for %s without its transaction_id, out_trade_no and trade_state",
								   call->transaction_id));
	wxpay_v2_payment_report(&answer->fields, trade_state, &answer->payment);
	return true;
}

/* orderquery by WeChat Pay's transaction id. */
static void
build_by_transaction_id(const WxCall *call, WxParamList *req)
{
	wxpay_list_add_cstr(req, "transaction_id", call->transaction_id);
}

/*
 * A v3 transaction object for the order the call names (by out_trade_no,
 * or by transaction_id with its out_trade_no), as a payment report.
 */
static bool
read_v3_transaction(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	WxPaymentReport *r = &answer->payment;

	if (!wxpay_v3_result(call, answer, fail))
		return false;
	wxpay_v3_payment_report(&answer->fields, r);
	if (r->state == NULL || r->out_trade_no == NULL ||
		(call->out_trade_no && strcmp(r->out_trade_no, call->out_trade_no) != 0) ||
		(call->transaction_id && !wxpay_list_is(&answer->fields, "transaction_id", call->transaction_id)))
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered %s for %s without its order and trade_state",
								   wxpay_call_path(call), call->out_trade_no ? call->out_trade_no : call->transaction_id));
	return true;
}

/* A v3 close: 204, or a refusal that means closed (or never there). */
static bool
read_v3_close(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *resp = &answer->fields;

	if (!wxpay_v3_result(call, answer, fail) &&
		!wxpay_list_is(resp, "code", "ORDER_CLOSED") &&
		!wxpay_list_is(resp, "code", "ORDER_NOT_EXIST"))
	{
		if (wxpay_list_is(resp, "code", "ORDER_PAID"))
			fail->hint = "The order was paid: wxpay_orderquery records the payment, and the worker does so on its next round.";
		return false;
	}
	memset(&answer->payment, 0, sizeof(answer->payment));
	answer->payment.out_trade_no = call->out_trade_no;
	answer->payment.state = "CLOSED";
	return true;
}

/* The v3 close's body names the merchant. */
static Jsonb *
v3_mchid_body(const WxCall *call)
{
	WxJson		j;

	wxpay_json_begin(&j);
	wxpay_json_string(&j, "mchid", call->merchant->mch_id);
	return wxpay_json_finish(&j);
}

static const WxEndpointV3 v3_orderquery = {
	.method = "GET",
	.path = "/v3/pay/transactions/out-trade-no/{out_trade_no}",
	.mchid_query = true,
	.read = read_v3_transaction,
};

static const WxEndpointV3 v3_orderquery_by_id = {
	.method = "GET",
	.path = "/v3/pay/transactions/id/{transaction_id}",
	.mchid_query = true,
	.read = read_v3_transaction,
};

static const WxEndpointV3 v3_closeorder = {
	.method = "POST",
	.path = "/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
	.body = v3_mchid_body,
	.read = read_v3_close,
};

const WxEndpoint wx_endpoint_orderquery = {
	.name = "orderquery",
	.path = "/pay/orderquery",
	.client_cert = false,
	.source = "query",
	.build = wxpay_build_by_out_trade_no,
	.read = read_orderquery,
	.apply = wxpay_apply_payment_answer,
	.v3 = &v3_orderquery,
};

const WxEndpoint wx_endpoint_orderquery_by_id = {
	.name = "orderquery by transaction_id",
	.path = "/pay/orderquery",
	.client_cert = false,
	.source = "query",
	.build = build_by_transaction_id,
	.read = read_orderquery_by_id,
	.apply = wxpay_apply_payment_answer,
	.v3 = &v3_orderquery_by_id,
};

const WxEndpoint wx_endpoint_closeorder = {
	.name = "closeorder",
	.path = "/pay/closeorder",
	.client_cert = false,
	.source = "close",
	.build = wxpay_build_by_out_trade_no,
	.read = read_closeorder,
	.apply = wxpay_apply_payment_answer,
	.v3 = &v3_closeorder,
};

/* The local state of an order, which must exist; SPI must be connected. */
static char *
local_state(const char *mch_id, const char *out_trade_no)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(mch_id), CStringGetTextDatum(out_trade_no)};

	wxpay_spi_exec("SELECT state FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND out_trade_no OPERATOR(pg_catalog.=) $2",
				   2, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown order %s of merchant %s", out_trade_no, mch_id)));
	return wxpay_spi_value(0, 1);
}

/* Ask endpoint about (mch_id, out_trade_no) and return the verified answer. */
static Datum
order_call(FunctionCallInfo fcinfo, const WxEndpoint *endpoint)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxCall		call;
	WxAnswer	answer;
	char	   *state;

	SPI_connect();
	wxpay_call_init(&call, endpoint, wxpay_merchant_get(mch_id, CurrentMemoryContext));
	call.out_trade_no = out_trade_no;
	state = local_state(mch_id, out_trade_no);
	if (endpoint == &wx_endpoint_closeorder && wx_order_state_paid(state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s is paid and cannot be closed", out_trade_no, mch_id),
				 errhint("Refund it instead.")));
	wxpay_endpoint_call(&call, &answer);
	PG_RETURN_JSONB_P(wxpay_answer_result(caller, &answer));
}

/*
 * wxpay_orderquery(mch_id text, out_trade_no text) -> jsonb
 */
Datum
wxpay_orderquery(PG_FUNCTION_ARGS)
{
	return order_call(fcinfo, &wx_endpoint_orderquery);
}

/*
 * wxpay_closeorder(mch_id text, out_trade_no text) -> jsonb
 *
 * WeChat Pay enforces its five-minute minimum age itself; its answer is
 * reported as it is.
 */
Datum
wxpay_closeorder(PG_FUNCTION_ARGS)
{
	return order_call(fcinfo, &wx_endpoint_closeorder);
}

/*
 * wxpay_orderquery_by_transaction_id(mch_id text, transaction_id text) -> jsonb
 *
 * The order WeChat Pay's transaction id names, which must be ours: the
 * answer is applied to it like any query's.
 */
Datum
wxpay_orderquery_by_transaction_id(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *transaction_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxCall		call;
	WxAnswer	answer;

	wxpay_check_pattern("transaction_id", transaction_id, "^[0-9A-Za-z]{1,32}$",
						"Use the transaction_id WeChat Pay reported for the order.");
	SPI_connect();
	wxpay_call_init(&call, &wx_endpoint_orderquery_by_id, wxpay_merchant_get(mch_id, CurrentMemoryContext));
	call.transaction_id = transaction_id;
	wxpay_endpoint_call(&call, &answer);
	PG_RETURN_JSONB_P(wxpay_answer_result(caller, &answer));
}
