/*
 * micropay.c
 *	  In-store payments (付款码): the micropay and reverse endpoints, the
 *	  SQL functions wxpay_micropay and wxpay_reverse, and the worker's
 *	  schedule for micropay orders whose outcome is not known yet.
 *
 * Money may move as soon as a micropay request leaves, so, like a refund,
 * the call is an autonomous step (autonomous.c): the order is recorded
 * (trade_type MICROPAY) and committed, then sent, then the answer is
 * recorded and committed, whatever the caller does afterwards.  The answer:
 *	 - SUCCESS: a verified payment, applied like any other (events, NOTIFY);
 *	 - USERPAYING (the payer confirms on the phone), and every unknown
 *	   outcome (SYSTEMERROR, BANKERROR, ORDERPAID, no answer or one that
 *	   cannot be trusted): returned at once; the worker queries the order
 *	   every wxpay.micropay_interval (an unknown one at once);
 *	 - ORDERREVERSED, ORDERCLOSED: the order is REVOKED or CLOSED here too;
 *	 - any other refusal (NOTENOUGH, AUTHCODEEXPIRE, ...): nothing was
 *	   charged; the order is CLOSED here and the refusal raised.  It is not
 *	   reversed: OUT_TRADE_NO_USED and INVALID_REQUEST say that another trade
 *	   holds the number at WeChat Pay, and a reverse would cancel that one.
 * Once wxpay.micropay_window has passed without a payment, the worker's
 * last query is followed at once by a reverse (reverse_requested_at), which
 * it repeats every interval until WeChat Pay has reversed the order (recall
 * =Y asks exactly that); the order is then REVOKED.  A payment found before
 * is applied, and the order is never reversed.  wxpay_reverse is the till
 * asking for the same at once.
 *
 * The auth_code is never stored: it lives only in the step's arguments and
 * the request.  The order keeps params.auth_code_hmac, an HMAC-SHA256 of
 * the code and the order under the merchant's API key: a retry with the
 * same out_trade_no (WeChat Pay's rule after SYSTEMERROR) must repeat the
 * identical request, code included, and is then sent again; another code
 * is refused as different parameters.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "args.h"
#include "autonomous.h"
#include "micropay.h"
#include "orders.h"
#include "spi_util.h"
#include "txn.h"

PG_FUNCTION_INFO_V1(wxpay_micropay);
PG_FUNCTION_INFO_V1(wxpay_reverse);

/* The optional fields a micropay request may carry (API v2 §3.7). */
static const WxOptionalField micropay_fields[] = {
	{"device_info", 32, "^[0-9A-Za-z_.-]+$", "Use letters, digits, '_', '.' and '-'."},
	{"detail", 6000, NULL, NULL, true},
	{"attach", 127},
	{"fee_type", 16, "^[A-Z]{3}$", "Use an ISO 4217 code such as CNY."},
	{"goods_tag", 32},
	{"limit_pay", 32, "^no_credit$", "The only value is no_credit."},
	{"receipt", 8, "^Y$", "The only value is Y."},
};

/* The fixed arguments, as the step receives them beside extra's fields. */
static const char *const micropay_argnames[] = {"mch_id", "out_trade_no", "total_fee", "body",
"spbill_create_ip", "auth_code", "extra"};

/* A validated wxpay_micropay call. */
typedef struct WxMicropayArgs
{
	const char *mch_id;
	const char *out_trade_no;
	int32		total_fee;
	const char *body;
	const char *client_ip;
	const char *auth_code;
	WxParamList extra;
} WxMicropayArgs;

/* How a micropay answer leaves the order. */
typedef enum WxMicropayOutcome
{
	MICROPAY_PAID,				/* applied: SUCCESS */
	MICROPAY_USERPAYING,		/* the payer is confirming: query soon */
	MICROPAY_UNKNOWN,			/* query at once */
	MICROPAY_REFUSED			/* nothing charged: CLOSED (or REVOKED) here */
} WxMicropayOutcome;

/*--------------------------------------------------------------------
 * The endpoints
 *--------------------------------------------------------------------
 */

