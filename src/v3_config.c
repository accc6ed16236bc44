/*
 * v3_config.c
 *	  API v3 merchant configuration: the PEM inspections the validation
 *	  triggers of wxpay.merchant_v3 and wxpay.wechatpay_keys call.
 *
 * Keys are parsed by the core's cache (wx_rsa.c), so a merchant's keys are
 * parsed once per process; nothing here returns or reports a secret.
 */
#include "wxpay.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "wx_rsa.h"
#include "wx_v3.h"

PG_FUNCTION_INFO_V1(wxpay_pem_kind);
PG_FUNCTION_INFO_V1(wxpay_pem_certificate_serial);
PG_FUNCTION_INFO_V1(wxpay_pem_keys_match);
PG_FUNCTION_INFO_V1(wxpay_pem_certificate_validity);

/* Whether a PEM text is a certificate (rather than a bare key). */
static bool
is_certificate(const char *pem, size_t len)
{
	char		serial[WX_SERIAL_HEX_MAX];

	return wx_cert_serial(pem, len, serial);
}

/* wxpay.pem_kind(pem) -> 'private key' | 'public key' | 'certificate' | NULL */
Datum
wxpay_pem_kind(PG_FUNCTION_ARGS)
{
	text	   *pem = PG_GETARG_TEXT_PP(0);
	const char *data = VARDATA_ANY(pem);
	size_t		len = VARSIZE_ANY_EXHDR(pem);

	if (wx_key_private(data, len) != NULL)
		PG_RETURN_TEXT_P(cstring_to_text("private key"));
	if (wx_key_public(data, len) != NULL)
		PG_RETURN_TEXT_P(cstring_to_text(is_certificate(data, len) ? "certificate" : "public key"));
	PG_RETURN_NULL();
}

/* wxpay.pem_certificate_serial(pem) -> upper-case hex, or NULL */
Datum
wxpay_pem_certificate_serial(PG_FUNCTION_ARGS)
{
	text	   *pem = PG_GETARG_TEXT_PP(0);
	char		serial[WX_SERIAL_HEX_MAX];

	if (!wx_cert_serial(VARDATA_ANY(pem), VARSIZE_ANY_EXHDR(pem), serial))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(serial));
}

/* wxpay.pem_keys_match(private_pem, public_pem) -> boolean */
Datum
wxpay_pem_keys_match(PG_FUNCTION_ARGS)
{
	text	   *priv = PG_GETARG_TEXT_PP(0);
	text	   *pub = PG_GETARG_TEXT_PP(1);
	const WxKey *sk = wx_key_private(VARDATA_ANY(priv), VARSIZE_ANY_EXHDR(priv));
	const WxKey *vk;

	if (sk == NULL)
		PG_RETURN_BOOL(false);
	vk = wx_key_public(VARDATA_ANY(pub), VARSIZE_ANY_EXHDR(pub));
	/* Parsing pub may have evicted sk from a full cache: take it again. */
	sk = wx_key_private(VARDATA_ANY(priv), VARSIZE_ANY_EXHDR(priv));
	PG_RETURN_BOOL(sk != NULL && vk != NULL && wx_key_pair_matches(sk, vk));
}

/* wxpay.pem_certificate_validity(pem) -> (not_before, not_after), or NULL */
Datum
wxpay_pem_certificate_validity(PG_FUNCTION_ARGS)
{
	text	   *pem = PG_GETARG_TEXT_PP(0);
	int64_t		not_before,
				not_after;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (!wx_cert_validity(VARDATA_ANY(pem), VARSIZE_ANY_EXHDR(pem), &not_before, &not_after))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pem_certificate_validity must return a record");
	values[0] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) not_before));
	values[1] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) not_after));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
