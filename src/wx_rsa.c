/*
 * wx_rsa.c
 *	  RSA keys, certificate serials and SHA256-RSA2048 signatures for API
 *	  v3, independent of PostgreSQL (see wx_rsa.h).
 *
 * Parsing a PEM costs far more than hashing it, so parsed keys are kept in
 * a process-wide cache keyed by the SHA-256 of the PEM text: a merchant's
 * key is parsed once per process, not once per request or notification.
 */
#include "wx_rsa.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "wx_aes.h"

#define MIN_RSA_BITS 2048
#define MAX_SIG_BYTES 512

typedef enum KeyKind
{
	KEY_PRIVATE = 'S',
	KEY_PUBLIC = 'V'
} KeyKind;

typedef struct CacheEntry
{
	unsigned char digest[32];	/* SHA-256 of kind and PEM text */
	EVP_PKEY   *pkey;			/* NULL: unused slot */
} CacheEntry;

static CacheEntry key_cache[WX_KEY_CACHE_SIZE];
static int	next_victim;

/*
 * SHA-256, fetched once: EVP_sha256() makes OpenSSL 3 fetch the provider's
 * implementation on every init, which costs about as much as verifying.
 */
static const EVP_MD *
sha256(void)
{
	static EVP_MD *md = NULL;

	if (md == NULL)
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
	return md != NULL ? md : EVP_sha256();
}

/* Never prompt for a pass phrase: an encrypted key is simply unusable. */
static int
no_pass_phrase(char *buf, int size, int rwflag, void *u)
{
	(void) buf;
	(void) size;
	(void) rwflag;
	(void) u;
	return 0;
}

