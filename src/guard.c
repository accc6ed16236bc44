/*
 * guard.c
 *	  wxpay.state_guard(), the BEFORE INSERT OR UPDATE trigger of
 *	  wxpay.orders and wxpay.refunds: one state machine rule for every
 *	  writer, described once per table (WxGuardedTable) instead of in two
 *	  PL/pgSQL functions that said the same thing twice.
 *
 * A new row starts in its table's first state with nothing of a later
 * state set, unless it is being restored (history.c); the columns that
 * name the row and its amount never change; the ids WeChat Pay assigns
 * never change once set; the state moves only along its machine (states.c)
 * and is always a state of the vocabulary; a paid order has its
 * transaction.  It also stamps updated_at, and a row that reaches a settled
 * state drops the last_error of earlier attempts (a lost answer, say):
 * whatever settled it (a verified answer, a notification, either protocol)
 * has the last word, unless the same statement writes last_error itself (a
 * refusal that closes a refund).  Written in C because it runs on every
 * write of the hot paths: a unified order writes its order twice.
 *
 * It also keeps the rules on a row's own columns that were CHECK
 * constraints (WxRowRule), under their constraint names: PostgreSQL reads
 * and prepares every CHECK expression again for each statement that writes
 * the table, which was a quarter of the database work of a unified order.
 * A rule on columns that never change is checked when the row is new.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "args.h"
#include "history.h"
#include "states.h"

PG_FUNCTION_INFO_V1(wxpay_state_guard);

/* A rule on a row's own columns, reported as the CHECK constraint it was. */
typedef struct WxRowRule
{
	const char *constraint;		/* the name it is reported under */
	bool		(*holds) (TupleDesc desc, HeapTuple row);	/* NULL columns pass */
	const char *requires;		/* what it requires, for the DETAIL */
	bool		on_change;		/* its columns may change: checked on UPDATE too */
} WxRowRule;

/* What the guard knows of one table. */
typedef struct WxGuardedTable
{
	const char *table;			/* relation name, in schema wxpay */
	const char *noun;			/* "order": names a row in messages */
	const char *key;			/* the column that names it: out_trade_no */
	const char *first_state;	/* where every new row starts */
	const char *first_message;	/* the error of a new row that does not */
	const char *const *unset_when_new;	/* NULL in a new row (not restored) */
	const char *const *fixed;	/* never change */
	const char *fixed_hint;
	const char *const *set_once;	/* never change once set */
	const char *const *(*moves) (const char *state);	/* the machine */
	bool		(*valid) (const char *state);	/* the vocabulary */
	const char *valid_constraint;
	bool		(*paid) (const char *state);	/* states that need paid_columns */
	const char *const *paid_columns;
	const char *paid_constraint;
	bool		(*settled) (const char *state);	/* nothing follows it any more */
	const WxRowRule *rules;		/* ends with a NULL constraint */
} WxGuardedTable;

/*
 * A row rule (below) on columns of these fixed lists is checked for new
 * rows only (on_change false): a column taken off a list needs its rule's
 * on_change set.
 */
static const char *const order_unset[] = {"transaction_id", "paid_at", NULL};
static const char *const order_fixed[] = {"mch_id", "out_trade_no", "total_fee", "trade_type", "body", NULL};
static const char *const order_set_once[] = {"transaction_id", "paid_at", NULL};
static const char *const refund_fixed[] = {"mch_id", "out_refund_no", "out_trade_no", "refund_fee",
"total_fee", "params", NULL};
static const char *const refund_set_once[] = {"refund_id", NULL};
static const char *const nothing[] = {NULL};

/* Column name of tuple: its value, and whether it is NULL. */
static Datum
column(HeapTuple tuple, TupleDesc desc, const char *name, bool *isnull)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		elog(ERROR, "wxpay.state_guard(): no column \"%s\"", name);
	return heap_getattr(tuple, attnum, desc, isnull);
}

