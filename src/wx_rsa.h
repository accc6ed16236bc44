/*
 * wx_rsa.h
 *	  RSA keys and SHA256-RSA2048 signatures for WeChat Pay API v3, without
 *	  PostgreSQL: parsing PEM keys and certificates once (a small cache keyed
 *	  by the PEM's SHA-256), PKCS#1 v1.5 / SHA-256 signing and verification
 *	  of newline-terminated lines, certificate serials, base64 encoding.
 *
 * The cache lives for the process and holds at most WX_KEY_CACHE_SIZE
 * keys; a key handle stays valid until that many other keys have been
 * parsed, so callers use a handle at once and do not keep it.
 */
#ifndef WX_RSA_H
#define WX_RSA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A parsed key (an OpenSSL EVP_PKEY); opaque to callers. */
typedef struct WxKey WxKey;

/* One piece of a message, not necessarily NUL-terminated. */
typedef struct WxSlice
{
	const char *data;
	size_t		len;
} WxSlice;

#define WX_KEY_CACHE_SIZE 64
/* Base64 of an RSA signature of up to 4096 bits, with its NUL. */
#define WX_RSA_SIG_B64_MAX 700
/* Upper-case hex of a certificate serial of up to 20 bytes (RFC 5280), NUL. */
#define WX_SERIAL_HEX_MAX 41

/*
 * The merchant's private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE
 * KEY" PEM), or NULL when the text is not an RSA private key of at least
 * 2048 bits.
 */
extern const WxKey *wx_key_private(const char *pem, size_t len);

/*
 * A verification key: a "PUBLIC KEY" PEM (the WeChat Pay public key) or a
 * "CERTIFICATE" PEM (a platform certificate); NULL unless it holds an RSA
 * key of at least 2048 bits.
 */
extern const WxKey *wx_key_public(const char *pem, size_t len);

/* Whether a private key belongs to the public key of a certificate or key. */
extern bool wx_key_pair_matches(const WxKey *private_key, const WxKey *public_key);

/*
 * The serial number of a certificate PEM as upper-case hex, two digits
 * per byte (a leading zero digit is kept, as WeChat Pay shows it), into
 * hex (WX_SERIAL_HEX_MAX bytes).  False when it is not a certificate or
 * the serial is longer than 20 bytes or negative.
 */
extern bool wx_cert_serial(const char *pem, size_t len, char *hex);

/*
 * A certificate's validity, notBefore and notAfter, in seconds since the
 * epoch (UTC).  False when it is not a certificate.
 */
extern bool wx_cert_validity(const char *pem, size_t len, int64_t *not_before,
							 int64_t *not_after);

/*
 * Sign the lines, each followed by "\n", with RSASSA-PKCS1-v1_5 / SHA-256
 * and write the base64 signature into b64 (WX_RSA_SIG_B64_MAX bytes,
 * NUL-terminated).  The message is fed to the digest line by line and
 * never materialised.  False only when OpenSSL fails.
 */
extern bool wx_rsa_sign_lines(const WxKey *key, const WxSlice *lines, int nlines,
							  char *b64);

/*
 * Whether the base64 signature sig verifies over the lines (each followed
 * by "\n").  Anything that is not canonical base64 (a WECHATPAY/SIGNTEST/
 * probe, for instance) simply does not verify.
 */
extern bool wx_rsa_verify_lines(const WxKey *key, const WxSlice *lines, int nlines,
								const char *sig, size_t sig_len);

/* The same over bytes taken as they are (no "\n" added): SDK vectors. */
extern bool wx_rsa_sign_bytes(const WxKey *key, const char *data, size_t len, char *b64);
extern bool wx_rsa_verify_bytes(const WxKey *key, const char *data, size_t len,
								const char *sig, size_t sig_len);

/* Standard base64 with padding of len bytes into out (4*ceil(len/3)+1 bytes). */
extern void wx_base64_encode(const unsigned char *in, size_t len, char *out);

/* Forget every cached key (tests and fuzzers: leak checks). */
extern void wx_key_cache_clear(void);

#endif							/* WX_RSA_H */