/* A micropay answer: the payment, for this order. */
static bool
read_micropay(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	if (!wxpay_v2_result(call->endpoint, &answer->fields, fail))
		return false;
	if (!wxpay_list_is(&answer->fields, "out_trade_no", call->out_trade_no))
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("WeChat Pay answered /pay/micropay for another order than %s",
								   call->out_trade_no));
	wxpay_v2_payment_report(&answer->fields, "SUCCESS", &answer->payment);
	return true;
}

const WxEndpoint wx_endpoint_micropay = {
	.name = "micropay",
	.path = "/pay/micropay",
	.client_cert = false,
	.source = "micropay",
	.build = wxpay_build_fields,
	.read = read_micropay,
	.apply = wxpay_apply_payment_answer,
};

/*
 * A reverse answer: REVOKED, or (recall=Y) not yet, with no state: the
 * reverse must be sent again and nothing moves meanwhile.  ORDERNOTEXIST
 * means WeChat Pay never had the order: there is nothing to reverse.
 */
static bool
read_reverse(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const WxParamList *resp = &answer->fields;

	memset(&answer->payment, 0, sizeof(answer->payment));
	answer->payment.out_trade_no = call->out_trade_no;
	if (wxpay_v2_result(call->endpoint, resp, fail))
		answer->payment.state = wxpay_list_is(resp, "recall", "Y") ? NULL : "REVOKED";
	else if (wxpay_list_is(resp, "err_code", "ORDERNOTEXIST"))
		answer->payment.state = "REVOKED";
	else
	{
		if (wxpay_list_is(resp, "recall", "Y"))
			fail->hint = "WeChat Pay asks for the reverse again (recall=Y); the worker repeats it.";
		return false;
	}
	return true;
}

/* Whether sql (a boolean of the call's order) is true. */
static bool
order_is(const WxCall *call, const char *sql)
{
	wxpay_spi_exec(sql, 2, (Oid[]) {TEXTOID, TEXTOID},
				   (Datum[]) {CStringGetTextDatum(call->merchant->mch_id), CStringGetTextDatum(call->out_trade_no)},
				   NULL, true, SPI_OK_SELECT);
	return SPI_processed == 1 && strcmp(wxpay_spi_value(0, 1), "t") == 0;
}

/* Whether the order's micropay request may still be on its way. */
static bool
micropay_may_be_in_flight(const WxCall *call)
{
	return order_is(call, "SELECT reverse_after OPERATOR(pg_catalog.>) pg_catalog.now() FROM wxpay.orders"
					" WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2");
}

/*
 * Apply a reverse: the order is REVOKED.  An ORDERNOTEXIST inside the
 * window is not believed yet: the micropay request may arrive after the
 * reverse, so the reverse is repeated until the window has passed.
 */
static bool
apply_reverse(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	if (answer->payment.state == NULL)
		return true;
	if (wxpay_list_is(&answer->fields, "err_code", "ORDERNOTEXIST") && micropay_may_be_in_flight(call))
	{
		wxpay_fail_remote(fail, call->endpoint->path, "ORDERNOTEXIST",
						  wxpay_list_get(&answer->fields, "err_code_des"));
		fail->hint = "The micropay request may still be on its way; the reverse is repeated.";
		return false;
	}
	if (wxpay_apply_payment_answer(call, answer, fail))
		return true;
	/* Paid here meanwhile (a query of the till's): WeChat Pay returned the money. */
	if (order_is(call, "SELECT wxpay.order_state_paid(state) FROM wxpay.orders"
				 " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2"))
		ereport(WARNING,
				(errmsg("micropay order %s of merchant %s is paid here, but WeChat Pay reversed it",
						call->out_trade_no, call->merchant->mch_id),
				 errdetail("A reverse of a paid order returns the money to the payer."),
				 errhint("Reconcile the order by hand: the payment is no longer with the merchant.")));
	return false;
}

const WxEndpoint wx_endpoint_reverse = {
	.name = "reverse",
	.path = "/secapi/pay/reverse",
	.client_cert = true,
	.source = "reverse",
	.build = wxpay_build_by_out_trade_no,
	.read = read_reverse,
	.apply = apply_reverse,
};

/*--------------------------------------------------------------------
 * The schedule of unsettled micropay orders (the worker, and both steps)
 *--------------------------------------------------------------------
 */

