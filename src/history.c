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
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "history.h"

PG_FUNCTION_INFO_V1(wxpay_change_actor);
PG_FUNCTION_INFO_V1(wxpay_change_is_restore);
PG_FUNCTION_INFO_V1(wxpay_history_guard);

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
	char	   *name = GetUserNameFromId(actor_role(), true);

	PG_RETURN_TEXT_P(cstring_to_text(name ? name : "(dropped role)"));
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
	PG_RETURN_BOOL(!check_function_bodies && wxpay_change_source_name() == NULL &&
				   superuser_arg(GetOuterUserId()));
}

/*
 * wxpay.history_guard([hint]) -> trigger, BEFORE INSERT (or UPDATE, DELETE),
 * FOR EACH ROW or FOR EACH STATEMENT
 *
 * Lets only the extension (its owner, through its SECURITY DEFINER
 * triggers and functions) and superusers write history rows.  Tables
 * loaded in bulk (the bills) use it per statement, which keeps COPY's
 * batched inserts; the argument, if any, is the hint that says who writes
 * the table.
 */
Datum
wxpay_history_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			writer = GetUserId();

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "wxpay.history_guard() must be a BEFORE trigger");
	if (!superuser_arg(writer) && writer != extension_owner())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only pg_wxpay writes %s: role \"%s\" may not",
						RelationGetRelationName(trigdata->tg_relation),
						GetUserNameFromId(GetOuterUserId(), false)),
				 trigdata->tg_trigger->tgnargs > 0 ?
				 errhint("%s", trigdata->tg_trigger->tgargs[0]) :
				 errhint("History is written by the triggers on wxpay.orders and wxpay.refunds; "
						 "change the order or refund itself (UPDATE), and its history follows.")));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		return PointerGetDatum(NULL);
	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
						   trigdata->tg_newtuple : trigdata->tg_trigtuple);
}