/* Whether pkey is an RSA key big enough for WeChat Pay. */
static EVP_PKEY *
require_rsa(EVP_PKEY *pkey)
{
	if (pkey != NULL &&
		(EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA || EVP_PKEY_bits(pkey) < MIN_RSA_BITS ||
		 EVP_PKEY_size(pkey) > MAX_SIG_BYTES))
	{
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

/* Parse a private key PEM (PKCS#8 or PKCS#1, unencrypted). */
static EVP_PKEY *
parse_private(const char *pem, size_t len)
{
	BIO		   *bio = BIO_new_mem_buf(pem, (int) len);
	EVP_PKEY   *pkey = NULL;

	if (bio != NULL)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_pass_phrase, NULL);
	BIO_free(bio);
	return require_rsa(pkey);
}

/* Parse a PUBLIC KEY PEM, or failing that a CERTIFICATE PEM's key. */
static EVP_PKEY *
parse_public(const char *pem, size_t len)
{
	BIO		   *bio = BIO_new_mem_buf(pem, (int) len);
	EVP_PKEY   *pkey = NULL;
	X509	   *cert;

	if (bio == NULL)
		return NULL;
	pkey = PEM_read_bio_PUBKEY(bio, NULL, no_pass_phrase, NULL);
	if (pkey == NULL && BIO_reset(bio) == 1 &&
		(cert = PEM_read_bio_X509(bio, NULL, no_pass_phrase, NULL)) != NULL)
	{
		pkey = X509_get_pubkey(cert);
		X509_free(cert);
	}
	BIO_free(bio);
	return require_rsa(pkey);
}

/* The cache's key for a PEM of a kind. */
static bool
cache_digest(KeyKind kind, const char *pem, size_t len, unsigned char *digest)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char k = (unsigned char) kind;
	bool		ok;

	ok = ctx != NULL && EVP_DigestInit_ex(ctx, sha256(), NULL) == 1 &&
		EVP_DigestUpdate(ctx, &k, 1) == 1 && EVP_DigestUpdate(ctx, pem, len) == 1 &&
		EVP_DigestFinal_ex(ctx, digest, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* A cached key of a kind for a PEM, parsing it on first use. */
static const WxKey *
cached_key(KeyKind kind, const char *pem, size_t len)
{
	unsigned char digest[32];
	EVP_PKEY   *pkey;
	CacheEntry *slot;

	if (pem == NULL || len == 0 || len > (size_t) 1 << 20 ||
		!cache_digest(kind, pem, len, digest))
		return NULL;
	for (int i = 0; i < WX_KEY_CACHE_SIZE; i++)
		if (key_cache[i].pkey != NULL && memcmp(key_cache[i].digest, digest, 32) == 0)
			return (const WxKey *) key_cache[i].pkey;

	pkey = kind == KEY_PRIVATE ? parse_private(pem, len) : parse_public(pem, len);
	/* Leave nothing on OpenSSL's error queue for libcurl to trip over. */
	ERR_clear_error();
	if (pkey == NULL)
		return NULL;
	slot = &key_cache[next_victim];
	next_victim = (next_victim + 1) % WX_KEY_CACHE_SIZE;
	EVP_PKEY_free(slot->pkey);
	memcpy(slot->digest, digest, 32);
	slot->pkey = pkey;
	return (const WxKey *) pkey;
}

/* The cached private key of a PEM. */
const WxKey *
wx_key_private(const char *pem, size_t len)
{
	return cached_key(KEY_PRIVATE, pem, len);
}

/* The cached verification key of a PEM. */
const WxKey *
wx_key_public(const char *pem, size_t len)
{
	return cached_key(KEY_PUBLIC, pem, len);
}

/* EVP_PKEY_eq compares the public parts. */
bool
wx_key_pair_matches(const WxKey *private_key, const WxKey *public_key)
{
	bool		same = EVP_PKEY_eq((const EVP_PKEY *) private_key,
								   (const EVP_PKEY *) public_key) == 1;

	ERR_clear_error();
	return same;
}

/* Free every cached key. */
void
wx_key_cache_clear(void)
{
	for (int i = 0; i < WX_KEY_CACHE_SIZE; i++)
	{
		EVP_PKEY_free(key_cache[i].pkey);
		key_cache[i].pkey = NULL;
	}
	next_victim = 0;
}

/* The serial's magnitude bytes, as openssl x509 -serial prints them. */
bool
wx_cert_serial(const char *pem, size_t len, char *hex)
{
	BIO		   *bio = BIO_new_mem_buf(pem, (int) len);
	X509	   *cert = bio ? PEM_read_bio_X509(bio, NULL, no_pass_phrase, NULL) : NULL;
	const ASN1_INTEGER *serial = cert ? X509_get0_serialNumber(cert) : NULL;
	bool		ok = false;

	if (serial != NULL && ASN1_STRING_type(serial) == V_ASN1_INTEGER &&
		ASN1_STRING_length(serial) >= 1 && ASN1_STRING_length(serial) <= 20)
	{
		const unsigned char *bytes = ASN1_STRING_get0_data(serial);
		int			n = ASN1_STRING_length(serial);

		for (int i = 0; i < n; i++)
			snprintf(hex + 2 * i, 3, "%02X", bytes[i]);
		ok = true;
	}
	X509_free(cert);
	BIO_free(bio);
	ERR_clear_error();
	return ok;
}

/* An ASN.1 time as seconds since the epoch (UTC); false if unreadable. */
static bool
asn1_time_epoch(const ASN1_TIME *t, int64_t *epoch)
{
	ASN1_TIME  *zero = ASN1_TIME_set(NULL, 0);
	int			days = 0,
				secs = 0;
	bool		ok = zero != NULL && t != NULL && ASN1_TIME_diff(&days, &secs, zero, t) == 1;

	ASN1_TIME_free(zero);
	*epoch = (int64_t) days * 86400 + secs;
	return ok;
}

/* The certificate's notBefore and notAfter, as seconds since the epoch. */
bool
wx_cert_validity(const char *pem, size_t len, int64_t *not_before, int64_t *not_after)
{
	BIO		   *bio = BIO_new_mem_buf(pem, (int) len);
	X509	   *cert = bio ? PEM_read_bio_X509(bio, NULL, no_pass_phrase, NULL) : NULL;
	bool		ok;

	ok = cert != NULL &&
		asn1_time_epoch(X509_get0_notBefore(cert), not_before) &&
		asn1_time_epoch(X509_get0_notAfter(cert), not_after);
	X509_free(cert);
	BIO_free(bio);
	ERR_clear_error();
	return ok;
}

/*
 * Feed the pieces, each followed by terminator (NULL: nothing), to a
 * digest-sign or digest-verify context.
 */
static bool
feed(EVP_MD_CTX *ctx, bool signing, const WxSlice *pieces, int n, const char *terminator)
{
	int			(*update) (EVP_MD_CTX *, const void *, size_t) =
		signing ? EVP_DigestSignUpdate : EVP_DigestVerifyUpdate;

	for (int i = 0; i < n; i++)
		if (update(ctx, pieces[i].data, pieces[i].len) != 1 ||
			(terminator != NULL && update(ctx, terminator, strlen(terminator)) != 1))
			return false;
	return true;
}

/* Sign pieces (see feed) into base64. */
static bool
sign_pieces(const WxKey *key, const WxSlice *pieces, int n, const char *terminator,
			char *b64)
{
	EVP_PKEY   *pkey = (EVP_PKEY *) key;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[MAX_SIG_BYTES];
	size_t		siglen = sizeof(sig);
	bool		ok;

	ok = ctx != NULL && pkey != NULL &&
		EVP_DigestSignInit(ctx, NULL, sha256(), NULL, pkey) == 1 &&
		feed(ctx, true, pieces, n, terminator) &&
		EVP_DigestSignFinal(ctx, sig, &siglen) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (ok)
		wx_base64_encode(sig, siglen, b64);
	return ok;
}

/* Verify a base64 signature over pieces (see feed). */
static bool
verify_pieces(const WxKey *key, const WxSlice *pieces, int npieces, const char *terminator,
			  const char *sig, size_t sig_len)
{
	EVP_PKEY   *pkey = (EVP_PKEY *) key;
	unsigned char raw[MAX_SIG_BYTES + 3];
	EVP_MD_CTX *ctx;
	long		n;
	bool		ok;

	/* A probe or any other non-signature is refused before OpenSSL sees it. */
	if (pkey == NULL || sig == NULL || sig_len == 0 ||
		wx_base64_decoded_max(sig_len) > sizeof(raw) ||
		(n = wx_base64_decode(sig, sig_len, raw)) != EVP_PKEY_size(pkey))
		return false;
	ctx = EVP_MD_CTX_new();
	ok = ctx != NULL &&
		EVP_DigestVerifyInit(ctx, NULL, sha256(), NULL, pkey) == 1 &&
		feed(ctx, false, pieces, npieces, terminator) &&
		EVP_DigestVerifyFinal(ctx, raw, (size_t) n) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* Each line followed by "\n": every v3 message. */
bool
wx_rsa_sign_lines(const WxKey *key, const WxSlice *lines, int nlines, char *b64)
{
	return sign_pieces(key, lines, nlines, "\n", b64);
}

/* Each line followed by "\n": every v3 message. */
bool
wx_rsa_verify_lines(const WxKey *key, const WxSlice *lines, int nlines,
					const char *sig, size_t sig_len)
{
	return verify_pieces(key, lines, nlines, "\n", sig, sig_len);
}

/* Bytes as they are. */
bool
wx_rsa_sign_bytes(const WxKey *key, const char *data, size_t len, char *b64)
{
	WxSlice		piece = {data, len};

	return sign_pieces(key, &piece, 1, NULL, b64);
}

/* Bytes as they are. */
bool
wx_rsa_verify_bytes(const WxKey *key, const char *data, size_t len,
					const char *sig, size_t sig_len)
{
	WxSlice		piece = {data, len};

	return verify_pieces(key, &piece, 1, NULL, sig, sig_len);
}

/* EVP_EncodeBlock: standard alphabet, padding, no line breaks, NUL. */
void
wx_base64_encode(const unsigned char *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *) out, in, (int) len);
}
