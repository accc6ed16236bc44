/*
 * orders.c
 *	  Every write to wxpay.orders but the worker's schedule: new orders,
 *	  prepay_ids, verified payment reports (notifications, query and close
 *	  answers) applied under a row lock, refunds marking the order, and
 *	  the source of each change for order_events.  Reports are protocol
 *	  neutral (endpoint.h): nothing here reads WeChat Pay's field names.
 *
 * A report moves an order only along the state machine the trigger
 * enforces, and SUCCESS only with the amount the order was created with
 * and a transaction_id.  A payment is applied exactly once: its UPDATE
 * matches the order only while it is still in the unpaid state read, so
 * of concurrent deliveries one moves it and the others, having waited for
 * its row lock, match nothing and find it paid; every other change is made
 * under the row lock taken first.
 *
 * The extension's own C code names itself (unifiedorder, notify, query,
 * close, refund, micropay, reverse) right before it writes; the trigger asks
 * wxpay.change_source() and gets 'manual' for every other writer.  The
 * value lives in C, not in a GUC, so SQL cannot forge it, and transaction
 * and subtransaction aborts reset it so it never outlives a failed write.
 */
#include "endpoint.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "history.h"
#include "orders.h"
#include "spi_util.h"
#include "states.h"

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

/* The source the extension's code named for the current write, or NULL. */
const char *
wxpay_change_source_name(void)
{
	return change_source;
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

/*
 * Move the order to SUCCESS with the report's payment fields if it is still
 * in state from (the caller holds its row lock, or read the state without
 * it: then a concurrent change makes the UPDATE match nothing).  Returns
 * why the report cannot pay it, or NULL; *moved says whether the row moved.
 */
static char *
mark_paid(const char *mch_id, const WxPaymentReport *r, const char *order_fee,
		  const char *from, bool *moved)
{
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, JSONBOID, TEXTOID};
	Datum		values[6];

	*moved = false;
	if (r->total_fee == NULL || !all_digits(r->total_fee, 10) || strcmp(r->total_fee, order_fee) != 0)
		return psprintf("total_fee %s does not match the order's %s fen",
						r->total_fee ? r->total_fee : "(missing)", order_fee);
	if (r->transaction_id == NULL || !all_digits(r->transaction_id, 32))
		return pstrdup("transaction_id is missing or malformed");
	if (r->paid_at == NULL)
		return pstrdup("the payment time (time_end) is missing or malformed");

	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(r->out_trade_no);
	values[2] = CStringGetTextDatum(r->transaction_id);
	values[3] = DirectFunctionCall3(timestamptz_in, CStringGetDatum(r->paid_at),
									ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	values[4] = JsonbPGetDatum(r->payer);
	values[5] = CStringGetTextDatum(from);
	wxpay_spi_exec_plan(&pay_plan,
						"UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = $3,"
						" paid_at = $4, payer = $5"
						" WHERE mch_id OPERATOR(pg_catalog.=) $1"
						" AND out_trade_no OPERATOR(pg_catalog.=) $2"
						" AND state OPERATOR(pg_catalog.=) $6",
						6, types, values, NULL, false, SPI_OK_UPDATE);
	*moved = SPI_processed == 1;
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
	wxpay_spi_exec_plan(&state_plan,
						"UPDATE wxpay.orders SET state = $3"
						" WHERE mch_id OPERATOR(pg_catalog.=) $1"
						" AND out_trade_no OPERATOR(pg_catalog.=) $2",
						3, types, values, NULL, false, SPI_OK_UPDATE);
}

/* A report that the order is paid (SUCCESS, or REFUND after payment). */
static WxApplyResult
apply_paid(const char *mch_id, const WxPaymentReport *r, const char *state,
		   const char *order_fee, const char *order_txn, char **reason)
{
	const char *out_trade_no = r->out_trade_no;
	const char *reported = r->state;
	const char *txn = r->transaction_id;
	bool		moved;

	if (wx_order_state_paid(state))
	{
		if (txn == NULL || order_txn == NULL || strcmp(txn, order_txn) != 0)
		{
			*reason = psprintf("order is already paid with transaction %s, not %s",
							   order_txn ? order_txn : "(none)", txn ? txn : "(none)");
			return WX_APPLY_REJECTED;
		}
		if (r->total_fee != NULL && strcmp(r->total_fee, order_fee) != 0)
		{
			*reason = wxpay_payment_anomaly(mch_id, r, order_fee);
			return WX_APPLY_ANOMALY;
		}
		if (strcmp(reported, "REFUND") == 0 && strcmp(state, "SUCCESS") == 0)
		{
			set_state(mch_id, out_trade_no, "REFUND");
			return WX_APPLY_CHANGED;
		}
		return WX_APPLY_UNCHANGED;
	}
	if (!wx_order_state_pending(state))
	{
		*reason = psprintf("WeChat Pay reports order paid but it is %s here: refund or reconcile by hand", state);
		ereport(WARNING,
				(errmsg("order %s of merchant %s is %s but WeChat Pay reports it paid",
						out_trade_no, mch_id, state),
				 errhint("The payer was charged: refund the payment or reconcile the order by hand.")));
		return WX_APPLY_REJECTED;
	}
	if ((*reason = mark_paid(mch_id, r, order_fee, state, &moved)) != NULL)
		return WX_APPLY_REJECTED;
	if (!moved)
		elog(ERROR, "locked order %s of merchant %s did not move", out_trade_no, mch_id);
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
	if (!wx_order_state_pending(state))
	{
		*reason = psprintf("WeChat Pay reports %s but the order is %s here", reported, state);
		return WX_APPLY_REJECTED;
	}
	set_state(mch_id, out_trade_no, reported);
	return WX_APPLY_CHANGED;
}

/*
 * The order's state, amount and transaction without its row lock (fresh: a
 * snapshot of its own rather than the caller's).  False if there is none.
 */
static bool
probe_order(Datum *key, bool fresh, char **state, char **fee, char **txn)
{
	Oid			types[2] = {TEXTOID, TEXTOID};

	wxpay_spi_exec_plan(&probe_plan,
						"SELECT state, total_fee::text, transaction_id FROM wxpay.orders"
						" WHERE mch_id OPERATOR(pg_catalog.=) $1"
						" AND out_trade_no OPERATOR(pg_catalog.=) $2",
						2, types, key, NULL, !fresh, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*state = wxpay_spi_value(0, 1);
	*fee = wxpay_spi_value(0, 2);
	*txn = wxpay_spi_value(0, 3);
	return true;
}

/*
 * Whether the order is in the reported paid state with the reported
 * transaction and amount (another amount is an anomaly, for the locked
 * path to record).
 */
static bool
paid_as_reported(const WxPaymentReport *r, const char *state, const char *fee, const char *txn)
{
	return r->transaction_id != NULL && txn != NULL && strcmp(state, r->state) == 0 &&
		strcmp(txn, r->transaction_id) == 0 &&
		(r->total_fee == NULL || strcmp(r->total_fee, fee) == 0);
}

/*
 * A report of a payment, decided without the row lock where that is safe:
 * most notifications are repeats, and a paid order never becomes unpaid, so
 * a repeat is recognised by one indexed read (no lock, no WAL record); a
 * first SUCCESS of a pending order is one UPDATE that matches only while
 * the order is still in the state read, so of concurrent first deliveries
 * one moves it and the others match nothing and look again.  Returns false
 * when this decides nothing: anything else takes the locked path.
 */
static bool
apply_paid_unlocked(const char *mch_id, Datum *key, const WxPaymentReport *r,
					const char *source, WxApplyResult *result)
{
	char	   *state;
	char	   *fee;
	char	   *txn;
	bool		moved = false;

	if (!probe_order(key, false, &state, &fee, &txn))
		return false;
	if (paid_as_reported(r, state, fee, txn))
	{
		*result = WX_APPLY_UNCHANGED;
		return true;
	}
	if (strcmp(r->state, "SUCCESS") != 0 || !wx_order_state_pending(state))
		return false;
	wxpay_set_change_source(source);
	if (mark_paid(mch_id, r, fee, state, &moved) != NULL)
		moved = false;			/* the locked path says why */
	wxpay_set_change_source(NULL);
	if (moved)
		*result = WX_APPLY_CHANGED;
	else if (probe_order(key, true, &state, &fee, &txn) && paid_as_reported(r, state, fee, txn))
		*result = WX_APPLY_UNCHANGED;	/* a concurrent delivery paid it */
	else
		return false;
	return true;
}

/* Apply a report to its order under the order's row lock. */
static WxApplyResult
apply_locked(const char *mch_id, Datum *key, const WxPaymentReport *r,
			 const char *source, char **reason)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	char	   *state;
	char	   *order_fee;
	char	   *order_txn;
	WxApplyResult result;

	wxpay_spi_exec_plan(&lock_plan,
						"SELECT state, total_fee::text, transaction_id FROM wxpay.orders"
						" WHERE mch_id OPERATOR(pg_catalog.=) $1"
						" AND out_trade_no OPERATOR(pg_catalog.=) $2 FOR UPDATE",
						2, types, key, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		*reason = psprintf("unknown order %s", r->out_trade_no);
		return WX_APPLY_REJECTED;
	}
	state = wxpay_spi_value(0, 1);
	order_fee = wxpay_spi_value(0, 2);
	order_txn = wxpay_spi_value(0, 3);

	wxpay_set_change_source(source);
	if (wx_order_state_paid(r->state))
		result = apply_paid(mch_id, r, state, order_fee, order_txn, reason);
	else if (wx_order_state_valid(r->state))
		result = apply_unpaid(mch_id, r->out_trade_no, state, r->state, reason);
	else if (strcmp(r->state, "ACCEPT") == 0)
		result = WX_APPLY_UNCHANGED;	/* accepted, debit pending: ask again */
	else
	{
		*reason = psprintf("unknown trade_state %s", r->state);
		result = WX_APPLY_REJECTED;
	}
	wxpay_set_change_source(NULL);
	return result;
}

/*
 * Apply a verified payment report to its order: a payment without the row
 * lock where that is safe (apply_paid_unlocked), anything else under it.
 * The caller is connected to SPI and has verified the report's signature
 * and merchant.  On WX_APPLY_REJECTED, *reason says why and the order is
 * untouched.
 */
WxApplyResult
wxpay_apply_payment(const char *mch_id, const WxPaymentReport *r,
					const char *source, char **reason)
{
	Datum		key[2];
	WxApplyResult result;

	*reason = NULL;
	key[0] = CStringGetTextDatum(mch_id);
	key[1] = CStringGetTextDatum(r->out_trade_no);
	if (!wx_order_state_paid(r->state) || !apply_paid_unlocked(mch_id, key, r, source, &result))
		result = apply_locked(mch_id, key, r, source, reason);
	/* Tills waiting for this order (order_wait.c) look again at commit. */
	if (result == WX_APPLY_CHANGED)
		wxpay_order_waiters_wake_at_commit(mch_id, r->out_trade_no);
	return result;
}

#define ORDER_INSERT \
	"INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee," \
	" spbill_create_ip, attach, openid, product_id, params, time_expire)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10," \
	" COALESCE(pg_catalog.to_timestamp($11 OPERATOR(pg_catalog.||) '+08', 'YYYYMMDDHH24MISSTZH')," \
	"  pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $12)))" \
	" ON CONFLICT (mch_id, out_trade_no) DO NOTHING" \
	" RETURNING pg_catalog.to_char(time_expire AT TIME ZONE INTERVAL '+08:00', 'YYYYMMDDHH24MISS')"

#define ORDER_EXISTING \
	"SELECT pg_catalog.to_char(time_expire AT TIME ZONE INTERVAL '+08:00', 'YYYYMMDDHH24MISS')," \
	" state, trade_type OPERATOR(pg_catalog.=) $3 AND body OPERATOR(pg_catalog.=) $4" \
	" AND total_fee OPERATOR(pg_catalog.=) $5 AND spbill_create_ip OPERATOR(pg_catalog.=) $6" \
	" AND params OPERATOR(pg_catalog.=) $10" \
	" FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2" \
	" FOR UPDATE"

/*
 * Insert a new order, or re-enter an existing one when every parameter is
 * identical (WeChat Pay's rule for a fresh prepay_id).  Returns the
 * order's time_expire as yyyyMMddHHmmss in GMT+8.
 */
char *
wxpay_order_record(const WxNewOrder *uo)
{
	Oid			types[12] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, FLOAT8OID};
	Datum		values[12];
	char		nulls[13] = "            ";
	char	   *state;
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr existing_plan = NULL;

	values[0] = CStringGetTextDatum(uo->mch_id);
	values[1] = CStringGetTextDatum(uo->out_trade_no);
	values[2] = CStringGetTextDatum(uo->trade_type);
	values[3] = CStringGetTextDatum(uo->body);
	values[4] = Int32GetDatum(uo->total_fee);
	values[5] = CStringGetTextDatum(uo->client_ip);
	values[6] = wxpay_text_or_null(uo->attach, nulls, 6);
	values[7] = wxpay_text_or_null(uo->openid, nulls, 7);
	values[8] = wxpay_text_or_null(uo->product_id, nulls, 8);
	values[9] = JsonbPGetDatum(uo->params);
	values[10] = wxpay_text_or_null(uo->time_expire, nulls, 10);
	values[11] = Float8GetDatum((double) wxpay_order_ttl);

	wxpay_set_change_source(uo->source);
	wxpay_spi_exec_plan(&insert_plan, ORDER_INSERT, 12, types, values, nulls, false,
						SPI_OK_INSERT_RETURNING);
	wxpay_set_change_source(NULL);
	if (SPI_processed == 1)
		return wxpay_spi_value(0, 1);

	wxpay_spi_exec_plan(&existing_plan, ORDER_EXISTING, 12, types, values, nulls, false,
						SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "order %s vanished while being re-entered", uo->out_trade_no);
	state = wxpay_spi_value(0, 2);
	if (!wx_order_state_pending(state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s is already %s", uo->out_trade_no, uo->mch_id, state),
				 errhint("A new payment needs a new out_trade_no.")));
	if (strcmp(wxpay_spi_value(0, 3), "t") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("order %s of merchant %s exists with different parameters", uo->out_trade_no, uo->mch_id),
				 errdetail("WeChat Pay accepts a repeated out_trade_no only with identical parameters."),
				 errhint("Use a new out_trade_no for a different amount or description.")));
	return wxpay_spi_value(0, 1);
}