/*
 * After a query or a reverse: when to look next.  Inside the window, every
 * interval (never past its end); once it has passed with the order still
 * unpaid, a reverse at once; a reverse that did not go through again every
 * interval, doubling after ten attempts up to five minutes.
 */
#define MICROPAY_SCHEDULE \
	"UPDATE wxpay.orders SET last_error = $3, last_query_at = pg_catalog.now()," \
	" query_count = query_count OPERATOR(pg_catalog.+) CASE WHEN $4 THEN 0 ELSE 1 END," \
	" reverse_count = reverse_count OPERATOR(pg_catalog.+) CASE WHEN $4 THEN 1 ELSE 0 END," \
	" reverse_requested_at = CASE WHEN reverse_requested_at IS NULL" \
	"   AND reverse_after OPERATOR(pg_catalog.<=) pg_catalog.now() THEN pg_catalog.now()" \
	"   ELSE reverse_requested_at END," \
	" next_query_at = CASE" \
	"  WHEN reverse_requested_at IS NULL AND reverse_after OPERATOR(pg_catalog.<=) pg_catalog.now()" \
	"   THEN pg_catalog.now()" \
	"  WHEN reverse_requested_at IS NOT NULL THEN pg_catalog.now() OPERATOR(pg_catalog.+)" \
	"   LEAST(pg_catalog.make_interval(secs => $5 OPERATOR(pg_catalog.*)" \
	"    pg_catalog.power(2, LEAST(GREATEST(reverse_count OPERATOR(pg_catalog.-) 9, 0), 16)))," \
	"    interval '5 minutes')" \
	"  ELSE LEAST(pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $5)," \
	"   reverse_after) END" \
	" WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2" \
	"   AND wxpay.order_state_pending(state)"

/* Record a query (or, reversed, a reverse) of a micropay order and when to look next. */
void
wxpay_micropay_schedule(const char *mch_id, const char *out_trade_no,
						const char *error, bool reversed)
{
	static SPIPlanPtr plan = NULL;
	char		nulls[6] = "     ";
	Datum		values[5];
	char	   *text = error ? pstrdup(error) : NULL;

	if (text)
		wx_utf8_clip(text);
	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(out_trade_no);
	values[2] = wxpay_text_or_null(text, nulls, 2);
	values[3] = BoolGetDatum(reversed);
	values[4] = Float8GetDatum(wxpay_micropay_interval / 1000.0);
	wxpay_spi_exec_plan(&plan, MICROPAY_SCHEDULE, 5,
						(Oid[]) {TEXTOID, TEXTOID, TEXTOID, BOOLOID, FLOAT8OID},
						values, nulls, false, SPI_OK_UPDATE);
}

/*
 * At the worker's start: a micropay order claimed by a worker that died
 * would wait out its lease (a minute and more) while the payer stands at
 * the till; with one worker, every such lease is a dead worker's, so they
 * are all due now.
 */
void
wxpay_micropay_release_leases(void)
{
	wxpay_spi_exec("UPDATE wxpay.orders SET next_query_at = pg_catalog.now()"
				   " WHERE wxpay.order_state_pending(state) AND reverse_after IS NOT NULL"
				   "   AND next_query_at OPERATOR(pg_catalog.>) pg_catalog.now()",
				   0, NULL, NULL, NULL, false, SPI_OK_UPDATE);
}

/*--------------------------------------------------------------------
 * wxpay_micropay
 *--------------------------------------------------------------------
 */

/* auth_code: 18 digits starting 10 to 15.  Never quoted: it is the payer's to spend. */
static void
check_auth_code(const char *auth_code)
{
	if (!wxpay_matches(auth_code, "^1[0-5][0-9]{16}$"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid auth_code"),
				 errdetail("It is not quoted here: a payment code is the payer's to spend."),
				 errhint("auth_code is the 18 digits of the payer's payment code, starting with 10 to 15.")));
}

