/*
 * merchant.c
 *	  Loading merchants from wxpay.merchants, and who may act for them.
 *
 * Every notification, unified order and worker answer loads its merchant,
 * and merchants change rarely, so a backend keeps the rows it loaded (the
 * merchant cache) and forgets them all whenever wxpay.merchants or
 * wxpay.merchant_v3 changes: their statement triggers (merchant_changed)
 * queue a relcache invalidation of the table written, which every backend
 * receives once the change commits, and the writing backend at its next
 * command or at rollback.  Whether the caller may act for the merchant is
 * decided at every call from the cached role list.  The cache is used only
 * under READ COMMITTED (a REPEATABLE READ transaction reads its merchants
 * as its snapshot has them, each time) and only while both triggers exist
 * and fire always; a schema without them (1.0) reads the table each time.
 */
#include "wxpay.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "spi_util.h"

PG_FUNCTION_INFO_V1(wxpay_acting_role);
PG_FUNCTION_INFO_V1(wxpay_merchant_allows);
PG_FUNCTION_INFO_V1(wxpay_merchant_require);
PG_FUNCTION_INFO_V1(wxpay_merchant_changed);

/* mch_id is at most 32 characters (wxpay.merchants' CHECK). */
#define MCH_ID_MAX 32
/* Past this many merchants the cache starts again rather than grow. */
#define MERCHANT_CACHE_MAX 1024

/* A cached merchant: the row, and the roles that may act for it. */
typedef struct CachedMerchant
{
	char		mch_id[MCH_ID_MAX + 1]; /* the hash key */
	WxMerchant	row;			/* caller_allowed is decided per call */
	bool		any_role;		/* allowed_role_oids is NULL */
	int			nroles;
	Oid		   *roles;
} CachedMerchant;

typedef enum
{
	CACHE_UNKNOWN,				/* not looked at since the last invalidation */
	CACHE_USABLE,				/* both tables have their invalidation trigger */
	CACHE_UNUSABLE
} MerchantCacheState;

static HTAB *merchant_cache = NULL;
static MemoryContext merchant_cache_cxt = NULL;
static MerchantCacheState cache_state = CACHE_UNKNOWN;
static Oid	cache_relids[2];	/* wxpay.merchants and wxpay.merchant_v3 */
static uint64 cache_generation = 0; /* counts invalidations */

/*
 * The rule of who may act for a merchant, for the functions and every row
 * policy: no list (any_role) allows every role granted EXECUTE; otherwise a
 * member of a listed role that still exists (a dropped role's OID matches
 * nobody); superusers always.
 */
static bool
roles_allow(bool any_role, const Oid *roles, int nroles, Oid role)
{
	if (any_role || superuser_arg(role))
		return true;
	for (int i = 0; i < nroles; i++)
		if (SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(roles[i])) && is_member_of_role(role, roles[i]))
			return true;
	return false;
}

/* The non-null OIDs of an oid[], palloc'd in the current context. */
static Oid *
role_array(ArrayType *array, int *n)
{
	Datum	   *oids;
	bool	   *nulls;
	int			count;
	Oid		   *roles;

	deconstruct_array(array, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &oids, &nulls, &count);
	roles = palloc(sizeof(Oid) * (count + 1));
	*n = 0;
	for (int i = 0; i < count; i++)
		if (!nulls[i])
			roles[(*n)++] = DatumGetObjectId(oids[i]);
	return roles;
}

/* A relcache invalidation of either table, or of every relation, empties the cache. */
static void
merchant_cache_invalidate(Datum arg, Oid relid)
{
	if (relid != InvalidOid && relid != cache_relids[0] && relid != cache_relids[1])
		return;
	cache_generation++;
	cache_state = CACHE_UNKNOWN;
	merchant_cache = NULL;
	if (merchant_cache_cxt != NULL)
		MemoryContextReset(merchant_cache_cxt);
}