/* Keep a prepay_id (and code_url or mweb_url) on its order. */
void
wxpay_order_store_prepay(const char *mch_id, const WxPaymentReport *r)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[6] = "     ";
	static SPIPlanPtr plan = NULL;

	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(r->out_trade_no);
	values[2] = wxpay_text_or_null(r->prepay_id, nulls, 2);
	values[3] = wxpay_text_or_null(r->code_url, nulls, 3);
	values[4] = wxpay_text_or_null(r->mweb_url, nulls, 4);
	wxpay_spi_exec_plan(&plan,
						"UPDATE wxpay.orders SET prepay_id = $3, code_url = $4,"
						" mweb_url = $5, prepay_at = pg_catalog.now()"
						" WHERE mch_id OPERATOR(pg_catalog.=) $1"
						" AND out_trade_no OPERATOR(pg_catalog.=) $2",
						5, types, values, nulls, false, SPI_OK_UPDATE);
}

/* A refund WeChat Pay accepted marks its paid order REFUND. */
void
wxpay_order_mark_refunded(const char *mch_id, const char *out_trade_no)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(mch_id), CStringGetTextDatum(out_trade_no)};

	wxpay_set_change_source("refund");
	wxpay_spi_exec("UPDATE wxpay.orders SET state = 'REFUND' WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND out_trade_no OPERATOR(pg_catalog.=) $2 AND state OPERATOR(pg_catalog.=) 'SUCCESS'",
				   2, types, values, NULL, false, SPI_OK_UPDATE);
	wxpay_set_change_source(NULL);
}