/* Read and validate the arguments of wxpay_micropay. */
static void
read_micropay_args(FunctionCallInfo fcinfo, WxMicropayArgs *a)
{
	wxpay_require_args(fcinfo, micropay_argnames, lengthof(micropay_argnames));
	a->mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	a->out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	a->total_fee = PG_GETARG_INT32(2);
	a->body = text_to_cstring(PG_GETARG_TEXT_PP(3));
	a->client_ip = text_to_cstring(PG_GETARG_TEXT_PP(4));
	a->auth_code = text_to_cstring(PG_GETARG_TEXT_PP(5));
	if (a->total_fee <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("total_fee must be a positive number of fen, not %d", a->total_fee)));
	wxpay_check_pattern("out_trade_no", a->out_trade_no, WX_OUT_TRADE_NO_PATTERN,
						"Use 1 to 32 characters from 0-9, A-Z, a-z and _-|*@.");
	wxpay_check_text_value("body", a->body, strlen(a->body), WX_BODY_MAX_BYTES);
	wxpay_check_ip(a->client_ip);
	check_auth_code(a->auth_code);
	wxpay_extra_to_list(PG_GETARG_JSONB_P(6), micropay_fields, lengthof(micropay_fields), &a->extra);
}

/* The step's arguments: extra's fields and the fixed ones, flat. */
static Jsonb *
micropay_step_args(const WxMicropayArgs *a)
{
	WxParamList args;

	wxpay_list_init(&args, a->extra.count + 6);
	wxpay_list_append(&args, &a->extra);
	wxpay_list_add_cstr(&args, "mch_id", a->mch_id);
	wxpay_list_add_cstr(&args, "out_trade_no", a->out_trade_no);
	wxpay_list_add_cstr(&args, "total_fee", psprintf("%d", a->total_fee));
	wxpay_list_add_cstr(&args, "body", a->body);
	wxpay_list_add_cstr(&args, "spbill_create_ip", a->client_ip);
	wxpay_list_add_cstr(&args, "auth_code", a->auth_code);
	return wxpay_list_to_jsonb(&args);
}

/* The validated call back from the step's arguments. */
static void
micropay_step_read(Jsonb *jb, WxMicropayArgs *a)
{
	WxParamList args;

	wxpay_list_from_jsonb(jb, &args, "micropay arguments");
	memset(a, 0, sizeof(*a));
	wxpay_list_init(&a->extra, args.count);
	for (int i = 0; i < args.count; i++)
	{
		bool		fixed = false;

		for (size_t j = 0; j < lengthof(micropay_argnames); j++)
			fixed |= strcmp(args.items[i].name, micropay_argnames[j]) == 0;
		if (!fixed)
			wxpay_list_add(&a->extra, args.items[i].name, args.items[i].value, args.items[i].value_len);
	}
	a->mch_id = wxpay_list_get(&args, "mch_id");
	a->out_trade_no = wxpay_list_get(&args, "out_trade_no");
	a->total_fee = pg_strtoint32(wxpay_list_get(&args, "total_fee"));
	a->body = wxpay_list_get(&args, "body");
	a->client_ip = wxpay_list_get(&args, "spbill_create_ip");
	a->auth_code = wxpay_list_get(&args, "auth_code");
}

/*
 * What the order keeps of the payer's code: HMAC-SHA256 under the
 * merchant's API key over the code and the order, so it tells a retry of
 * the same code from another code, and nothing more to anyone without the
 * key (18 digits are too few to hide behind a plain hash).
 */
static char *
auth_code_hmac(const WxMerchant *m, const WxMicropayArgs *a)
{
	WxParamList fields;

	wxpay_list_init(&fields, 3);
	wxpay_list_add_cstr(&fields, "auth_code", a->auth_code);
	wxpay_list_add_cstr(&fields, "mch_id", a->mch_id);
	wxpay_list_add_cstr(&fields, "out_trade_no", a->out_trade_no);
	return wxpay_sign_list(&fields, WX_SIGN_HMAC_SHA256, m->api_key, strlen(m->api_key));
}

#define MICROPAY_EXISTING \
	"SELECT wxpay.order_state_paid(state) AND trade_type OPERATOR(pg_catalog.=) 'MICROPAY'" \
	"  AND total_fee OPERATOR(pg_catalog.=) $3, reverse_requested_at IS NOT NULL" \
	" FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2" \
	" FOR UPDATE"

#define MICROPAY_WINDOW \
	"UPDATE wxpay.orders SET last_error = NULL," \
	" reverse_after = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3)," \
	" next_query_at = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $4)" \
	" WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2"