/* Whether relid has trigger name, statement-level, firing always on every write. */
static bool
has_invalidation_trigger(Oid relid, const char *name)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TriggerDesc *td = rel->trigdesc;
	bool		found = false;
	int16		events = TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE | TRIGGER_TYPE_DELETE | TRIGGER_TYPE_TRUNCATE;

	for (int i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];

		if (strcmp(t->tgname, name) == 0 && t->tgenabled == TRIGGER_FIRES_ALWAYS &&
			(t->tgtype & events) == events && !TRIGGER_FOR_ROW(t->tgtype) && TRIGGER_FOR_AFTER(t->tgtype))
			found = true;
	}
	table_close(rel, AccessShareLock);
	return found;
}

/* Whether this lookup may use the cache (see the file's header). */
static bool
merchant_cache_usable(const char *mch_id)
{
	static bool registered = false;

	if (IsolationUsesXactSnapshot() || strlen(mch_id) > MCH_ID_MAX)
		return false;
	if (!registered)
	{
		CacheRegisterRelcacheCallback(merchant_cache_invalidate, (Datum) 0);
		merchant_cache_cxt = AllocSetContextCreate(TopMemoryContext, "wxpay merchant cache",
												   ALLOCSET_SMALL_SIZES);
		registered = true;
	}
	if (cache_state == CACHE_UNKNOWN)
	{
		Oid			nsp = get_namespace_oid("wxpay", true);

		cache_relids[0] = OidIsValid(nsp) ? get_relname_relid("merchants", nsp) : InvalidOid;
		cache_relids[1] = OidIsValid(nsp) ? get_relname_relid("merchant_v3", nsp) : InvalidOid;
		cache_state = OidIsValid(cache_relids[0]) && OidIsValid(cache_relids[1]) &&
			has_invalidation_trigger(cache_relids[0], "merchants_changed") &&
			has_invalidation_trigger(cache_relids[1], "merchant_v3_changed") ?
			CACHE_USABLE : CACHE_UNUSABLE;
	}
	return cache_state == CACHE_USABLE;
}

