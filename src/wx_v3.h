/*
 * wx_v3.h
 *	  WeChat Pay API v3 message rules, without PostgreSQL: the request's
 *	  message to sign and its Authorization header, the verification of
 *	  Wechatpay-Timestamp / -Nonce / -Signature over the raw body, and the
 *	  two kinds of Wechatpay-Serial (certificate serial, public-key id).
 */
#ifndef WX_V3_H
#define WX_V3_H

#include <stdbool.h>
#include <stddef.h>

#include "wx_rsa.h"

/* Seconds a Wechatpay-Timestamp may differ from our clock, either way. */
#define WX_V3_MAX_SKEW 300

/* Room for an Authorization header value with a 4096-bit signature. */
#define WX_V3_AUTH_MAX 1024

/* Longest Wechatpay-Nonce / Wechatpay-Serial value we accept. */
#define WX_V3_TOKEN_MAX 64

#define WX_V3_PUBKEY_PREFIX "PUB_KEY_ID_"

/* Longest URL WeChat Pay may name for us to fetch (a bill's download_url). */
#define WX_V3_URL_MAX 2048

typedef enum WxV3Verdict
{
	WX_V3_OK = 0,
	WX_V3_MISSING,				/* a signature header is absent or empty */
	WX_V3_BAD_TIMESTAMP,		/* not a decimal Unix time */
	WX_V3_SKEWED,				/* more than WX_V3_MAX_SKEW from now */
	WX_V3_BAD_HEADER,			/* a nonce with characters no nonce has */
	WX_V3_BAD_SIGNATURE			/* does not verify (probes included) */
} WxV3Verdict;

typedef enum WxV3SerialKind
{
	WX_SERIAL_INVALID = 0,
	WX_SERIAL_CERTIFICATE,		/* hex digits: a platform certificate */
	WX_SERIAL_PUBLIC_KEY		/* PUB_KEY_ID_ and digits: the public key */
} WxV3SerialKind;

/*
 * Sign a request: METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n with the merchant's
 * key, base64 into b64 (WX_RSA_SIG_B64_MAX).  url is the path and query
 * exactly as sent; body may be NULL (GET).
 */
extern bool wx_v3_sign_request(const WxKey *key, const char *method, const char *url,
							   const char *timestamp, const char *nonce,
							   const char *body, size_t body_len, char *b64);

/*
 * The Authorization header value (without "Authorization: ") into buf
 * (WX_V3_AUTH_MAX bytes); false when a value is empty, too long for buf,
 * or holds a character that cannot stand between double quotes.
 */
extern bool wx_v3_authorization(char *buf, const char *mchid, const char *serial_no,
								const char *timestamp, const char *nonce,
								const char *signature);

/*
 * Judge a signed answer or notification: the three headers (any may be
 * NULL), the raw body bytes, the verification key chosen by its
 * Wechatpay-Serial (NULL: none known, which is a signature failure), and
 * the current Unix time.
 */
extern WxV3Verdict wx_v3_verify(const WxKey *key, const char *timestamp,
								const char *nonce, const char *signature,
								const char *body, size_t body_len, long long now);

/* A short English description of a verdict, for messages. */
extern const char *wx_v3_verdict_text(WxV3Verdict verdict);

/* Whether a Wechatpay-Signature is one of WeChat Pay's deliberate probes. */
extern bool wx_v3_is_probe(const char *signature);

/* Which kind of key a Wechatpay-Serial (or a configured serial) names. */
extern WxV3SerialKind wx_v3_serial_kind(const char *serial, size_t len);

/*
 * Whether a received Wechatpay-Serial names a configured serial: hex
 * certificate serials compare case-insensitively, public-key ids exactly.
 */
extern bool wx_v3_serial_equal(const char *configured, const char *received);

/*
 * The path and query of url when url is on base (the same scheme, host
 * and port, compared without case, then a '/'), else NULL: a request
 * signed for the merchant goes to its own API host only.  url must be
 * printable ASCII without spaces, '#' or '\\', at most WX_V3_URL_MAX bytes.
 */
extern const char *wx_v3_url_path_on(const char *base, const char *url);

#endif							/* WX_V3_H */
