/*
 * wx_sign.h
 *	  WeChat Pay v2 signing: canonical string, MD5 / HMAC-SHA256 digests,
 *	  constant-time comparison and nonce alphabet mapping.
 *
 * No PostgreSQL dependency: this is the core that unit tests, fuzzers and
 * sanitizers exercise outside the server.  Nothing here allocates from the
 * heap or longjmps, so a caller may use it inside any memory regime.
 */
#ifndef WX_SIGN_H
#define WX_SIGN_H

#include <stdbool.h>
#include <stddef.h>

/* One name=value pair, not necessarily NUL-terminated. */
typedef struct WxParam
{
	const char *name;
	size_t		name_len;
	const char *value;
	size_t		value_len;
} WxParam;

typedef enum WxSignType
{
	WX_SIGN_INVALID = 0,
	WX_SIGN_MD5,
	WX_SIGN_HMAC_SHA256
} WxSignType;

/* Hex digits of a signature: 32 for MD5, 64 for HMAC-SHA256. */
#define WX_SIGN_MAX_HEX 64

/* Alphabet of wxpay_nonce: [A-Za-z0-9]. */
#define WX_NONCE_ALPHABET_LEN 62
#define WX_NONCE_MAX_LEN 32

extern WxSignType wx_sign_type_parse(const char *name, size_t len);
extern const char *wx_sign_type_name(WxSignType type);
extern WxSignType wx_sign_type_from_hex_length(size_t len);
extern size_t wx_sign_hex_length(WxSignType type);

/*
 * Whether a parameter takes part in the signature: everything but "sign"
 * and empty values.
 */
extern bool wx_param_is_signed(const WxParam *param);

/* Sort parameters by name, bytewise; the order the canonical string needs. */
extern void wx_params_sort(WxParam *params, int nparams);

/*
 * Find a parameter by name in a list (sorted or not); NULL when absent.
 * A list that went through wx_params_find_duplicate has unique names.
 */
extern const WxParam *wx_params_find(const WxParam *params, int nparams,
									 const char *name);

/* After wx_params_sort: the first name that occurs twice, or NULL. */
extern const WxParam *wx_params_find_duplicate(const WxParam *sorted,
											   int nparams);

/*
 * Length of the canonical string "a=1&b=2&key=KEY" for sorted params, and
 * writing it into buf (which must hold that many bytes; no NUL is added).
 */
extern size_t wx_canonical_length(const WxParam *sorted, int nparams,
								  size_t key_len);
extern void wx_canonical_write(const WxParam *sorted, int nparams,
							   const char *key, size_t key_len, char *buf);

/*
 * Compute the upper-case hex signature of sorted params into hex (at least
 * WX_SIGN_MAX_HEX + 1 bytes; NUL-terminated).  The canonical string is fed
 * to the digest piece by piece and never materialised.  Returns false only
 * when OpenSSL fails (out of memory, digest unavailable).
 */
extern bool wx_sign_compute(WxSignType type, const WxParam *sorted, int nparams,
							const char *key, size_t key_len, char *hex);

/*
 * Constant-time comparison of a received signature with the expected one.
 * Time depends only on the expected length; hex letters compare
 * case-insensitively (WeChat sends upper case, some SDKs lower).
 */
extern bool wx_sign_equal(const char *expected, size_t expected_len,
						  const char *received, size_t received_len);

/* Lower-case hex MD5 of data into hex[33]; the refund-notification AES key. */
extern bool wx_md5_hex_lower(const char *data, size_t len, char *hex);

/*
 * Map random bytes onto the nonce alphabet without modulo bias.  Consumes
 * bytes from rnd (rnd_len of them) and writes up to out_len characters;
 * returns how many were written.  Bytes >= 248 are rejected, so the caller
 * supplies some spare bytes and calls again if it came up short.
 */
extern size_t wx_nonce_from_random(const unsigned char *rnd, size_t rnd_len,
								   char *out, size_t out_len);

#endif							/* WX_SIGN_H */
