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

/*
 * Append a parameter whose name is name_len bytes (not necessarily
 * NUL-terminated); name and value are borrowed, not copied.
 */
void
wxpay_list_add_name(WxParamList *list, const char *name, size_t name_len,
					const char *value, size_t value_len)
{
	WxParam    *p;

	if (list->count == list->capacity)
	{
		list->capacity *= 2;
		list->items = repalloc(list->items, sizeof(WxParam) * list->capacity);
	}
	p = &list->items[list->count++];
	p->name = name;
	p->name_len = name_len;
	p->value = value;
	p->value_len = value_len;
}

/* Append a parameter with a NUL-terminated name (borrowed, not copied). */
void
wxpay_list_add(WxParamList *list, const char *name, const char *value,
			   size_t value_len)
{
	wxpay_list_add_name(list, name, strlen(name), value, value_len);
}

/* Append every parameter of src (borrowed, not copied). */
void
wxpay_list_append(WxParamList *list, const WxParamList *src)
{
	for (int i = 0; i < src->count; i++)
		wxpay_list_add_name(list, src->items[i].name, src->items[i].name_len,
							src->items[i].value, src->items[i].value_len);
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

/*
 * Text of one scalar of a jsonb object (its entry je, at offset off in the
 * data that follows the object's entries), or NULL for JSON null.  name
 * (name_len bytes, not NUL-terminated) names it in errors.
 */
static const char *
jsonb_scalar_text(JEntry je, const char *data, uint32 off, uint32 len,
				  const char *name, int name_len, const char *argname,
				  size_t *text_len)
{
	const char *s;

	if (JBE_ISSTRING(je))
	{
		*text_len = len;
		return data + off;
	}
	if (JBE_ISNULL(je))
		return NULL;
	if (JBE_ISNUMERIC(je))
		s = DatumGetCString(DirectFunctionCall1(numeric_out,
												PointerGetDatum(data + INTALIGN(off))));
	else if (JBE_ISBOOL_TRUE(je))
		s = "true";
	else if (JBE_ISBOOL_FALSE(je))
		s = "false";
	else
	{
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value of \"%.*s\" in %s must be a string, number or boolean",
						name_len, name, argname),
				 errdetail("WeChat Pay v2 parameters are flat; nested objects and arrays cannot be signed."),
				 errhint("Serialize structured fields such as detail or scene_info to a JSON string first.")));
		s = NULL;				/* keep compiler quiet */
	}
	*text_len = strlen(s);
	return s;
}

/*
 * The flat jsonb object jb as a list; argname names it in errors.  Values
 * borrow jb's bytes.  Names are NUL-terminated copies when copy_names,
 * else they borrow jb's bytes too (name_len bytes, no NUL): enough for
 * signing, which never reads a name as a C string.
 *
 * The object's entries are walked directly, as JsonbIteratorNext does
 * inside: n key entries, then n value entries, then the data, each entry
 * holding its length or (every JB_OFFSET_STRIDE) its end offset.  Signing
 * is a per-row function, and the iterator's per-token work was a fifth of
 * its time.
 */
static void
list_from_object(Jsonb *jb, WxParamList *list, const char *argname,
				 bool copy_names)
{
	const JsonbContainer *jc = &jb->root;
	int			n;
	const char *data;
	uint32		key_off = 0;
	uint32		value_off;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", argname)));

	n = JsonContainerSize(jc);
	wxpay_list_init(list, n);
	data = (const char *) &jc->children[2 * n];
	value_off = n > 0 ? getJsonbOffset(jc, n) : 0;
	for (int i = 0; i < n; i++)
	{
		JEntry		kje = jc->children[i];
		JEntry		vje = jc->children[n + i];
		uint32		key_end = key_off;
		uint32		value_end = value_off;
		const char *name = data + key_off;
		const char *value;
		size_t		len;

		JBE_ADVANCE_OFFSET(key_end, kje);
		JBE_ADVANCE_OFFSET(value_end, vje);
		value = jsonb_scalar_text(vje, data, value_off, value_end - value_off,
								  name, key_end - key_off, argname, &len);
		if (value != NULL)
		{
			/* The list was made with room for all n. */
			WxParam    *p = &list->items[list->count++];

			p->name = copy_names ? pnstrdup(name, key_end - key_off) : name;
			p->name_len = key_end - key_off;
			p->value = value;
			p->value_len = len;
		}
		key_off = key_end;
		value_off = value_end;
	}
}

/* The flat jsonb object jb as a list of NUL-terminated names. */
void
wxpay_list_from_jsonb(Jsonb *jb, WxParamList *list, const char *argname)
{
	list_from_object(jb, list, argname, true);
}

/*
 * The same, names borrowed from jb and not NUL-terminated (no copy): for
 * signing and verifying, which read names only by their length.
 */
void
wxpay_list_borrow_jsonb(Jsonb *jb, WxParamList *list, const char *argname)
{
	list_from_object(jb, list, argname, false);
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
