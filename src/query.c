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
 * says the order was paid.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "spi_util.h"
#include "states.h"

PG_FUNCTION_INFO_V1(wxpay_orderquery);
PG_FUNCTION_INFO_V1(wxpay_closeorder);

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

const WxEndpoint wx_endpoint_orderquery = {
	.protocol = &wx_protocol_v2,
	.name = "orderquery",
	.path = "/pay/orderquery",
	.client_cert = false,
	.source = "query",
	.build = wxpay_build_by_out_trade_no,
	.read = read_orderquery,
	.apply = wxpay_apply_payment_answer,
};

const WxEndpoint wx_endpoint_closeorder = {
	.protocol = &wx_protocol_v2,
	.name = "closeorder",
	.path = "/pay/closeorder",
	.client_cert = false,
	.source = "close",
	.build = wxpay_build_by_out_trade_no,
	.read = read_closeorder,
	.apply = wxpay_apply_payment_answer,
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
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, &answer.fields));
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
