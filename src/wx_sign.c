/*
 * wx_sign.c
 *	  WeChat Pay v2 signatures, independent of PostgreSQL.
 *
 * The canonical string is "name=value" for every parameter except "sign"
 * and empty values, sorted by name bytewise, joined with '&', followed by
 * "&key=<API key>".  MD5 hashes it; HMAC-SHA256 uses the API key as the
 * HMAC key and still hashes the "&key=" suffix (every SDK does this).
 * SHA-256 comes from OpenSSL's EVP interface, and HMAC is built from two
 * SHA-256 passes so that the string can be streamed.  MD5 uses OpenSSL's
 * low-level MD5_Init/Update/Final (deprecated in OpenSSL 3, not removed):
 * through EVP each signature paid a provider context reset and three
 * dispatches, about 40 ns of a 1 µs call, and MD5 signing is the hot path
 * of every v2 request and notification.  Without that API (OpenSSL built
 * with no-deprecated) MD5 goes through EVP as well.
 */
/* explicit_bzero, also under -std=c99 (the unit tests). */
#define _DEFAULT_SOURCE
/* MD5_Init and friends, declared deprecated by OpenSSL 3. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "wx_sign.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/opensslconf.h>
#if !defined(OPENSSL_NO_DEPRECATED_3_0) && !defined(OPENSSL_NO_MD5)
#include <openssl/md5.h>
#define WX_MD5_LOW_LEVEL 1
#endif

#define HMAC_BLOCK 64
#define SHA256_LEN 32
#define MD5_LEN 16

/*
 * Where canonical-string pieces go: a flat buffer, or a digest fed through
 * a staging buffer so that a typical request (a few hundred bytes) reaches
 * the digest in one update instead of four per parameter.
 */
#define SINK_STAGE 1024

typedef struct CanonicalSink
{
	EVP_MD_CTX *md;				/* digest to update, or NULL */
#ifdef WX_MD5_LOW_LEVEL
	MD5_CTX    *md5;			/* or this MD5 to update, or NULL */
#endif
	char	   *buf;			/* where bytes are written: out, or stage */
	size_t		cap;			/* room in buf (SIZE_MAX for a flat buffer) */
	size_t		used;			/* bytes in buf not yet digested */
	size_t		staged;			/* most bytes ever in stage (to wipe) */
	bool		ok;
	char		stage[SINK_STAGE];
} CanonicalSink;

/* A sink writing into out, which the caller sized with wx_canonical_length. */
static void
sink_init_flat(CanonicalSink *sink, char *out)
{
	sink->md = NULL;
#ifdef WX_MD5_LOW_LEVEL
	sink->md5 = NULL;
#endif
	sink->buf = out;
	sink->cap = SIZE_MAX;
	sink->used = 0;
	sink->staged = 0;
	sink->ok = true;
}

/* A sink feeding md, which the caller has initialised. */
static void
sink_init_digest(CanonicalSink *sink, EVP_MD_CTX *md)
{
	sink->md = md;
#ifdef WX_MD5_LOW_LEVEL
	sink->md5 = NULL;
#endif
	sink->buf = sink->stage;
	sink->cap = SINK_STAGE;
	sink->used = 0;
	sink->staged = 0;
	sink->ok = true;
}

#ifdef WX_MD5_LOW_LEVEL
/* A sink feeding md5, which the caller has initialised. */
static void
sink_init_md5(CanonicalSink *sink, MD5_CTX *md5)
{
	sink_init_digest(sink, NULL);
	sink->md5 = md5;
}
#endif

/* Whether the sink feeds a digest (not a flat buffer). */
static inline bool
sink_digests(const CanonicalSink *sink)
{
#ifdef WX_MD5_LOW_LEVEL
	if (sink->md5 != NULL)
		return true;
#endif
	return sink->md != NULL;
}

/* Hand the staged bytes to the digest. */
static void
sink_flush(CanonicalSink *sink)
{
	if (sink_digests(sink) && sink->used > 0)
	{
		if (sink->used > sink->staged)
			sink->staged = sink->used;
#ifdef WX_MD5_LOW_LEVEL
		if (sink->md5 != NULL)
		{
			if (sink->ok && MD5_Update(sink->md5, sink->buf, sink->used) != 1)
				sink->ok = false;
		}
		else
#endif
		if (sink->ok && EVP_DigestUpdate(sink->md, sink->buf, sink->used) != 1)
			sink->ok = false;
		sink->used = 0;
	}
}