/*
 * Record the order before anything is sent (or re-enter it for a retry of
 * the identical request), its window starting now.  False when it is paid
 * already: then there is nothing to send.
 */
static bool
record_micropay(const WxMicropayArgs *a, const WxMerchant *m)
{
	Datum		key[4] = {CStringGetTextDatum(a->mch_id), CStringGetTextDatum(a->out_trade_no),
	Int32GetDatum(a->total_fee)};
	WxParamList params;
	WxNewOrder	o;

	wxpay_spi_exec(MICROPAY_EXISTING, 3, (Oid[]) {TEXTOID, TEXTOID, INT4OID}, key, NULL, false,
				   SPI_OK_SELECT);
	if (SPI_processed == 1 && strcmp(wxpay_spi_value(0, 1), "t") == 0)
		return false;
	if (SPI_processed == 1 && strcmp(wxpay_spi_value(0, 2), "t") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("micropay order %s of merchant %s is being reversed", a->out_trade_no, a->mch_id),
				 errhint("A new payment needs a new out_trade_no.")));

	wxpay_list_init(&params, a->extra.count + 1);
	wxpay_list_append(&params, &a->extra);
	wxpay_list_add_cstr(&params, "auth_code_hmac", auth_code_hmac(m, a));
	memset(&o, 0, sizeof(o));
	o.mch_id = a->mch_id;
	o.out_trade_no = a->out_trade_no;
	o.trade_type = "MICROPAY";
	o.body = a->body;
	o.total_fee = a->total_fee;
	o.client_ip = a->client_ip;
	o.attach = wxpay_list_get(&a->extra, "attach");
	o.params = wxpay_list_to_jsonb(&params);
	o.source = "micropay";
	(void) wxpay_order_record(&o);

	key[2] = Float8GetDatum(wxpay_micropay_window / 1000.0);
	key[3] = Float8GetDatum(wxpay_micropay_interval / 1000.0);
	wxpay_spi_exec(MICROPAY_WINDOW, 4, (Oid[]) {TEXTOID, TEXTOID, FLOAT8OID, FLOAT8OID}, key, NULL,
				   false, SPI_OK_UPDATE);
	return true;
}

/* The micropay request: extra's fields, then the required ones. */
static void
build_micropay_request(const WxMicropayArgs *a, WxParamList *req)
{
	wxpay_list_init(req, a->extra.count + 8);
	wxpay_list_append(req, &a->extra);
	wxpay_list_add_cstr(req, "body", a->body);
	wxpay_list_add_cstr(req, "out_trade_no", a->out_trade_no);
	wxpay_list_add_cstr(req, "total_fee", psprintf("%d", a->total_fee));
	wxpay_list_add_cstr(req, "spbill_create_ip", a->client_ip);
	wxpay_list_add_cstr(req, "auth_code", a->auth_code);
}

/* What a micropay call that did not succeed means (see the file header). */
static WxMicropayOutcome
micropay_outcome(const WxFailure *fail)
{
	if (fail->kind != WX_FAIL_REMOTE || wxpay_failure_retryable(fail))
		return MICROPAY_UNKNOWN;
	switch (wxpay_failure_sqlstate(fail))
	{
		case ERRCODE_WXPAY_USER_PAYING:
			return MICROPAY_USERPAYING;
		case ERRCODE_WXPAY_ORDER_PAID:
			return MICROPAY_UNKNOWN;	/* paid: the worker's query records it */
		default:
			return MICROPAY_REFUSED;
	}
}

/* Move the order to state as micropay's answer says (a verified refusal). */
static void
micropay_moves_order(const WxCall *call, const char *state)
{
	WxPaymentReport r;
	char	   *reason;

	memset(&r, 0, sizeof(r));
	r.out_trade_no = call->out_trade_no;
	r.state = state;
	/* Refused when the order settled meanwhile (a query found it paid): it stays so. */
	(void) wxpay_apply_payment(call->merchant->mch_id, &r, "micropay", &reason);
}

/*
 * Record a micropay call that did not succeed: the order's state, the
 * reason, and for an unknown outcome a query at once.
 */
