/*
 * v3_config.c
 *	  API v3 merchant configuration: the PEM inspections the validation
 *	  triggers of wxpay.merchant_v3 and wxpay.wechatpay_keys call, and
 *	  choosing the WeChat Pay key that verifies an answer or notification
 *	  by its Wechatpay-Serial.
 *
 * Keys are parsed by the core's cache (wx_rsa.c), so a merchant's keys are
 * parsed once per process; nothing here returns or reports a secret.
 */
#include "wxpay.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

#include "spi_util.h"
#include "wx_rsa.h"
#include "wx_v3.h"

PG_FUNCTION_INFO_V1(wxpay_pem_kind);
PG_FUNCTION_INFO_V1(wxpay_pem_certificate_serial);
PG_FUNCTION_INFO_V1(wxpay_pem_keys_match);

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

/*
 * The key that verifies what merchant m's WeChat Pay signed under serial
 * (a Wechatpay-Serial header), or NULL when there is none in use: unknown,
 * malformed, or a certificate past its expires_at.  SPI must be connected.
 */
const WxKey *
wxpay_v3_verification_key(const WxMerchant *m, const char *serial)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];
	Oid			types[2] = {TEXTOID, TEXTOID};
	WxV3SerialKind kind;
	char	   *pem;

	if (serial == NULL || (kind = wx_v3_serial_kind(serial, strlen(serial))) == WX_SERIAL_INVALID)
		return NULL;
	args[0] = CStringGetTextDatum(m->mch_id);
	/* Certificate serials are stored in upper case; public-key ids as they are. */
	args[1] = CStringGetTextDatum(kind == WX_SERIAL_CERTIFICATE ? asc_toupper(serial, strlen(serial)) : serial);
	wxpay_spi_exec_plan(&plan,
						"SELECT pem FROM wxpay.wechatpay_keys"
						" WHERE mch_id OPERATOR(pg_catalog.=) $1 AND serial OPERATOR(pg_catalog.=) $2"
						" AND (expires_at IS NULL OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now())",
						2, types, args, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	pem = wxpay_spi_value(0, 1);
	return wx_key_public(pem, strlen(pem));
}
