/*
 * query.c
 *	  wxpay_orderquery and wxpay_closeorder: asking WeChat Pay what became
 *	  of an order, and abandoning one.
 *
 * An orderquery answer is judged like every answer (signature, appid,
 * mch_id) and then decided by trade_state, never by result_code, and
 * applied through the same wxpay_apply_report as a notification: SUCCESS
 * only with the order's own amount, every move along the state machine.
 */
#include "wxpay.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wxpay_orderquery);
PG_FUNCTION_INFO_V1(wxpay_closeorder);

/* The local state of an order, which must exist; SPI must be connected. */
static char *
local_state(const char *mch_id, const char *out_trade_no)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(mch_id), CStringGetTextDatum(out_trade_no)};

	if (SPI_execute_with_args("SELECT state FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1"
							  " AND out_trade_no OPERATOR(pg_catalog.=) $2",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read order %s", out_trade_no);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown order %s of merchant %s", out_trade_no, mch_id)));
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Ask /pay/orderquery; the verified answer, result_code SUCCESS. */
static WxParamList *
query_order(const WxMerchant *m, const char *out_trade_no)
{
	WxParamList req;
	WxParamList *resp;

	wxpay_list_init(&req, 8);
	wxpay_list_add_cstr(&req, "out_trade_no", out_trade_no);
	resp = wxpay_call(m, "/pay/orderquery", &req, false);
	wxpay_require_result(resp, "/pay/orderquery");
	if (!wxpay_list_is(resp, "out_trade_no", out_trade_no) ||
		wxpay_list_get(resp, "trade_state") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("WeChat Pay answered /pay/orderquery for %s without its out_trade_no and trade_state",
						out_trade_no)));
	return resp;
}

/* Apply a judged report to the order; a report that cannot be is an ERROR. */
static void
apply_or_error(const WxMerchant *m, const char *out_trade_no,
			   const char *trade_state, const WxParamList *fields,
			   const char *source)
{
	char	   *reason;

	if (wxpay_apply_report(m->mch_id, out_trade_no, trade_state, fields, source,
						   &reason) == WX_APPLY_REJECTED)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("cannot apply WeChat Pay's answer to order %s: %s", out_trade_no, reason)));
}

/*
 * wxpay_orderquery(mch_id text, out_trade_no text) -> jsonb
 */
Datum
wxpay_orderquery(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxMerchant *m;
	WxParamList *resp;

	SPI_connect();
	m = wxpay_merchant_get(mch_id);
	local_state(mch_id, out_trade_no);
	resp = query_order(m, out_trade_no);
	apply_or_error(m, out_trade_no, wxpay_list_get(resp, "trade_state"), resp, "query");
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, resp));
}

/*
 * wxpay_closeorder(mch_id text, out_trade_no text) -> jsonb
 *
 * WeChat Pay enforces its five-minute minimum age itself; its answer is
 * reported as it is.  ORDERCLOSED counts as success.
 */
Datum
wxpay_closeorder(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxMerchant *m;
	WxParamList req;
	WxParamList *resp;
	char	   *state;

	SPI_connect();
	m = wxpay_merchant_get(mch_id);
	state = local_state(mch_id, out_trade_no);
	if (strcmp(state, "SUCCESS") == 0 || strcmp(state, "REFUND") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s is paid and cannot be closed", out_trade_no, mch_id),
				 errhint("Refund it instead.")));

	wxpay_list_init(&req, 8);
	wxpay_list_add_cstr(&req, "out_trade_no", out_trade_no);
	resp = wxpay_call(m, "/pay/closeorder", &req, false);
	if (wxpay_list_is(resp, "err_code", "ORDERPAID"))
	{
		WxParamList *paid = query_order(m, out_trade_no);

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s was paid and cannot be closed", out_trade_no, mch_id),
				 errdetail("WeChat Pay reports trade_state %s, transaction_id %s.",
						   wxpay_list_get(paid, "trade_state"),
						   wxpay_list_get(paid, "transaction_id") ? wxpay_list_get(paid, "transaction_id") : "(none)"),
				 errhint("SELECT wxpay_orderquery('%s', '%s') records the payment; the worker does so on its next round.",
						 mch_id, out_trade_no)));
	}
	if (!wxpay_list_is(resp, "err_code", "ORDERCLOSED"))
		wxpay_require_result(resp, "/pay/closeorder");
	apply_or_error(m, out_trade_no, "CLOSED", resp, "close");
	PG_RETURN_JSONB_P(wxpay_spi_result(caller, resp));
}
