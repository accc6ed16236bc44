/*
 * orders.c
 *	  Writing to wxpay.orders: applying verified reports (payment
 *	  notifications, query answers) under a row lock, and naming the source
 *	  of each change for order_events.
 *
 * A report moves an order only along the state machine the trigger
 * enforces, and SUCCESS only with the amount the order was created with
 * and a transaction_id.  The row lock makes concurrent duplicates wait and
 * then find the order already paid, so a payment is applied exactly once.
 *
 * The extension's own C code names itself (unifiedorder, notify, query,
 * close, refund) right before it writes; the trigger asks
 * wxpay.change_source() and gets 'manual' for every other writer.  The
 * value lives in C, not in a GUC, so SQL cannot forge it, and transaction
 * and subtransaction aborts reset it so it never outlives a failed write.
 */
#include "wxpay.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wxpay_change_source);

static const char *change_source = NULL;

void
wxpay_set_change_source(const char *source)
{
	change_source = source;
}

static void
reset_on_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		change_source = NULL;
}

static void
reset_on_subabort(SubXactEvent event, SubTransactionId mySubid,
				  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		change_source = NULL;
}

void
wxpay_orders_init(void)
{
	RegisterXactCallback(reset_on_abort, NULL);
	RegisterSubXactCallback(reset_on_subabort, NULL);
}

/*
 * wxpay.change_source() -> text
 */
Datum
wxpay_change_source(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(change_source ? change_source : "manual"));
}

/* Saved plans: notifications are a hot path. */
static SPIPlanPtr probe_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr pay_plan = NULL;
static SPIPlanPtr state_plan = NULL;

/*
 * A plan prepared once per backend and kept: statements on hot paths are
 * then neither parsed nor planned again.
 */
SPIPlanPtr
wxpay_saved_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		*slot = plan;
	}
	return *slot;
}

static bool
is_paid_state(const char *state)
{
	return strcmp(state, "SUCCESS") == 0 || strcmp(state, "REFUND") == 0;
}

static bool
is_pending_state(const char *state)
{
	return strcmp(state, "NOTPAY") == 0 || strcmp(state, "USERPAYING") == 0 ||
		strcmp(state, "PAYERROR") == 0;
}

/* A non-empty string of at most max_len ASCII digits. */
static bool
all_digits(const char *s, size_t max_len)
{
	size_t		n = 0;

	for (; s[n] != '\0'; n++)
		if (s[n] < '0' || s[n] > '9' || n >= max_len)
			return false;
	return n > 0;
}

/* The payer fields worth keeping from a verified report. */
static Jsonb *
payer_fields(const WxParamList *fields)
{
	static const char *const names[] = {"openid", "is_subscribe", "bank_type", "cash_fee",
		"cash_fee_type", "fee_type", "coupon_fee", "coupon_count", "settlement_total_fee",
	"trade_type", "device_info"};
	WxParamList payer;

	wxpay_list_init(&payer, lengthof(names));
	for (int i = 0; i < lengthof(names); i++)
	{
		const WxParam *p = wx_params_find(fields->items, fields->count, names[i]);

		if (p != NULL)
			payer.items[payer.count++] = *p;
	}
	return wxpay_list_to_jsonb(&payer);
}

/* Move the locked order to SUCCESS with the report's payment fields. */
static char *
mark_paid(const char *mch_id, const char *out_trade_no, const WxParamList *fields,
		  const char *order_fee)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[5];
	const char *total_fee = wxpay_list_get(fields, "total_fee");
	const char *transaction_id = wxpay_list_get(fields, "transaction_id");
	const char *time_end = wxpay_list_get(fields, "time_end");

	if (total_fee == NULL || !all_digits(total_fee, 10) || strcmp(total_fee, order_fee) != 0)
		return psprintf("total_fee %s does not match the order's %s fen",
						total_fee ? total_fee : "(missing)", order_fee);
	if (transaction_id == NULL || !all_digits(transaction_id, 32))
		return pstrdup("transaction_id is missing or malformed");
	if (time_end == NULL || strlen(time_end) != 14 || !all_digits(time_end, 14))
		return pstrdup("time_end is missing or not yyyyMMddHHmmss");

	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(out_trade_no);
	values[2] = CStringGetTextDatum(transaction_id);
	values[3] = CStringGetTextDatum(time_end);
	values[4] = JsonbPGetDatum(payer_fields(fields));
	if (SPI_execute_plan(wxpay_saved_plan(&pay_plan,
									"UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = $3,"
									" paid_at = pg_catalog.to_timestamp($4 OPERATOR(pg_catalog.||) '+08',"
									"  'YYYYMMDDHH24MISSTZH'),"
									" payer = $5"
									" WHERE mch_id OPERATOR(pg_catalog.=) $1"
									" AND out_trade_no OPERATOR(pg_catalog.=) $2",
									5, types),
						 values, NULL, false, 1) != SPI_OK_UPDATE)
		elog(ERROR, "could not mark order %s paid", out_trade_no);
	return NULL;
}

static void
set_state(const char *mch_id, const char *out_trade_no, const char *state)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(out_trade_no);
	values[2] = CStringGetTextDatum(state);
	if (SPI_execute_plan(wxpay_saved_plan(&state_plan,
									"UPDATE wxpay.orders SET state = $3"
									" WHERE mch_id OPERATOR(pg_catalog.=) $1"
									" AND out_trade_no OPERATOR(pg_catalog.=) $2",
									3, types),
						 values, NULL, false, 1) != SPI_OK_UPDATE)
		elog(ERROR, "could not set order %s to %s", out_trade_no, state);
}

