/*
 * params.c
 *	  WxParamList: the growable list of name/value pairs that requests,
 *	  answers and notifications are read into, and its conversions to and
 *	  from flat jsonb objects.
 *
 * jsonb objects become WxParam lists that borrow the jsonb's own bytes;
 * strings stay as they are, numbers and booleans become their JSON text,
 * nulls are skipped and nested containers are refused.
 */
#include "wxpay.h"

#include "utils/builtins.h"
#include "utils/numeric.h"

/* An empty list with room for capacity parameters. */
void
wxpay_list_init(WxParamList *list, int capacity)
{
	list->capacity = capacity > 0 ? capacity : 8;
	list->count = 0;
	list->items = palloc(sizeof(WxParam) * list->capacity);
}

/* Append a parameter; name and value are borrowed, not copied. */
void
wxpay_list_add(WxParamList *list, const char *name, const char *value,
			   size_t value_len)
{
	WxParam    *p;

	if (list->count == list->capacity)
	{
		list->capacity *= 2;
		list->items = repalloc(list->items, sizeof(WxParam) * list->capacity);
	}
	p = &list->items[list->count++];
	p->name = name;
	p->name_len = strlen(name);
	p->value = value;
	p->value_len = value_len;
}

/* Append every parameter of src (borrowed, not copied). */
void
wxpay_list_append(WxParamList *list, const WxParamList *src)
{
	for (int i = 0; i < src->count; i++)
		wxpay_list_add(list, src->items[i].name, src->items[i].value, src->items[i].value_len);
}

/* Append a NUL-terminated value. */
void
wxpay_list_add_cstr(WxParamList *list, const char *name, const char *value)
{
	wxpay_list_add(list, name, value, strlen(value));
}

/* Value of a parameter as a palloc'd C string, or NULL when absent. */
const char *
wxpay_list_get(const WxParamList *list, const char *name)
{
	const WxParam *p = wx_params_find(list->items, list->count, name);

	return p ? pnstrdup(p->value, p->value_len) : NULL;
}

/* Whether a field is present with exactly the expected value. */
bool
wxpay_list_is(const WxParamList *list, const char *name, const char *expected)
{
	const WxParam *p = wx_params_find(list->items, list->count, name);

	return p != NULL && p->value_len == strlen(expected) &&
		memcmp(p->value, expected, p->value_len) == 0;
}

/* Text of one scalar jsonb value, or NULL for JSON null. */
static const char *
jsonb_scalar_text(const JsonbValue *v, const char *name, const char *argname,
				  size_t *len)
{
	const char *s;

	switch (v->type)
	{
		case jbvString:
			*len = v->val.string.len;
			return v->val.string.val;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			s = v->val.boolean ? "true" : "false";
			break;
		case jbvNull:
			return NULL;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of \"%s\" in %s must be a string, number or boolean",
							name, argname),
					 errdetail("WeChat Pay v2 parameters are flat; nested objects and arrays cannot be signed."),
					 errhint("Serialize structured fields such as detail or scene_info to a JSON string first.")));
			s = NULL;			/* keep compiler quiet */
	}
	*len = strlen(s);
	return s;
}

/* The flat jsonb object jb as a list; argname names it in errors. */
void
wxpay_list_from_jsonb(Jsonb *jb, WxParamList *list, const char *argname)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", argname)));

	wxpay_list_init(list, JB_ROOT_COUNT(jb));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			name = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			size_t		len;
			const char *value = jsonb_scalar_text(&v, name, argname, &len);

			if (value != NULL)
				wxpay_list_add(list, name, value, len);
		}
	}
}

/* A list as a flat jsonb object of strings. */
Jsonb *
wxpay_list_to_jsonb(const WxParamList *list)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < list->count; i++)
	{
		JsonbValue	k,
					v;

		k.type = jbvString;
		k.val.string.val = (char *) list->items[i].name;
		k.val.string.len = list->items[i].name_len;
		v.type = jbvString;
		v.val.string.val = (char *) list->items[i].value;
		v.val.string.len = list->items[i].value_len;
		pushJsonbValue(&state, WJB_KEY, &k);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}
