/*
 * merchant.c
 *	  Loading merchants from wxpay.merchants, and who may act for them.
 */
#include "wxpay.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "spi_util.h"

PG_FUNCTION_INFO_V1(wxpay_acting_role);
PG_FUNCTION_INFO_V1(wxpay_merchant_allows);
PG_FUNCTION_INFO_V1(wxpay_merchant_require);

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
#define MERCHANT_WHERE " FROM wxpay.merchants m WHERE m.mch_id OPERATOR(pg_catalog.=) $1"

/*
 * Load a merchant into cxt, or NULL if there is none.  The caller must be
 * connected to SPI.
 */
WxMerchant *
wxpay_merchant_find(const char *mch_id, MemoryContext cxt)
{
	static SPIPlanPtr by_oid_plan = NULL;
	static SPIPlanPtr by_name_plan = NULL;
	Datum		args[2] = {CStringGetTextDatum(mch_id), ObjectIdGetDatum(GetOuterUserId())};
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	bool		schema_1_1 = roles_by_oid();
	WxMerchant *m;
	char	   *sign_type;
	MemoryContext old;

	/*
	 * Inside these SECURITY DEFINER functions current_user is the owner; the
	 * caller is the outer user (the session's role, or its SET ROLE).  Saved:
	 * every notification looks its merchant up.
	 */
	if (schema_1_1)
		wxpay_spi_exec_plan(&by_oid_plan,
							MERCHANT_COLUMNS "wxpay.merchant_allows(m.allowed_role_oids, $2),"
							" m.protocol, v.apiv3_key, v.serial_no"
							" FROM wxpay.merchants m LEFT JOIN wxpay.merchant_v3 v"
							"  ON v.mch_id OPERATOR(pg_catalog.=) m.mch_id"
							" WHERE m.mch_id OPERATOR(pg_catalog.=) $1",
							2, argtypes, args, NULL, true, SPI_OK_SELECT);
	else
		wxpay_spi_exec_plan(&by_name_plan,
							MERCHANT_COLUMNS
							"allowed_roles IS NULL OR EXISTS (SELECT FROM pg_catalog.unnest(allowed_roles) r"
							"  JOIN pg_catalog.pg_roles g ON g.rolname OPERATOR(pg_catalog.=) r"
							"  WHERE pg_catalog.pg_has_role($2, g.oid, 'MEMBER'))" MERCHANT_WHERE,
							2, argtypes, args, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;

	old = MemoryContextSwitchTo(cxt);
	m = palloc0(sizeof(WxMerchant));
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
	m->caller_allowed = strcmp(wxpay_spi_value(0, 10), "t") == 0;
	if (schema_1_1)
	{
		m->v3 = strcmp(wxpay_spi_value(0, 11), "v3") == 0;
		m->apiv3_key = wxpay_spi_value(0, 12);
		m->serial_no = wxpay_spi_value(0, 13);
	}
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
 * The rule of who may act for a merchant, for the functions and every row
 * policy: no list allows every role granted EXECUTE; otherwise a member of
 * a listed role that still exists (a dropped role's OID matches nobody);
 * superusers always.
 */
Datum
wxpay_merchant_allows(PG_FUNCTION_ARGS)
{
	Oid			role;
	Datum	   *oids;
	bool	   *nulls;
	int			n;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	if (PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	role = PG_GETARG_OID(1);
	if (superuser_arg(role))
		PG_RETURN_BOOL(true);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), OIDOID, sizeof(Oid), true, TYPALIGN_INT,
					  &oids, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i] && SearchSysCacheExists1(AUTHOID, oids[i]) &&
			is_member_of_role(role, DatumGetObjectId(oids[i])))
			PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(false);
}
