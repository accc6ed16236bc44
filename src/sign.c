/*
 * sign.c
 *	  SQL functions wxpay_sign, wxpay_verify and wxpay_nonce, and the
 *	  signing helpers every other part of the extension signs with.
 */
#include "wxpay.h"

#include "fmgr.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(wxpay_sign);
PG_FUNCTION_INFO_V1(wxpay_verify);
PG_FUNCTION_INFO_V1(wxpay_nonce);

/* A sign_type argument of len bytes (not necessarily NUL-terminated). */
static WxSignType
sign_type_arg_len(const char *name, size_t len, const char *argname)
{
	WxSignType	type = wx_sign_type_parse(name, len);

	if (type == WX_SIGN_INVALID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%.*s\"", argname, (int) len, name),
				 errhint("Use MD5 or HMAC-SHA256.")));
	return type;
}

WxSignType
wxpay_sign_type_arg(const char *name, const char *argname)
{
	return sign_type_arg_len(name, strlen(name), argname);
}

/* A sign_type given as a text argument, read in place. */
static WxSignType
sign_type_text_arg(text *t, const char *argname)
{
	return sign_type_arg_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), argname);
}

/* The API key: never echoed, only judged. */
void
wxpay_check_key(const char *key, size_t len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("API key must not be empty")));
}

/* Sort list in place and write its signature into hex (WX_SIGN_MAX_HEX + 1). */
static void
sign_list_into(WxParamList *list, WxSignType type, const char *key,
			   size_t key_len, char *hex)
{
	wx_params_sort(list->items, list->count);
	if (!wx_sign_compute(type, list->items, list->count, key, key_len, hex))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not compute %s signature", wx_sign_type_name(type))));
}

/* Sort list in place and return its signature as a palloc'd hex string. */
char *
wxpay_sign_list(WxParamList *list, WxSignType type, const char *key,
				size_t key_len)
{
	char	   *hex = palloc(WX_SIGN_MAX_HEX + 1);

	sign_list_into(list, type, key, key_len, hex);
	return hex;
}

/*
 * Verify the "sign" of a received parameter list.  type WX_SIGN_INVALID
 * means: take it from the list's sign_type, else from the sign's length.
 * A missing, mis-sized or wrong signature is simply false.
 */
bool
wxpay_verify_list(WxParamList *list, WxSignType type, const char *key,
				  size_t key_len)
{
	const WxParam *sign = wx_params_find(list->items, list->count, "sign");
	const WxParam *declared;
	const char *received;
	size_t		received_len;
	char		expected[WX_SIGN_MAX_HEX + 1];

	if (sign == NULL)
		return false;
	/* Sorting moves the entries, not the strings they point to. */
	received = sign->value;
	received_len = sign->value_len;
	if (type == WX_SIGN_INVALID)
	{
		/* An empty value counts as absent in v2, like everywhere else. */
		declared = wx_params_find(list->items, list->count, "sign_type");
		if (declared != NULL && declared->value_len > 0)
			type = wx_sign_type_parse(declared->value, declared->value_len);
		else
			type = wx_sign_type_from_hex_length(received_len);
		if (type == WX_SIGN_INVALID)
			return false;
	}
	if (received_len != wx_sign_hex_length(type))
		return false;

	sign_list_into(list, type, key, key_len, expected);
	return wx_sign_equal(expected, strlen(expected), received, received_len);
}

char *
wxpay_make_nonce(int len)
{
	char	   *out = palloc(len + 1);
	size_t		have = 0;

	while (have < (size_t) len)
	{
		unsigned char rnd[2 * WX_NONCE_MAX_LEN];

		if (!pg_strong_random(rnd, sizeof(rnd)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random nonce")));
		have += wx_nonce_from_random(rnd, sizeof(rnd), out + have, len - have);
	}
	out[len] = '\0';
	return out;
}

/*
 * wxpay_sign(params jsonb, key text, sign_type text DEFAULT 'MD5') -> text
 */
Datum
wxpay_sign(PG_FUNCTION_ARGS)
{
	Jsonb	   *params = PG_GETARG_JSONB_P(0);
	text	   *key = PG_GETARG_TEXT_PP(1);
	WxSignType	type = sign_type_text_arg(PG_GETARG_TEXT_PP(2), "sign_type");
	WxParamList list;
	text	   *result;

	wxpay_check_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	/* A function called once per row: no copies of the names or the result. */
	wxpay_list_borrow_jsonb(params, &list, "params");
	result = palloc(VARHDRSZ + WX_SIGN_MAX_HEX + 1);
	sign_list_into(&list, type, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), VARDATA(result));
	SET_VARSIZE(result, VARHDRSZ + wx_sign_hex_length(type));
	PG_RETURN_TEXT_P(result);
}

/*
 * wxpay_verify(params jsonb, key text, sign_type text DEFAULT NULL) -> bool
 */
Datum
wxpay_verify(PG_FUNCTION_ARGS)
{
	Jsonb	   *params;
	text	   *key;
	WxSignType	type = WX_SIGN_INVALID;
	WxParamList list;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	params = PG_GETARG_JSONB_P(0);
	key = PG_GETARG_TEXT_PP(1);
	if (!PG_ARGISNULL(2))
		type = sign_type_text_arg(PG_GETARG_TEXT_PP(2), "sign_type");

	wxpay_check_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	wxpay_list_borrow_jsonb(params, &list, "params");
	PG_RETURN_BOOL(wxpay_verify_list(&list, type, VARDATA_ANY(key),
									 VARSIZE_ANY_EXHDR(key)));
}

/*
 * wxpay_nonce(len integer DEFAULT 32) -> text
 */
Datum
wxpay_nonce(PG_FUNCTION_ARGS)
{
	int32		len = PG_GETARG_INT32(0);

	if (len < 1 || len > WX_NONCE_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nonce length must be between 1 and %d, not %d",
						WX_NONCE_MAX_LEN, len)));
	PG_RETURN_TEXT_P(cstring_to_text(wxpay_make_nonce(len)));
}