/* Column name of tuple as a C string, or NULL. */
static char *
column_text(HeapTuple tuple, TupleDesc desc, const char *name)
{
	bool		isnull;
	Datum		d = column(tuple, desc, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Whether column name has the same value (or NULL) in both tuples. */
static bool
column_same(HeapTuple a, HeapTuple b, TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
	bool		anull;
	bool		bnull;
	Datum		ad = column(a, desc, name, &anull);
	Datum		bd = column(b, desc, name, &bnull);

	if (anull || bnull)
		return anull == bnull;
	return datum_image_eq(ad, bd, att->attbyval, att->attlen);
}

/* Whether column name of row is not NULL; its value goes to *value. */
static bool
column_int(HeapTuple row, TupleDesc desc, const char *name, int32 *value)
{
	bool		isnull;
	Datum		d = column(row, desc, name, &isnull);

	if (!isnull)
		*value = DatumGetInt32(d);
	return !isnull;
}

/* Whether column name of row matches pattern (or is NULL). */
static bool
column_matches(HeapTuple row, TupleDesc desc, const char *name, const char *pattern)
{
	char	   *value = column_text(row, desc, name);

	return value == NULL || wxpay_matches(value, pattern);
}

/* Whether column name of row is positive (or NULL). */
static bool
column_positive(HeapTuple row, TupleDesc desc, const char *name)
{
	int32		value;

	return !column_int(row, desc, name, &value) || value > 0;
}

/* orders_out_trade_no_format */
static bool
order_number_format(TupleDesc desc, HeapTuple row)
{
	return column_matches(row, desc, "out_trade_no", WX_OUT_TRADE_NO_PATTERN);
}

/* orders_trade_type_valid: what wxpay_unifiedorder sends, or MICROPAY. */
static bool
order_trade_type_valid(TupleDesc desc, HeapTuple row)
{
	char	   *trade_type = column_text(row, desc, "trade_type");

	return trade_type == NULL || strcmp(trade_type, "MICROPAY") == 0 ||
		wxpay_matches(trade_type, WX_UNIFIEDORDER_TRADE_TYPES);
}

/* orders_body_length */
static bool
order_body_length(TupleDesc desc, HeapTuple row)
{
	bool		isnull;
	Datum		body = column(row, desc, "body", &isnull);
	Size		len;

	if (isnull)
		return true;
	len = toast_raw_datum_size(body) - VARHDRSZ;	/* octet_length's count */
	return len > 0 && len <= WX_BODY_MAX_BYTES;
}

/* orders_total_fee_positive, refunds_total_fee_positive */
static bool
total_fee_positive(TupleDesc desc, HeapTuple row)
{
	return column_positive(row, desc, "total_fee");
}

/* orders_reverse_only_micropay: only a micropay order has a reversal window. */
static bool
order_reverse_only_micropay(TupleDesc desc, HeapTuple row)
{
	bool		after_null;
	bool		requested_null;
	char	   *trade_type;

	/* Nearly every row has neither: no need to read its trade_type. */
	(void) column(row, desc, "reverse_after", &after_null);
	(void) column(row, desc, "reverse_requested_at", &requested_null);
	if (after_null && requested_null)
		return true;
	trade_type = column_text(row, desc, "trade_type");
	return trade_type == NULL || strcmp(trade_type, "MICROPAY") == 0;
}

/* refunds_out_refund_no_format */
static bool
refund_number_format(TupleDesc desc, HeapTuple row)
{
	return column_matches(row, desc, "out_refund_no", WX_OUT_REFUND_NO_PATTERN);
}

/* refunds_refund_fee_positive */
static bool
refund_fee_positive(TupleDesc desc, HeapTuple row)
{
	return column_positive(row, desc, "refund_fee");
}

/* refunds_within_total: a refund returns at most what was paid. */
static bool
refund_within_total(TupleDesc desc, HeapTuple row)
{
	int32		refund_fee;
	int32		total_fee;

	return !column_int(row, desc, "refund_fee", &refund_fee) ||
		!column_int(row, desc, "total_fee", &total_fee) || refund_fee <= total_fee;
}

static const WxRowRule order_rules[] = {
	{"orders_out_trade_no_format", order_number_format,
	"out_trade_no must be 1 to 32 letters, digits or _-|*@.", false},
	{"orders_trade_type_valid", order_trade_type_valid,
	"trade_type must be APP, JSAPI, NATIVE, MWEB or MICROPAY.", false},
	{"orders_body_length", order_body_length,
	"body must be 1 to " CppAsString2(WX_BODY_MAX_BYTES) " bytes.", false},
	{"orders_total_fee_positive", total_fee_positive, "total_fee must be a positive number of fen.", false},
	{"orders_reverse_only_micropay", order_reverse_only_micropay,
	"Only a MICROPAY order has reverse_after or reverse_requested_at.", true},
	{NULL}
};

static const WxRowRule refund_rules[] = {
	{"refunds_out_refund_no_format", refund_number_format,
	"out_refund_no must be 1 to 64 letters, digits or _-|*@.", false},
	{"refunds_refund_fee_positive", refund_fee_positive, "refund_fee must be a positive number of fen.", false},
	{"refunds_total_fee_positive", total_fee_positive, "total_fee must be a positive number of fen.", false},
	{"refunds_within_total", refund_within_total, "refund_fee must not exceed total_fee.", false},
	{NULL}
};

/* An order nobody follows any more: paid, closed or revoked. */
static bool
order_settled(const char *state)
{
	return !wx_order_state_pending(state);
}

static const WxGuardedTable guarded_tables[] = {
	{
		.table = "orders",.noun = "order",.key = "out_trade_no",
		.first_state = "NOTPAY",.first_message = "a new order must start unpaid, in state NOTPAY",
		.unset_when_new = order_unset,.fixed = order_fixed,
		.fixed_hint = "A different amount or description needs a new out_trade_no.",
		.set_once = order_set_once,.moves = wx_order_moves,
		.valid = wx_order_state_valid,.valid_constraint = "orders_state_valid",
		.paid = wx_order_state_paid,.paid_columns = order_set_once,
		.paid_constraint = "orders_paid_has_transaction",
		.settled = order_settled,.rules = order_rules,
	},
	{
		.table = "refunds",.noun = "refund",.key = "out_refund_no",
		.first_state = "PROCESSING",.first_message = "a new refund must start in state PROCESSING",
		.unset_when_new = nothing,.fixed = refund_fixed,
		.fixed_hint = "A different refund needs a new out_refund_no.",
		.set_once = refund_set_once,.moves = wx_refund_moves,
		.valid = wx_refund_state_valid,.valid_constraint = "refunds_state_valid",
		.settled = wx_refund_state_final,.rules = refund_rules,
	},
};

/* The description of the trigger's table; an ERROR for any other table. */
static const WxGuardedTable *
guarded_table(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	for (size_t i = 0; i < lengthof(guarded_tables); i++)
		if (strcmp(guarded_tables[i].table, name) == 0)
			return &guarded_tables[i];
	elog(ERROR, "wxpay.state_guard() does not guard table \"%s\"", name);
	return NULL;				/* keep the compiler quiet */
}

/* The CHECK-like rules: a state of the vocabulary; a paid order's columns. */
static void
check_state(const WxGuardedTable *t, Relation rel, HeapTuple row, const char *state)
{
	char	   *key = column_text(row, RelationGetDescr(rel), t->key);

	if (!t->valid(state))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("state %s of %s %s is not one of wxpay.%s_states()", state, t->noun, key, t->noun),
				 errtableconstraint(rel, t->valid_constraint)));
	if (t->paid != NULL && t->paid(state))
		for (const char *const *c = t->paid_columns; *c != NULL; c++)
		{
			bool		isnull;

			(void) column(row, RelationGetDescr(rel), *c, &isnull);
			if (isnull)
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("%s %s is %s but has no %s", t->noun, key, state, *c),
						 errtableconstraint(rel, t->paid_constraint)));
		}
}