static WxMicropayOutcome
record_micropay_failure(const WxCall *call, const WxFailure *fail)
{
	WxMicropayOutcome outcome = micropay_outcome(fail);
	char	   *text = wxpay_failure_text(fail);

	if (outcome == MICROPAY_USERPAYING)
		micropay_moves_order(call, "USERPAYING");
	else if (outcome == MICROPAY_REFUSED)
		micropay_moves_order(call, fail->err_code && strcmp(fail->err_code, "ORDERREVERSED") == 0 ?
							 "REVOKED" : "CLOSED");
	wx_utf8_clip(text);
	wxpay_spi_exec("UPDATE wxpay.orders SET last_error = $3,"
				   " next_query_at = CASE WHEN $4 THEN pg_catalog.now() ELSE next_query_at END"
				   " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2",
				   4, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, BOOLOID},
				   (Datum[]) {CStringGetTextDatum(call->merchant->mch_id), CStringGetTextDatum(call->out_trade_no),
				   CStringGetTextDatum(text), BoolGetDatum(outcome == MICROPAY_UNKNOWN)},
				   NULL, false, SPI_OK_UPDATE);
	if (outcome == MICROPAY_UNKNOWN)
		wxpay_wake_worker_at_commit();
	return outcome;
}

/*
 * What the till is told: the order as it is now, {"out_trade_no", "state",
 * "total_fee", "transaction_id", "reason"}.  A pending order is reported
 * as pending_as (USERPAYING, UNKNOWN) when given.  In the current context.
 */
static Jsonb *
order_summary(const char *mch_id, const char *out_trade_no, const char *pending_as,
			  const char *reason)
{
	WxParamList out;
	const char *state;

	wxpay_spi_exec("SELECT state, wxpay.order_state_pending(state), total_fee::text, transaction_id"
				   " FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND out_trade_no OPERATOR(pg_catalog.=) $2",
				   2, (Oid[]) {TEXTOID, TEXTOID},
				   (Datum[]) {CStringGetTextDatum(mch_id), CStringGetTextDatum(out_trade_no)},
				   NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "order %s vanished", out_trade_no);
	state = wxpay_spi_value(0, 1);
	if (pending_as != NULL && strcmp(wxpay_spi_value(0, 2), "t") == 0)
		state = pending_as;
	wxpay_list_init(&out, 5);
	wxpay_list_add_cstr(&out, "out_trade_no", out_trade_no);
	wxpay_list_add_cstr(&out, "state", state);
	wxpay_list_add_cstr(&out, "total_fee", wxpay_spi_value(0, 3));
	if (wxpay_spi_value(0, 4) != NULL)
		wxpay_list_add_cstr(&out, "transaction_id", wxpay_spi_value(0, 4));
	if (reason != NULL)
		wxpay_list_add_cstr(&out, "reason", reason);
	return wxpay_list_to_jsonb(&out);
}

/* The state a till is told for an order still pending after outcome. */
static const char *
pending_state_name(WxMicropayOutcome outcome)
{
	return outcome == MICROPAY_USERPAYING ? "USERPAYING" : "UNKNOWN";
}

/*
 * The micropay, in its own process (autonomous.c): record the order and
 * commit, ask WeChat Pay, record the answer and commit.  A refusal is
 * raised after it is recorded.
 */