/* sink_put's slow path: fill the stage, digest it, go on. */
static void
sink_put_spill(CanonicalSink *sink, const char *data, size_t len)
{
	while (len > sink->cap - sink->used)
	{
		size_t		part = sink->cap - sink->used;

		memcpy(sink->buf + sink->used, data, part);
		sink->used += part;
		sink_flush(sink);
		data += part;
		len -= part;
	}
	memcpy(sink->buf + sink->used, data, len);
	sink->used += len;
}

/* Append len bytes; inlined, so the one-byte separators become stores. */
static inline void
sink_put(CanonicalSink *sink, const char *data, size_t len)
{
	if (len <= sink->cap - sink->used)
	{
		memcpy(sink->buf + sink->used, data, len);
		sink->used += len;
	}
	else
		sink_put_spill(sink, data, len);
}

/* Emit the canonical string of sorted params into sink. */
static void
canonical_emit(const WxParam *sorted, int nparams, const char *key,
			   size_t key_len, CanonicalSink *sink)
{
	for (int i = 0; i < nparams; i++)
	{
		const WxParam *p = &sorted[i];

		if (!wx_param_is_signed(p))
			continue;
		sink_put(sink, p->name, p->name_len);
		sink_put(sink, "=", 1);
		sink_put(sink, p->value, p->value_len);
		sink_put(sink, "&", 1);
	}
	sink_put(sink, "key=", 4);
	sink_put(sink, key, key_len);
	sink_flush(sink);
	/* The staged string ends with the API key. */
	if (sink_digests(sink))
		explicit_bzero(sink->stage, sink->staged);
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

/*
 * Bytewise order of two names.  Names are short and mostly differ in their
 * first bytes, where a plain loop beats a call to memcmp.
 */
static int
compare_names(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t		n = alen < blen ? alen : blen;

	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (unsigned char) a[i] - (unsigned char) b[i];
	return (alen > blen) - (alen < blen);
}

static int
param_cmp(const void *a, const void *b)
{
	const WxParam *pa = a;
	const WxParam *pb = b;

	return compare_names(pa->name, pa->name_len, pb->name, pb->name_len);
}

/*
 * Requests have a dozen parameters: insertion sort beats qsort's setup
 * there (glibc's is a merge sort that allocates); qsort for long lists.
 */
#define INSERTION_SORT_MAX 24

void
wx_params_sort(WxParam *params, int nparams)
{
	if (nparams > INSERTION_SORT_MAX)
	{
		qsort(params, nparams, sizeof(WxParam), param_cmp);
		return;
	}
	for (int i = 1; i < nparams; i++)
	{
		WxParam		p = params[i];
		int			j = i;

		while (j > 0 && param_cmp(&params[j - 1], &p) > 0)
		{
			params[j] = params[j - 1];
			j--;
		}
		params[j] = p;
	}
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
	CanonicalSink sink;

	sink_init_flat(&sink, buf);
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
	CanonicalSink sink;
#ifdef WX_MD5_LOW_LEVEL
	MD5_CTX		md5;
	bool		ok;

	if (MD5_Init(&md5) != 1)
		return false;
	sink_init_md5(&sink, &md5);
	canonical_emit(sorted, nparams, key, key_len, &sink);
	ok = sink.ok && MD5_Final(out, &md5) == 1;
	/* The state has absorbed the API key. */
	explicit_bzero(&md5, sizeof(md5));
	return ok;
#else
	if (EVP_DigestInit_ex(digest_ctx, md5_md, NULL) != 1)
		return false;
	sink_init_digest(&sink, digest_ctx);
	canonical_emit(sorted, nparams, key, key_len, &sink);
	return sink.ok && EVP_DigestFinal_ex(digest_ctx, out, NULL) == 1;
#endif
}

/* HMAC-SHA256 (RFC 2104) over the canonical string, keyed by the API key. */
static bool
sign_hmac_sha256(const WxParam *sorted, int nparams, const char *key,
				 size_t key_len, unsigned char *out)
{
	unsigned char block[HMAC_BLOCK];
	unsigned char pad[HMAC_BLOCK];
	unsigned char inner[SHA256_LEN];
	CanonicalSink sink;
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
		sink_init_digest(&sink, digest_ctx);
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
