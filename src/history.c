/*
 * history.c
 *	  Who writes the history tables, and what each row says of its writer.
 *
 * wxpay.order_events, wxpay.refund_events and wxpay.notifications are the
 * audit trail.  Their rows are written only by the extension: by the
 * SECURITY DEFINER triggers on orders and refunds and by the notification
 * handlers, which all run as the extension's owner.  history_guard refuses
 * every other writer, whatever it was granted, so an operator allowed to
 * UPDATE orders cannot also write "NOTPAY -> SUCCESS, source notify".
 *
 * The actor of a change (db_user) is the role the session acts as (its
 * SET ROLE), not the definer; an autonomous step acts for the role that
 * called it.  A restore is a superuser session with check_function_bodies
 * off (what every pg_dump script and pg_restore sets, and nothing else
 * does) writing outside the extension's functions: it may insert rows in
 * any state (the dump carries their history), which nobody else may.
 *
 * history_record is the AFTER trigger on orders and refunds that writes
 * their history: one row per new row and per change of state, with the
 * change's source, its actor and the transaction.  It is C, not PL/pgSQL,
 * because every unified order, notification and worker answer runs it.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "history.h"
#include "spi_util.h"
#include "wxpay.h"

PG_FUNCTION_INFO_V1(wxpay_change_actor);
PG_FUNCTION_INFO_V1(wxpay_change_is_restore);
PG_FUNCTION_INFO_V1(wxpay_history_guard);
PG_FUNCTION_INFO_V1(wxpay_history_record);

/* The role an autonomous step acts for; InvalidOid in any other process. */
static Oid	change_actor = InvalidOid;

/* Record, for this process, that its changes are made for role. */
void
wxpay_set_change_actor(Oid role)
{
	change_actor = role;
}

/* The role a change is made for. */
static Oid
actor_role(void)
{
	return OidIsValid(change_actor) ? change_actor : GetOuterUserId();
}

/* The name of the role a change is made for. */
static const char *
actor_name(void)
{
	char	   *name = GetUserNameFromId(actor_role(), true);

	return name ? name : "(dropped role)";
}

/* The owner of extension wxpay, looked up once per process. */
static Oid
extension_owner(void)
{
	static Oid	owner = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;

	if (OidIsValid(owner))
		return owner;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("wxpay"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

/*
 * wxpay.change_actor() -> text
 *
 * The name of the role a change is made for, for db_user.
 */
Datum
wxpay_change_actor(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(actor_name()));
}

/*
 * wxpay.change_is_restore() -> boolean
 *
 * Whether the row being written comes from a restore: a superuser session
 * with check_function_bodies off, writing outside the extension's own
 * functions.
 */
Datum
wxpay_change_is_restore(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(wxpay_change_is_restore_now());
}

/* The same, for C callers. */
bool
wxpay_change_is_restore_now(void)
{
	return !check_function_bodies && wxpay_change_source_name() == NULL &&
		superuser_arg(GetOuterUserId());
}

/*
 * wxpay.history_guard() -> trigger, BEFORE INSERT FOR EACH ROW
 *
 * Lets only the extension (its owner, through its SECURITY DEFINER
 * triggers and functions) and superusers write history rows.
 */
Datum
wxpay_history_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			writer = GetUserId();

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "wxpay.history_guard() must be a BEFORE ... FOR EACH ROW trigger");
	if (!superuser_arg(writer) && writer != extension_owner())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only pg_wxpay writes %s: role \"%s\" may not",
						RelationGetRelationName(trigdata->tg_relation),
						GetUserNameFromId(GetOuterUserId(), false)),
				 errhint("History is written by the triggers on wxpay.orders and wxpay.refunds; "
						 "change the order or refund itself (UPDATE), and its history follows.")));
	return PointerGetDatum(trigdata->tg_trigtuple);
}

/* What history_record writes for one table. */
typedef struct WxHistoryTable
{
	const char *table;			/* the table whose rows have a history */
	const char *insert;			/* the INSERT of one history row, $1..$8 (or $9) */
	const char *key;			/* the column naming the row */
	const char *id;				/* WeChat Pay's id of the row */
	const char *const *sources;	/* the change sources its history knows */
	bool		with_xid;		/* $9: the writing transaction */
	bool		paid_events;	/* a move to SUCCESS is a paid event */
	SPIPlanPtr	plan;
} WxHistoryTable;