/* A report that the order is paid (SUCCESS, or REFUND after payment). */
static WxApplyResult
apply_paid(const char *mch_id, const char *out_trade_no, const char *state,
		   const char *reported, const char *order_fee, const char *order_txn,
		   const WxParamList *fields, char **reason)
{
	const char *txn = wxpay_list_get(fields, "transaction_id");

	if (is_paid_state(state))
	{
		if (txn == NULL || order_txn == NULL || strcmp(txn, order_txn) != 0)
		{
			*reason = psprintf("order is already paid with transaction %s, not %s",
							   order_txn ? order_txn : "(none)", txn ? txn : "(none)");
			return WX_APPLY_REJECTED;
		}
		if (strcmp(reported, "REFUND") == 0 && strcmp(state, "SUCCESS") == 0)
		{
			set_state(mch_id, out_trade_no, "REFUND");
			return WX_APPLY_CHANGED;
		}
		return WX_APPLY_UNCHANGED;
	}
	if (!is_pending_state(state))
	{
		*reason = psprintf("WeChat Pay reports order paid but it is %s here: refund or reconcile by hand", state);
		ereport(WARNING,
				(errmsg("order %s of merchant %s is %s but WeChat Pay reports it paid",
						out_trade_no, mch_id, state),
				 errhint("The payer was charged: refund the payment or reconcile the order by hand.")));
		return WX_APPLY_REJECTED;
	}
	if ((*reason = mark_paid(mch_id, out_trade_no, fields, order_fee)) != NULL)
		return WX_APPLY_REJECTED;
	if (strcmp(reported, "REFUND") == 0)
		set_state(mch_id, out_trade_no, "REFUND");
	return WX_APPLY_CHANGED;
}

/* A report of an unpaid state: NOTPAY, USERPAYING, PAYERROR, CLOSED, REVOKED. */
static WxApplyResult
apply_unpaid(const char *mch_id, const char *out_trade_no, const char *state,
			 const char *reported, char **reason)
{
	if (strcmp(state, reported) == 0)
		return WX_APPLY_UNCHANGED;
	if (!is_pending_state(state))
	{
		*reason = psprintf("WeChat Pay reports %s but the order is %s here", reported, state);
		return WX_APPLY_REJECTED;
	}
	set_state(mch_id, out_trade_no, reported);
	return WX_APPLY_CHANGED;
}

/*
 * Whether the order is already in the reported paid state with the
 * reported transaction: most notifications are repeats, and a paid order
 * never becomes unpaid, so this is decided without the row lock (and its
 * WAL record).  Anything else takes the locked path, where concurrent
 * first deliveries serialise.
 */
static bool
already_paid(Datum *key, const char *trade_state, const WxParamList *fields)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	char	   *state;
	char	   *txn;
	const char *reported = wxpay_list_get(fields, "transaction_id");

	if (SPI_execute_plan(wxpay_saved_plan(&probe_plan,
									"SELECT state, transaction_id FROM wxpay.orders"
									" WHERE mch_id OPERATOR(pg_catalog.=) $1"
									" AND out_trade_no OPERATOR(pg_catalog.=) $2",
									2, types),
						 key, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read order");
	if (SPI_processed == 0 || reported == NULL)
		return false;
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	txn = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return strcmp(state, trade_state) == 0 && txn != NULL && strcmp(txn, reported) == 0;
}

/*
 * Apply a verified report of trade_state to an order, under a row lock.
 * The caller is connected to SPI and has verified the report's signature
 * and merchant; fields are the report's fields.  On WX_APPLY_REJECTED,
 * *reason says why and the order is untouched.
 */
WxApplyResult
wxpay_apply_report(const char *mch_id, const char *out_trade_no,
				   const char *trade_state, const WxParamList *fields,
				   const char *source, char **reason)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	HeapTuple	row;
	TupleDesc	desc;
	char	   *state;
	char	   *order_fee;
	char	   *order_txn;
	WxApplyResult result;

	*reason = NULL;
	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(out_trade_no);
	if (is_paid_state(trade_state) && already_paid(values, trade_state, fields))
		return WX_APPLY_UNCHANGED;
	if (SPI_execute_plan(wxpay_saved_plan(&lock_plan,
									"SELECT state, total_fee::text, transaction_id FROM wxpay.orders"
									" WHERE mch_id OPERATOR(pg_catalog.=) $1"
									" AND out_trade_no OPERATOR(pg_catalog.=) $2 FOR UPDATE",
									2, types),
						 values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock order %s", out_trade_no);
	if (SPI_processed == 0)
	{
		*reason = psprintf("unknown order %s", out_trade_no);
		return WX_APPLY_REJECTED;
	}
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	state = SPI_getvalue(row, desc, 1);
	order_fee = SPI_getvalue(row, desc, 2);
	order_txn = SPI_getvalue(row, desc, 3);

	wxpay_set_change_source(source);
	if (is_paid_state(trade_state))
		result = apply_paid(mch_id, out_trade_no, state, trade_state, order_fee,
							order_txn, fields, reason);
	else if (is_pending_state(trade_state) || strcmp(trade_state, "CLOSED") == 0 ||
			 strcmp(trade_state, "REVOKED") == 0)
		result = apply_unpaid(mch_id, out_trade_no, state, trade_state, reason);
	else if (strcmp(trade_state, "ACCEPT") == 0)
		result = WX_APPLY_UNCHANGED;	/* accepted, debit pending: ask again */
	else
	{
		*reason = psprintf("unknown trade_state %s", trade_state);
		result = WX_APPLY_REJECTED;
	}
	wxpay_set_change_source(NULL);
	return result;
}