/* The row rules of t that row keeps: all of them, or those on_change. */
static void
check_rules(const WxGuardedTable *t, Relation rel, HeapTuple row, bool changed)
{
	for (const WxRowRule *r = t->rules; r != NULL && r->constraint != NULL; r++)
		if ((!changed || r->on_change) && !r->holds(RelationGetDescr(rel), row))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
							RelationGetRelationName(rel), r->constraint),
					 errdetail("%s", r->requires),
					 errtableconstraint(rel, r->constraint)));
}

/* A new row: its first state, unless restored. */
static void
check_new(const WxGuardedTable *t, Relation rel, HeapTuple row)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *state = column_text(row, desc, "state");
	bool		fresh = state == NULL || strcmp(state, t->first_state) == 0;	/* NULL: NOT NULL says so */

	for (const char *const *c = t->unset_when_new; fresh && *c != NULL; c++)
	{
		bool		isnull;

		(void) column(row, desc, *c, &isnull);
		fresh = isnull;
	}
	if (!fresh && !wxpay_change_is_restore_now())
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("%s", t->first_message),
				 errhint("Only a restore (a superuser with check_function_bodies off) writes %ss in other states.",
						 t->noun)));
	if (state != NULL)
		check_state(t, rel, row, state);
	check_rules(t, rel, row, false);
}