/* A copy of a string, or NULL, in the current context. */
static char *
copy_or_null(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

/* A copy of a merchant row's strings in the current context. */
static WxMerchant *
copy_merchant(const WxMerchant *from)
{
	WxMerchant *m = palloc(sizeof(WxMerchant));

	*m = *from;
	m->mch_id = pstrdup(from->mch_id);
	m->appid = pstrdup(from->appid);
	m->api_key = pstrdup(from->api_key);
	m->notify_url = copy_or_null(from->notify_url);
	m->api_base = copy_or_null(from->api_base);
	m->ca_pem = copy_or_null(from->ca_pem);
	m->cert_pem = copy_or_null(from->cert_pem);
	m->key_pem = copy_or_null(from->key_pem);
	m->apiv3_key = copy_or_null(from->apiv3_key);
	m->serial_no = copy_or_null(from->serial_no);
	return m;
}

/* Keep a merchant just read, unless the cache was invalidated since generation. */
static void
merchant_cache_store(const WxMerchant *m, bool any_role, const Oid *roles, int nroles,
					 uint64 generation)
{
	MemoryContext old;
	CachedMerchant *c;
	bool		found;

	if (generation != cache_generation)
		return;
	if (merchant_cache != NULL && hash_get_num_entries(merchant_cache) >= MERCHANT_CACHE_MAX)
	{
		merchant_cache = NULL;
		MemoryContextReset(merchant_cache_cxt);
	}
	if (merchant_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = MCH_ID_MAX + 1;
		ctl.entrysize = sizeof(CachedMerchant);
		ctl.hcxt = merchant_cache_cxt;
		merchant_cache = hash_create("wxpay merchants", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	old = MemoryContextSwitchTo(merchant_cache_cxt);
	c = hash_search(merchant_cache, m->mch_id, HASH_ENTER, &found);
	c->row = *copy_merchant(m);
	c->any_role = any_role;
	c->nroles = nroles;
	c->roles = palloc(sizeof(Oid) * (nroles + 1));
	memcpy(c->roles, roles, sizeof(Oid) * nroles);
	MemoryContextSwitchTo(old);
}

/*
 * Whether the installed schema is 1.1: it resolves allowed_roles to OIDs
 * and has API v3 merchants (wxpay.merchant_v3); a 1.0 schema, before ALTER
 * EXTENSION UPDATE, still matches by name and has only v2 merchants.
 */
static bool
roles_by_oid(void)
{
	Oid			nsp = get_namespace_oid("wxpay", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("merchants", nsp) : InvalidOid;

	return OidIsValid(rel) && get_attnum(rel, "allowed_role_oids") != InvalidAttrNumber;
}

#define MERCHANT_COLUMNS \
	"SELECT m.mch_id, m.appid, m.api_key, m.sign_type, m.notify_url, m.api_base, m.ca_pem, m.cert_pem, m.key_pem, "

/* The row read by the last SPI query, in the current context. */
static WxMerchant *
merchant_from_spi(bool schema_1_1)
{
	WxMerchant *m = palloc0(sizeof(WxMerchant));
	char	   *sign_type;

	m->mch_id = wxpay_spi_value(0, 1);
	m->appid = wxpay_spi_value(0, 2);
	m->api_key = wxpay_spi_value(0, 3);
	sign_type = wxpay_spi_value(0, 4);
	m->sign_type = wx_sign_type_parse(sign_type, strlen(sign_type));
	m->notify_url = wxpay_spi_value(0, 5);
	m->api_base = wxpay_spi_value(0, 6);
	m->ca_pem = wxpay_spi_value(0, 7);
	m->cert_pem = wxpay_spi_value(0, 8);
	m->key_pem = wxpay_spi_value(0, 9);
	if (schema_1_1)
	{
		m->v3 = strcmp(wxpay_spi_value(0, 11), "v3") == 0;
		m->apiv3_key = wxpay_spi_value(0, 12);
		m->serial_no = wxpay_spi_value(0, 13);
	}
	else
		m->caller_allowed = strcmp(wxpay_spi_value(0, 10), "t") == 0;
	return m;
}

/*
 * Load a merchant from the 1.1 schema into cxt, or NULL if there is none;
 * keep it in the cache if cached.  fresh: read with a snapshot of its own,
 * taken after the cache's generation was noted, so that a change that
 * commits meanwhile either is in the row read or empties the cache after.
 */
static WxMerchant *
merchant_load(const char *mch_id, MemoryContext cxt, bool cached)
{
	static SPIPlanPtr plan = NULL;
	Datum		arg = CStringGetTextDatum(mch_id);
	Oid			argtype = TEXTOID;
	uint64		generation = cache_generation;
	bool		isnull;
	Datum		roles_datum;
	Oid		   *roles = NULL;
	int			nroles = 0;
	WxMerchant *m;
	MemoryContext old;

	wxpay_spi_exec_plan(&plan,
						MERCHANT_COLUMNS "m.allowed_role_oids, m.protocol, v.apiv3_key, v.serial_no"
						" FROM wxpay.merchants m LEFT JOIN wxpay.merchant_v3 v"
						"  ON v.mch_id OPERATOR(pg_catalog.=) m.mch_id"
						" WHERE m.mch_id OPERATOR(pg_catalog.=) $1",
						1, &argtype, &arg, NULL, !cached, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	m = merchant_from_spi(true);
	roles_datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 10, &isnull);
	if (!isnull)
		roles = role_array(DatumGetArrayTypeP(roles_datum), &nroles);
	m->caller_allowed = roles_allow(isnull, roles, nroles, GetOuterUserId());
	MemoryContextSwitchTo(old);
	if (cached)
		merchant_cache_store(m, isnull, roles, nroles, generation);
	return m;
}

/*
 * Load a merchant into cxt, or NULL if there is none.  The caller must be
 * connected to SPI.
 *
 * Inside these SECURITY DEFINER functions current_user is the owner; the
 * caller is the outer user (the session's role, or its SET ROLE).
 */
WxMerchant *
wxpay_merchant_find(const char *mch_id, MemoryContext cxt)
{
	static SPIPlanPtr by_name_plan = NULL;
	Datum		args[2] = {CStringGetTextDatum(mch_id), ObjectIdGetDatum(GetOuterUserId())};
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	CachedMerchant *c;
	WxMerchant *m;
	MemoryContext old;

	if (merchant_cache_usable(mch_id))
	{
		c = merchant_cache ? hash_search(merchant_cache, mch_id, HASH_FIND, NULL) : NULL;
		if (c == NULL)
			return merchant_load(mch_id, cxt, true);
		old = MemoryContextSwitchTo(cxt);
		m = copy_merchant(&c->row);
		MemoryContextSwitchTo(old);
		m->caller_allowed = roles_allow(c->any_role, c->roles, c->nroles, GetOuterUserId());
		return m;
	}
	if (roles_by_oid())
		return merchant_load(mch_id, cxt, false);
	wxpay_spi_exec_plan(&by_name_plan,
						MERCHANT_COLUMNS
						"allowed_roles IS NULL OR EXISTS (SELECT FROM pg_catalog.unnest(allowed_roles) r"
						"  JOIN pg_catalog.pg_roles g ON g.rolname OPERATOR(pg_catalog.=) r"
						"  WHERE pg_catalog.pg_has_role($2, g.oid, 'MEMBER'))"
						" FROM wxpay.merchants m WHERE m.mch_id OPERATOR(pg_catalog.=) $1",
						2, argtypes, args, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	m = merchant_from_spi(false);
	MemoryContextSwitchTo(old);
	return m;
}

/* A merchant the caller may act for, in cxt; anything else is an ERROR. */
WxMerchant *
wxpay_merchant_get(const char *mch_id, MemoryContext cxt)
{
	WxMerchant *m = wxpay_merchant_find(mch_id, cxt);

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown merchant \"%s\"", mch_id),
				 errhint("Merchants are rows of wxpay.merchants.")));
	if (!m->caller_allowed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not act for merchant \"%s\"",
						GetUserNameFromId(GetOuterUserId(), false), mch_id),
				 errhint("The merchant's allowed_roles in wxpay.merchants lists who may.")));
	return m;
}

