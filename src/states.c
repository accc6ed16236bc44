/*
 * states.c
 *	  The order and refund state lists compiled into the C code, and
 *	  wxpay.state_vocabulary(), which shows them to the test that compares
 *	  them with the SQL definitions.
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

/* A list as a JSON array, into buf. */
static void
append_list(StringInfo buf, const char *name, const char *const *list)
{
	appendStringInfo(buf, "%s\"%s\": [", buf->len > 1 ? ", " : "", name);
	for (int i = 0; list[i] != NULL; i++)
		appendStringInfo(buf, "%s\"%s\"", i > 0 ? ", " : "", list[i]);
	appendStringInfoChar(buf, ']');
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
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
