/*
 * states.c
 *	  The order and refund state lists compiled into the C code, the state
 *	  machines (which state may follow which), and wxpay.state_vocabulary(),
 *	  which shows them to the test that compares them with the SQL
 *	  definitions.
 */
#include "wxpay.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "states.h"

PG_FUNCTION_INFO_V1(wxpay_state_vocabulary);

static const char *const order_states[] = {
	"NOTPAY", "USERPAYING", "PAYERROR", "SUCCESS", "REFUND", "CLOSED", "REVOKED", NULL
};
static const char *const order_pending[] = {"NOTPAY", "USERPAYING", "PAYERROR", NULL};
static const char *const order_paid[] = {"SUCCESS", "REFUND", NULL};
static const char *const refund_states[] = {"PROCESSING", "CHANGE", "SUCCESS", "REFUNDCLOSE", NULL};
static const char *const refund_final[] = {"SUCCESS", "REFUNDCLOSE", NULL};

/*
 * The state machines: the states each state may move to (NULL-terminated).
 * A state with none is final.  Said here and nowhere else; the guard
 * trigger (guard.c) enforces them for every writer.
 */
typedef struct WxMoves
{
	const char *from;
	const char *const to[8];
} WxMoves;

static const WxMoves order_moves[] = {
	{"NOTPAY", {"USERPAYING", "SUCCESS", "CLOSED", "PAYERROR", "REVOKED"}},
	{"USERPAYING", {"NOTPAY", "SUCCESS", "CLOSED", "PAYERROR", "REVOKED"}},
	{"PAYERROR", {"NOTPAY", "USERPAYING", "SUCCESS", "CLOSED", "REVOKED"}},
	{"SUCCESS", {"REFUND"}},
	{"REFUND", {NULL}},
	{"CLOSED", {NULL}},
	{"REVOKED", {NULL}},
	{NULL}
};
static const WxMoves refund_moves[] = {
	{"PROCESSING", {"SUCCESS", "CHANGE", "REFUNDCLOSE"}},
	{"CHANGE", {"SUCCESS", "REFUNDCLOSE"}},
	{"SUCCESS", {NULL}},
	{"REFUNDCLOSE", {NULL}},
	{NULL}
};

/* The states a state of machine may move to, or NULL for no such state. */
static const char *const *
moves_from(const WxMoves *machine, const char *state)
{
	for (; machine->from != NULL; machine++)
		if (strcmp(machine->from, state) == 0)
			return machine->to;
	return NULL;
}

/* The states an order in state may move to (NULL-terminated), or NULL. */
const char *const *
wx_order_moves(const char *state)
{
	return moves_from(order_moves, state);
}

/* The states a refund in state may move to (NULL-terminated), or NULL. */
const char *const *
wx_refund_moves(const char *state)
{
	return moves_from(refund_moves, state);
}

/* Whether state is one of the NULL-terminated list. */
static bool
in_list(const char *const *list, const char *state)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, state) == 0)
			return true;
	return false;
}

/* Whether state is an order state at all. */
bool
wx_order_state_valid(const char *state)
{
	return in_list(order_states, state);
}

/* Unpaid and still payable: the worker follows it. */
bool
wx_order_state_pending(const char *state)
{
	return in_list(order_pending, state);
}

/* Paid (SUCCESS, or REFUND after payment): refundable. */
bool
wx_order_state_paid(const char *state)
{
	return in_list(order_paid, state);
}

/* Whether state is a refund state at all. */
bool
wx_refund_state_valid(const char *state)
{
	return in_list(refund_states, state);
}

/* A settled refund: nothing moves it again. */
bool
wx_refund_state_final(const char *state)
{
	return in_list(refund_final, state);
}

/* A NULL-terminated list of states as a JSON array, into buf. */
void
wx_states_json(StringInfo buf, const char *const *list)
{
	appendStringInfoChar(buf, '[');
	for (int i = 0; list[i] != NULL; i++)
		appendStringInfo(buf, "%s\"%s\"", i > 0 ? ", " : "", list[i]);
	appendStringInfoChar(buf, ']');
}

/* A list as a member "name": [...] of a JSON object, into buf. */
static void
append_list(StringInfo buf, const char *name, const char *const *list)
{
	appendStringInfo(buf, "%s\"%s\": ", buf->len > 1 ? ", " : "", name);
	wx_states_json(buf, list);
}

/* A machine as a member "name": {"from": [...], ...} of a JSON object. */
static void
append_moves(StringInfo buf, const char *name, const WxMoves *machine)
{
	appendStringInfo(buf, ", \"%s\": {", name);
	for (int i = 0; machine[i].from != NULL; i++)
	{
		appendStringInfo(buf, "%s\"%s\": ", i > 0 ? ", " : "", machine[i].from);
		wx_states_json(buf, machine[i].to);
	}
	appendStringInfoChar(buf, '}');
}

/*
 * wxpay.state_vocabulary() -> jsonb: {"order_states": [...], ...}
 */
Datum
wxpay_state_vocabulary(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	append_list(&buf, "order_states", order_states);
	append_list(&buf, "order_pending", order_pending);
	append_list(&buf, "order_paid", order_paid);
	append_list(&buf, "refund_states", refund_states);
	append_list(&buf, "refund_final", refund_final);
	append_moves(&buf, "order_moves", order_moves);
	append_moves(&buf, "refund_moves", refund_moves);
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