/* A changed row: fixed columns, set-once columns, the state machine. */
static void
check_change(const WxGuardedTable *t, Relation rel, HeapTuple old, HeapTuple new)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *key = column_text(old, desc, t->key);
	char	   *from = column_text(old, desc, "state");
	char	   *to = column_text(new, desc, "state");

	for (const char *const *c = t->fixed; *c != NULL; c++)
		if (!column_same(old, new, desc, *c))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("%s of %s %s never changes", *c, t->noun, key),
					 errhint("%s", t->fixed_hint)));
	for (const char *const *c = t->set_once; *c != NULL; c++)
	{
		bool		was_null;

		(void) column(old, desc, *c, &was_null);
		if (!was_null && !column_same(old, new, desc, *c))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("%s of %s %s never changes once set", *c, t->noun, key)));
	}
	check_rules(t, rel, new, true);
	if (to == NULL)
		return;					/* NOT NULL says so */
	if (strcmp(from, to) != 0)
	{
		const char *const *allowed = t->moves(from);
		bool		ok = false;

		for (const char *const *s = allowed; s != NULL && *s != NULL; s++)
			ok |= strcmp(*s, to) == 0;
		if (!ok)
		{
			StringInfoData hint;

			initStringInfo(&hint);
			if (allowed == NULL || allowed[0] == NULL)
				appendStringInfo(&hint, "%s is final.", from);
			else
			{
				appendStringInfoString(&hint, "Allowed: ");
				wx_states_json(&hint, allowed);
			}
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("%s %s cannot go from %s to %s", t->noun, key, from, to),
					 errhint("%s", hint.data)));
		}
	}
	check_state(t, rel, new, to);
}

/*
 * Whether an update settles the row (its state moves to a settled one)
 * without writing last_error itself: then the error of an earlier attempt
 * no longer describes it.
 */
static bool
settles_with_stale_error(const WxGuardedTable *t, TupleDesc desc, HeapTuple old, HeapTuple new)
{
	char	   *from;
	char	   *to;
	bool		isnull;

	/* Most rows have no error: the hot paths stop here. */
	(void) column(old, desc, "last_error", &isnull);
	if (isnull)
		return false;
	from = column_text(old, desc, "state");
	to = column_text(new, desc, "state");
	return to != NULL && strcmp(from, to) != 0 && t->settled(to) &&
		column_same(old, new, desc, "last_error");
}

/*
 * wxpay.state_guard() -> trigger, BEFORE INSERT OR UPDATE FOR EACH ROW on
 * wxpay.orders and wxpay.refunds.
 */
Datum
wxpay_state_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const WxGuardedTable *t;
	Relation	rel;
	TupleDesc	desc;
	int			attnums[2];
	Datum		values[2];
	bool		nulls[2] = {false, true};

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "wxpay.state_guard() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger");
	rel = trigdata->tg_relation;
	t = guarded_table(rel);
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		check_new(t, rel, trigdata->tg_trigtuple);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	check_change(t, rel, trigdata->tg_trigtuple, trigdata->tg_newtuple);
	desc = RelationGetDescr(rel);
	attnums[0] = SPI_fnumber(desc, "updated_at");
	values[0] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	attnums[1] = SPI_fnumber(desc, "last_error");
	values[1] = (Datum) 0;
	return PointerGetDatum(heap_modify_tuple_by_cols(trigdata->tg_newtuple, desc,
													 settles_with_stale_error(t, desc, trigdata->tg_trigtuple,
																			  trigdata->tg_newtuple) ? 2 : 1,
													 attnums, values, nulls));
}