Jsonb *
wxpay_micropay_step(Jsonb *args, MemoryContext cxt)
{
	WxMicropayArgs a;
	WxCall		call;
	WxParamList req;
	WxHttpRequest http;
	WxHttpResponse resp;
	WxHttpFailure transport;
	WxAnswer	answer;
	WxFailure	fail;
	WxFailure	kept;
	WxMicropayOutcome outcome = MICROPAY_PAID;
	char	   *message;
	Jsonb	   *result;

	micropay_step_read(args, &a);
	wxpay_txn_begin("wxpay: recording a micropay order");
	wxpay_call_init(&call, &wx_endpoint_micropay, wxpay_merchant_find(a.mch_id, cxt));
	if (call.merchant == NULL)
		elog(ERROR, "merchant %s vanished", a.mch_id);
	call.out_trade_no = a.out_trade_no;
	if (!record_micropay(&a, call.merchant))
	{
		MemoryContextSwitchTo(cxt);
		result = order_summary(a.mch_id, a.out_trade_no, NULL, NULL);
		wxpay_step_commit(cxt);
		return result;
	}
	/* The worker takes over if this process dies: it must not sleep through the window. */
	wxpay_wake_worker_at_commit();
	MemoryContextSwitchTo(cxt);
	build_micropay_request(&a, &req);
	call.fields = &req;
	if (!wxpay_endpoint_request(&call, &http, &fail))
		wxpay_raise_failure(&fail, a.mch_id, call.endpoint->path);
	transport = wxpay_step_exchange(&http, &resp, &message, cxt, "wxpay: recording the micropay answer");
	memset(&kept, 0, sizeof(kept));
	if (!wxpay_endpoint_finish(&call, transport, message, &resp, &answer, &fail))
	{
		outcome = record_micropay_failure(&call, &fail);
		wxpay_failure_copy(&kept, &fail, cxt);
	}
	MemoryContextSwitchTo(cxt);
	result = order_summary(a.mch_id, a.out_trade_no, pending_state_name(outcome),
						   kept.message ? wxpay_failure_text(&kept) : NULL);
	wxpay_step_commit(cxt);
	if (outcome == MICROPAY_REFUSED)
		wxpay_raise_failure(&kept, a.mch_id, http.url);
	return result;
}

/*
 * wxpay_micropay(mch_id, out_trade_no, total_fee, body, spbill_create_ip,
 *				  auth_code, extra) -> jsonb
 *
 * Validated here, as the caller; recorded and sent by the autonomous step,
 * as the extension's owner.  The merchant needs its client certificate
 * before anything is recorded: an unsettled payment is reversed with it.
 */
Datum
wxpay_micropay(PG_FUNCTION_ARGS)
{
	WxMicropayArgs a;
	WxCall		call;
	WxFailure	fail;

	read_micropay_args(fcinfo, &a);
	SPI_connect();
	/* micropay first, so that a v3 merchant hears of micropay, not reverse */
	wxpay_call_init(&call, &wx_endpoint_micropay, wxpay_merchant_get(a.mch_id, CurrentMemoryContext));
	if (!wxpay_endpoint_usable(&call, &fail))
		wxpay_raise_failure(&fail, a.mch_id, call.endpoint->path);
	call.endpoint = &wx_endpoint_reverse;
	if (!wxpay_endpoint_usable(&call, &fail))
		wxpay_raise_failure(&fail, a.mch_id, call.endpoint->path);
	SPI_finish();
	PG_RETURN_JSONB_P(wxpay_run_autonomous("micropay", micropay_step_args(&a), GetUserId()));
}

/*--------------------------------------------------------------------
 * wxpay_reverse
 *--------------------------------------------------------------------
 */

#define REVERSE_REQUEST \
	"UPDATE wxpay.orders SET reverse_requested_at = COALESCE(reverse_requested_at, pg_catalog.now())," \
	" next_query_at = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3)" \
	" WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_trade_no OPERATOR(pg_catalog.=) $2"

/*
 * Lock the order, check that it can be reversed, and record that it is
 * (the worker repeats the reverse should this process die); the worker
 * leaves it alone while this request is in flight.  False when it is
 * already reversed or closed: nothing to send.
 */
static bool
request_reverse(const char *mch_id, const char *out_trade_no)
{
	Datum		key[3] = {CStringGetTextDatum(mch_id), CStringGetTextDatum(out_trade_no),
	Float8GetDatum((wxpay_http_timeout + wxpay_micropay_interval) / 1000.0)};
	const char *trade_type;

	wxpay_spi_exec("SELECT trade_type, wxpay.order_state_paid(state), wxpay.order_state_pending(state)"
				   " FROM wxpay.orders WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND out_trade_no OPERATOR(pg_catalog.=) $2 FOR UPDATE",
				   2, (Oid[]) {TEXTOID, TEXTOID}, key, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown order %s of merchant %s", out_trade_no, mch_id)));
	trade_type = wxpay_spi_value(0, 1);
	if (strcmp(trade_type, "MICROPAY") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s is not a micropay order (trade_type %s): only micropay orders are reversed",
						out_trade_no, mch_id, trade_type),
				 errhint("Close it with wxpay_closeorder.")));
	if (strcmp(wxpay_spi_value(0, 2), "t") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("order %s of merchant %s is paid and is not reversed", out_trade_no, mch_id),
				 errhint("Refund it with wxpay_refund.")));
	if (strcmp(wxpay_spi_value(0, 3), "t") != 0)
		return false;
	wxpay_spi_exec(REVERSE_REQUEST, 3, (Oid[]) {TEXTOID, TEXTOID, FLOAT8OID}, key, NULL, false,
				   SPI_OK_UPDATE);
	return true;
}

