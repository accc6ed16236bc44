/*
 * wx_sign.c
 *	  WeChat Pay v2 signatures, independent of PostgreSQL.
 *
 * The canonical string is "name=value" for every parameter except "sign"
 * and empty values, sorted by name bytewise, joined with '&', followed by
 * "&key=<API key>".  MD5 hashes it; HMAC-SHA256 uses the API key as the
 * HMAC key and still hashes the "&key=" suffix (every SDK does this).
 * Digests come from OpenSSL's EVP interface; HMAC is built from two SHA-256
 * passes so that the string can be streamed without a deprecated API.
 */
#include "wx_sign.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define HMAC_BLOCK 64
#define SHA256_LEN 32
#define MD5_LEN 16

/* Where canonical-string pieces go: a digest or a flat buffer. */
typedef struct CanonicalSink
{
	EVP_MD_CTX *md;				/* digest to update, or NULL */
	char	   *buf;			/* buffer to append to, when md is NULL */
	size_t		len;			/* bytes emitted so far */
	bool		ok;
} CanonicalSink;

static void
sink_put(CanonicalSink *sink, const void *data, size_t len)
{
	if (sink->md != NULL)
	{
		if (sink->ok && len > 0 && EVP_DigestUpdate(sink->md, data, len) != 1)
			sink->ok = false;
	}
	else if (len > 0)
		memcpy(sink->buf + sink->len, data, len);
	sink->len += len;
}

/* Emit the canonical string of sorted params into sink. */
static void
canonical_emit(const WxParam *sorted, int nparams, const char *key,
			   size_t key_len, CanonicalSink *sink)
{
	bool		first = true;

	for (int i = 0; i < nparams; i++)
	{
		const WxParam *p = &sorted[i];

		if (!wx_param_is_signed(p))
			continue;
		if (!first)
			sink_put(sink, "&", 1);
		sink_put(sink, p->name, p->name_len);
		sink_put(sink, "=", 1);
		sink_put(sink, p->value, p->value_len);
		first = false;
	}
	if (!first)
		sink_put(sink, "&", 1);
	sink_put(sink, "key=", 4);
	sink_put(sink, key, key_len);
}

/*
 * A sign_type by name, in any letter case (SDKs accept "md5"; the value is
 * signed as received either way).
 */
WxSignType
wx_sign_type_parse(const char *name, size_t len)
{
	if (len == 3 && strncasecmp(name, "MD5", 3) == 0)
		return WX_SIGN_MD5;
	if (len == 11 && strncasecmp(name, "HMAC-SHA256", 11) == 0)
		return WX_SIGN_HMAC_SHA256;
	return WX_SIGN_INVALID;
}

const char *
wx_sign_type_name(WxSignType type)
{
	switch (type)
	{
		case WX_SIGN_MD5:
			return "MD5";
		case WX_SIGN_HMAC_SHA256:
			return "HMAC-SHA256";
		default:
			return NULL;
	}
}

WxSignType
wx_sign_type_from_hex_length(size_t len)
{
	if (len == 2 * MD5_LEN)
		return WX_SIGN_MD5;
	if (len == 2 * SHA256_LEN)
		return WX_SIGN_HMAC_SHA256;
	return WX_SIGN_INVALID;
}

size_t
wx_sign_hex_length(WxSignType type)
{
	return type == WX_SIGN_MD5 ? 2 * MD5_LEN :
		type == WX_SIGN_HMAC_SHA256 ? 2 * SHA256_LEN : 0;
}

bool
wx_param_is_signed(const WxParam *param)
{
	if (param->value_len == 0)
		return false;
	return !(param->name_len == 4 && memcmp(param->name, "sign", 4) == 0);
}

