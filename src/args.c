/*
 * args.c
 *	  Validation of SQL arguments before anything is recorded or sent:
 *	  every rule here raises 22023 (or 22004 for a NULL) with what was wrong.
 */
#include "wxpay.h"

#include <arpa/inet.h>
#include <ctype.h>

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "args.h"

/* Every argument of a money function is required: NULL is an error. */
void
wxpay_require_args(FunctionCallInfo fcinfo, const char *const *names, int nargs)
{
	for (int i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", names[i])));
}

/* Whether value matches the POSIX regex pattern, byte-wise. */
bool
wxpay_matches(const char *value, const char *pattern)
{
	return DatumGetBool(DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
												CStringGetTextDatum(value),
												CStringGetTextDatum(pattern)));
}

/* value must match pattern; the hint says what would. */
void
wxpay_check_pattern(const char *name, const char *value, const char *pattern,
					const char *hint)
{
	if (!wxpay_matches(value, pattern))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", name, value),
				 errhint("%s", hint)));
}

/* spbill_create_ip: an IPv4 or IPv6 address. */
void
wxpay_check_ip(const char *ip)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (strlen(ip) > 64 ||
		(inet_pton(AF_INET, ip, buf) != 1 && inet_pton(AF_INET6, ip, buf) != 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid spbill_create_ip \"%s\"", ip),
				 errhint("Use the client's IPv4 or IPv6 address (the server's for NATIVE and MICROPAY).")));
}

/*
 * A text value WeChat Pay v2 can carry and both sides sign identically:
 * no 4-byte UTF-8, no control characters, no surrounding white space.
 */
void
wxpay_check_text_value(const char *name, const char *value, size_t len, int max_bytes)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	if ((int) len > max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is %zu bytes long, the limit is %d bytes", name, len, max_bytes)));
	if (wx_utf8_invalid_at(value, len, true) >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s contains a 4-byte UTF-8 character", name),
				 errdetail("WeChat Pay v2 accepts only 1- to 3-byte UTF-8 sequences."),
				 errhint("Remove emoji and other supplementary-plane characters.")));
	if (wx_xml_value_invalid_at(value, len) >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s contains a control character", name)));
	if (isspace((unsigned char) value[0]) || isspace((unsigned char) value[len - 1]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not start or end with white space", name),
				 errdetail("Some WeChat Pay SDKs trim values before signing; surrounding white space would make signatures disagree.")));
}

/* The spec entry for name, or an error listing the allowed names. */
static const WxOptionalField *
find_field(const char *name, const WxOptionalField *spec, int nspec)
{
	StringInfoData allowed;

	for (int i = 0; i < nspec; i++)
		if (strcmp(spec[i].name, name) == 0)
			return &spec[i];
	initStringInfo(&allowed);
	for (int i = 0; i < nspec; i++)
		appendStringInfo(&allowed, "%s%s", i ? ", " : "", spec[i].name);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown key \"%s\" in extra", name),
			 errhint("Allowed: %s.", allowed.data)));
	return NULL;				/* not reached */
}

/*
 * Validate extra against spec and turn it into the request fields it
 * carries, each a string; json_ok fields may come as JSON objects.  JSON
 * null means absent.
 */
void
wxpay_extra_to_list(Jsonb *extra, const WxOptionalField *spec, int nspec,
					WxParamList *out)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	const WxOptionalField *field = NULL;

	if (!JB_ROOT_IS_OBJECT(extra))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("extra must be a JSON object")));
	wxpay_list_init(out, JB_ROOT_COUNT(extra) + 1);
	it = JsonbIteratorInit(&extra->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *value;
		char	   *label;

		if (tok == WJB_KEY)
			field = find_field(pnstrdup(v.val.string.val, v.val.string.len), spec, nspec);
		if (tok != WJB_VALUE || v.type == jbvNull)
			continue;
		if (v.type == jbvString)
			value = pnstrdup(v.val.string.val, v.val.string.len);
		else if (v.type == jbvBinary && field->json_ok)
			value = JsonbToCString(NULL, v.val.binary.data, v.val.binary.len);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("extra.%s must be a string%s", field->name,
							field->json_ok ? " or a JSON object" : "")));
		label = psprintf("extra.%s", field->name);
		wxpay_check_text_value(label, value, strlen(value), field->max_bytes);
		if (field->pattern != NULL)
			wxpay_check_pattern(field->name, value, field->pattern, field->hint);
		wxpay_list_add_cstr(out, field->name, value);
	}
}