/*
 * wxpay.merchant_require(mch_id text) -> void
 *
 * wxpay_merchant_get for the SQL functions of a merchant (the bill
 * functions): the same error as the C functions' for a merchant that is
 * unknown, or that the caller may not act for.
 */
Datum
wxpay_merchant_require(PG_FUNCTION_ARGS)
{
	SPI_connect();
	(void) wxpay_merchant_get(text_to_cstring(PG_GETARG_TEXT_PP(0)), CurrentMemoryContext);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * wxpay.acting_role() -> oid
 *
 * The role the session acts as: inside SECURITY DEFINER functions
 * current_user is the definer, the outer user is the caller.
 */
Datum
wxpay_acting_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(GetOuterUserId());
}

/*
 * wxpay.merchant_allows(role_oids oid[], role oid) -> boolean
 *
 * roles_allow, for SQL: the row policies use it.
 */
Datum
wxpay_merchant_allows(PG_FUNCTION_ARGS)
{
	Oid		   *roles;
	int			n;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	if (PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	roles = role_array(PG_GETARG_ARRAYTYPE_P(0), &n);
	PG_RETURN_BOOL(roles_allow(false, roles, n, PG_GETARG_OID(1)));
}

/*
 * wxpay.merchant_changed() -> trigger, AFTER INSERT OR UPDATE OR DELETE OR
 * TRUNCATE FOR EACH STATEMENT on wxpay.merchants and wxpay.merchant_v3:
 * every backend's merchant cache forgets its rows once the change commits.
 */
Datum
wxpay_merchant_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "wxpay.merchant_changed() must be an AFTER ... FOR EACH STATEMENT trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