static int
compare_names(const char *a, size_t alen, const char *b, size_t blen)
{
	int			c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static int
param_cmp(const void *a, const void *b)
{
	const WxParam *pa = a;
	const WxParam *pb = b;

	return compare_names(pa->name, pa->name_len, pb->name, pb->name_len);
}

void
wx_params_sort(WxParam *params, int nparams)
{
	if (nparams > 1)
		qsort(params, nparams, sizeof(WxParam), param_cmp);
}

const WxParam *
wx_params_find(const WxParam *params, int nparams, const char *name)
{
	size_t		len = strlen(name);

	for (int i = 0; i < nparams; i++)
		if (params[i].name_len == len && memcmp(params[i].name, name, len) == 0)
			return &params[i];
	return NULL;
}

const WxParam *
wx_params_find_duplicate(const WxParam *sorted, int nparams)
{
	for (int i = 1; i < nparams; i++)
		if (param_cmp(&sorted[i - 1], &sorted[i]) == 0)
			return &sorted[i];
	return NULL;
}

size_t
wx_canonical_length(const WxParam *sorted, int nparams, size_t key_len)
{
	size_t		len = 0;

	/* Each signed pair with the '&' that follows it, then "key=KEY". */
	for (int i = 0; i < nparams; i++)
		if (wx_param_is_signed(&sorted[i]))
			len += sorted[i].name_len + 1 + sorted[i].value_len + 1;
	return len + 4 + key_len;
}

void
wx_canonical_write(const WxParam *sorted, int nparams, const char *key,
				   size_t key_len, char *buf)
{
	CanonicalSink sink = {NULL, buf, 0, true};

	canonical_emit(sorted, nparams, key, key_len, &sink);
}

/* Process-wide digest state; PostgreSQL backends are single-threaded. */
static EVP_MD_CTX *digest_ctx;
static const EVP_MD *md5_md;
static const EVP_MD *sha256_md;

static bool
digest_ready(void)
{
	if (digest_ctx == NULL)
		digest_ctx = EVP_MD_CTX_new();
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	/* Fetch once: an implicit fetch on every init costs more than MD5. */
	if (md5_md == NULL)
		md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
	if (sha256_md == NULL)
		sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
	md5_md = EVP_md5();
	sha256_md = EVP_sha256();
#endif
	return digest_ctx != NULL && md5_md != NULL && sha256_md != NULL;
}

static void
hex_upper(const unsigned char *bin, size_t len, char *hex)
{
	static const char digits[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++)
	{
		hex[2 * i] = digits[bin[i] >> 4];
		hex[2 * i + 1] = digits[bin[i] & 0x0F];
	}
	hex[2 * len] = '\0';
}

static bool
sign_md5(const WxParam *sorted, int nparams, const char *key, size_t key_len,
		 unsigned char *out)
{
	CanonicalSink sink = {digest_ctx, NULL, 0, true};

	if (EVP_DigestInit_ex(digest_ctx, md5_md, NULL) != 1)
		return false;
	canonical_emit(sorted, nparams, key, key_len, &sink);
	return sink.ok && EVP_DigestFinal_ex(digest_ctx, out, NULL) == 1;
}

/* HMAC-SHA256 (RFC 2104) over the canonical string, keyed by the API key. */
static bool
sign_hmac_sha256(const WxParam *sorted, int nparams, const char *key,
				 size_t key_len, unsigned char *out)
{
	unsigned char block[HMAC_BLOCK];
	unsigned char pad[HMAC_BLOCK];
	unsigned char inner[SHA256_LEN];
	CanonicalSink sink = {digest_ctx, NULL, 0, true};
	bool		ok;

	memset(block, 0, sizeof(block));
	if (key_len > HMAC_BLOCK)
	{
		if (EVP_Digest(key, key_len, block, NULL, sha256_md, NULL) != 1)
			return false;
	}
	else
		memcpy(block, key, key_len);

	for (int i = 0; i < HMAC_BLOCK; i++)
		pad[i] = block[i] ^ 0x36;
	ok = EVP_DigestInit_ex(digest_ctx, sha256_md, NULL) == 1 &&
		EVP_DigestUpdate(digest_ctx, pad, HMAC_BLOCK) == 1;
	if (ok)
	{
		canonical_emit(sorted, nparams, key, key_len, &sink);
		ok = sink.ok && EVP_DigestFinal_ex(digest_ctx, inner, NULL) == 1;
	}

	for (int i = 0; ok && i < HMAC_BLOCK; i++)
		pad[i] = block[i] ^ 0x5c;
	ok = ok && EVP_DigestInit_ex(digest_ctx, sha256_md, NULL) == 1 &&
		EVP_DigestUpdate(digest_ctx, pad, HMAC_BLOCK) == 1 &&
		EVP_DigestUpdate(digest_ctx, inner, SHA256_LEN) == 1 &&
		EVP_DigestFinal_ex(digest_ctx, out, NULL) == 1;

	/* The padded key is as secret as the key itself. */
	memset(block, 0, sizeof(block));
	memset(pad, 0, sizeof(pad));
	return ok;
}

bool
wx_sign_compute(WxSignType type, const WxParam *sorted, int nparams,
				const char *key, size_t key_len, char *hex)
{
	unsigned char digest[SHA256_LEN];

	if (!digest_ready())
		return false;
	switch (type)
	{
		case WX_SIGN_MD5:
			if (!sign_md5(sorted, nparams, key, key_len, digest))
				return false;
			hex_upper(digest, MD5_LEN, hex);
			return true;
		case WX_SIGN_HMAC_SHA256:
			if (!sign_hmac_sha256(sorted, nparams, key, key_len, digest))
				return false;
			hex_upper(digest, SHA256_LEN, hex);
			return true;
		default:
			return false;
	}
}

bool
wx_sign_equal(const char *expected, size_t expected_len,
			  const char *received, size_t received_len)
{
	unsigned char diff = (unsigned char) (expected_len != received_len);

	/*
	 * Walk the expected signature in full whatever arrives; a short
	 * received string is compared against itself modulo its length so no
	 * read goes past it, and the length mismatch already decided.
	 */
	for (size_t i = 0; i < expected_len; i++)
	{
		unsigned char e = (unsigned char) expected[i];
		unsigned char r = received_len > 0 ?
			(unsigned char) received[i % received_len] : 0;

		/* Fold a-f onto A-F without branching on secret-derived data. */
		r ^= (unsigned char) ((((unsigned) (r - 'a') <= 'f' - 'a')) << 5);
		diff |= e ^ r;
	}
	return diff == 0 && expected_len > 0;
}

bool
wx_md5_hex_lower(const char *data, size_t len, char *hex)
{
	unsigned char digest[MD5_LEN];

	if (!digest_ready() ||
		EVP_Digest(data, len, digest, NULL, md5_md, NULL) != 1)
		return false;
	hex_upper(digest, MD5_LEN, hex);
	for (int i = 0; i < 2 * MD5_LEN; i++)
		if (hex[i] >= 'A' && hex[i] <= 'F')
			hex[i] += 'a' - 'A';
	return true;
}

size_t
wx_nonce_from_random(const unsigned char *rnd, size_t rnd_len, char *out,
					 size_t out_len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	size_t		n = 0;

	for (size_t i = 0; i < rnd_len && n < out_len; i++)
	{
		/* 248 = 4 * 62: larger bytes would favour the first letters. */
		if (rnd[i] < 4 * WX_NONCE_ALPHABET_LEN)
			out[n++] = alphabet[rnd[i] % WX_NONCE_ALPHABET_LEN];
	}
	return n;
}