/*
 * The reverse, in its own process: record that it is asked for and
 * commit, ask WeChat Pay, record the answer and commit.  Whatever did not
 * go through (recall=Y, no answer) the worker repeats.
 */
Jsonb *
wxpay_reverse_step(Jsonb *args, MemoryContext cxt)
{
	WxParamList a;
	const char *mch_id;
	const char *out_trade_no;
	WxCall		call;
	WxHttpRequest http;
	WxHttpResponse resp;
	WxHttpFailure transport;
	WxAnswer	answer;
	WxFailure	fail;
	char	   *message;
	const char *error = NULL;
	Jsonb	   *result;

	wxpay_list_from_jsonb(args, &a, "reverse arguments");
	mch_id = wxpay_list_get(&a, "mch_id");
	out_trade_no = wxpay_list_get(&a, "out_trade_no");
	wxpay_txn_begin("wxpay: recording a reverse");
	wxpay_call_init(&call, &wx_endpoint_reverse, wxpay_merchant_find(mch_id, cxt));
	if (call.merchant == NULL)
		elog(ERROR, "merchant %s vanished", mch_id);
	call.out_trade_no = out_trade_no;
	if (!request_reverse(mch_id, out_trade_no))
	{
		MemoryContextSwitchTo(cxt);
		result = order_summary(mch_id, out_trade_no, NULL, NULL);
		wxpay_step_commit(cxt);
		return result;
	}
	MemoryContextSwitchTo(cxt);
	if (!wxpay_endpoint_request(&call, &http, &fail))
		wxpay_raise_failure(&fail, mch_id, call.endpoint->path);
	transport = wxpay_step_exchange(&http, &resp, &message, cxt, "wxpay: recording the reverse's answer");
	if (!wxpay_endpoint_finish(&call, transport, message, &resp, &answer, &fail))
		error = MemoryContextStrdup(cxt, wxpay_failure_text(&fail));
	else if (answer.payment.state == NULL)
		error = "WeChat Pay asks for the reverse again (recall=Y)";
	wxpay_micropay_schedule(mch_id, out_trade_no, error, true);
	wxpay_wake_worker_at_commit();
	MemoryContextSwitchTo(cxt);
	result = order_summary(mch_id, out_trade_no, NULL, error);
	wxpay_step_commit(cxt);
	return result;
}

/*
 * wxpay_reverse(mch_id text, out_trade_no text) -> jsonb
 *
 * The till cancels an unpaid micropay order: {"state": "REVOKED", ...}
 * once WeChat Pay has reversed it; any other state means the worker
 * repeats the reverse ("reason" says why it did not go through yet).
 */
Datum
wxpay_reverse(PG_FUNCTION_ARGS)
{
	char	   *mch_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *out_trade_no = text_to_cstring(PG_GETARG_TEXT_PP(1));
	WxCall		call;
	WxFailure	fail;
	WxParamList args;

	wxpay_check_pattern("out_trade_no", out_trade_no, WX_OUT_TRADE_NO_PATTERN,
						"Use the out_trade_no given to wxpay_micropay.");
	SPI_connect();
	wxpay_call_init(&call, &wx_endpoint_reverse, wxpay_merchant_get(mch_id, CurrentMemoryContext));
	if (!wxpay_endpoint_usable(&call, &fail))
		wxpay_raise_failure(&fail, mch_id, call.endpoint->path);
	SPI_finish();
	wxpay_list_init(&args, 2);
	wxpay_list_add_cstr(&args, "mch_id", mch_id);
	wxpay_list_add_cstr(&args, "out_trade_no", out_trade_no);
	PG_RETURN_JSONB_P(wxpay_run_autonomous("reverse", wxpay_list_to_jsonb(&args), GetUserId()));
}