static const char *const order_sources[] = {"unifiedorder", "micropay", "notify", "query", "close",
"reverse", "refund", NULL};
static const char *const refund_sources[] = {"refund", "notify", "query", NULL};

static WxHistoryTable history_tables[] = {
	{
		.table = "orders",
		.insert = "INSERT INTO wxpay.order_events (mch_id, out_trade_no, old_state, new_state, source,"
		" transaction_id, db_user, created_at, xid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		.key = "out_trade_no",.id = "transaction_id",.sources = order_sources,
		.with_xid = true,.paid_events = true,
	},
	{
		.table = "refunds",
		.insert = "INSERT INTO wxpay.refund_events (mch_id, out_refund_no, old_state, new_state, source,"
		" refund_id, db_user, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		.key = "out_refund_no",.id = "refund_id",.sources = refund_sources,
	},
};

/* The history description of the trigger's table; an ERROR for others. */
static WxHistoryTable *
history_table(Relation rel)
{
	const char *name = RelationGetRelationName(rel);

	for (size_t i = 0; i < lengthof(history_tables); i++)
		if (strcmp(history_tables[i].table, name) == 0)
			return &history_tables[i];
	elog(ERROR, "wxpay.history_record() does not record table \"%s\"", name);
	return NULL;				/* keep the compiler quiet */
}

/* Column name of tuple as a datum, with its null flag in nulls[i]. */
static Datum
history_column(HeapTuple tuple, TupleDesc desc, const char *name, char *nulls, int i)
{
	bool		isnull;
	int			attnum = SPI_fnumber(desc, name);
	Datum		d;

	if (attnum <= 0)
		elog(ERROR, "wxpay.history_record(): no column \"%s\"", name);
	d = heap_getattr(tuple, attnum, desc, &isnull);
	nulls[i] = isnull ? 'n' : ' ';
	return d;
}

/* The source the extension named for this write, if the table knows it. */
static const char *
history_source(const WxHistoryTable *h)
{
	const char *source = wxpay_change_source_name();

	for (const char *const *s = h->sources; source != NULL && *s != NULL; s++)
		if (strcmp(*s, source) == 0)
			return source;
	return "manual";
}

/*
 * wxpay.history_record() -> trigger, AFTER INSERT OR UPDATE FOR EACH ROW on
 * wxpay.orders and wxpay.refunds, SECURITY DEFINER: the history row of a
 * new row or of a change of state (a restored row brings its own).
 */
Datum
wxpay_history_record(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, XID8OID};
	Datum		values[9];
	char		nulls[9];
	bool		update;
	HeapTuple	row;
	TupleDesc	desc;
	WxHistoryTable *h;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "wxpay.history_record() must be an AFTER INSERT OR UPDATE ... FOR EACH ROW trigger");
	h = history_table(trigdata->tg_relation);
	desc = RelationGetDescr(trigdata->tg_relation);
	update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);
	row = update ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	memset(nulls, ' ', sizeof(nulls));
	values[3] = history_column(row, desc, "state", nulls, 3);
	if (update)
	{
		values[2] = history_column(trigdata->tg_trigtuple, desc, "state", nulls, 2);
		if (strcmp(TextDatumGetCString(values[2]), TextDatumGetCString(values[3])) == 0)
			return PointerGetDatum(NULL);	/* no change of state */
	}
	else
	{
		if (wxpay_change_is_restore_now())
			return PointerGetDatum(NULL);
		values[2] = (Datum) 0;
		nulls[2] = 'n';
	}
	values[0] = history_column(row, desc, "mch_id", nulls, 0);
	values[1] = history_column(row, desc, h->key, nulls, 1);
	values[4] = CStringGetTextDatum(history_source(h));
	values[5] = history_column(row, desc, h->id, nulls, 5);
	values[6] = CStringGetTextDatum(actor_name());
	values[7] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[8] = FullTransactionIdGetDatum(GetTopFullTransactionId());

	SPI_connect();
	wxpay_spi_exec_plan(&h->plan, h->insert, h->with_xid ? 9 : 8, types, values, nulls, false,
						SPI_OK_INSERT);
	SPI_finish();
	if (h->paid_events && strcmp(TextDatumGetCString(values[3]), "SUCCESS") == 0)
		wxpay_paid_event_at_commit();
	return PointerGetDatum(NULL);
}
