/*
 * wx_aes.c
 *	  req_info of refund notifications (strict base64, AES-256-ECB with
 *	  PKCS#7) and API v3 resources (AES-256-GCM), independent of PostgreSQL.
 *
 * ECB has no integrity protection; the padding check is the only sign of
 * a wrong key or tampering, so callers treat a decrypted message as a
 * trigger to confirm with refundquery, not as proof.
 */
#include "wx_aes.h"

#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "wx_sign.h"

#define AES_BLOCK 16

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

size_t
wx_base64_decoded_max(size_t len)
{
	return len / 4 * 3 + 3;
}

long
wx_base64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t		n = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4)
	{
		int			v[4];
		int			pad = 0;

		for (int k = 0; k < 4; k++)
		{
			unsigned char c = (unsigned char) in[i + k];

			/* '=' only at the very end, at most two of them. */
			if (c == '=' && i + 4 == len && k >= 2 && (k == 3 || in[i + 3] == '='))
			{
				v[k] = 0;
				pad++;
			}
			else if ((v[k] = b64_value(c)) < 0 || pad > 0)
				return -1;
		}
		out[n++] = (unsigned char) (v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[n++] = (unsigned char) (v[1] << 4 | v[2] >> 2);
		if (pad < 1)
			out[n++] = (unsigned char) (v[2] << 6 | v[3]);
	}
	return (long) n;
}

/* AES-256-ECB decryption of whole blocks; the padding is checked by us. */
static bool
aes_ecb_decrypt(const unsigned char *key, const unsigned char *in, size_t len,
				unsigned char *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			n1 = 0,
				n2 = 0;
	bool		ok;

	if (ctx == NULL)
		return false;
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_ecb(), NULL, key, NULL) == 1 &&
		EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
		EVP_DecryptUpdate(ctx, out, &n1, in, (int) len) == 1 &&
		EVP_DecryptFinal_ex(ctx, out + n1, &n2) == 1 &&
		(size_t) (n1 + n2) == len;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

static bool
derive_key(const char *api_key, size_t key_len, unsigned char *key)
{
	char		hex[33];

	if (!wx_md5_hex_lower(api_key, key_len, hex))
		return false;
	memcpy(key, hex, 32);
	return true;
}

WxAesStatus
wx_refund_decrypt(const char *b64, size_t b64_len, const char *api_key,
				  size_t key_len, unsigned char *out, size_t *out_len)
{
	unsigned char key[32];
	long		n = wx_base64_decode(b64, b64_len, out);
	unsigned char pad;
	bool		ok;

	*out_len = 0;
	if (n < 0)
		return WX_AES_BAD_BASE64;
	if (n == 0 || n % AES_BLOCK != 0)
		return WX_AES_BAD_LENGTH;
	if (!derive_key(api_key, key_len, key))
		return WX_AES_FAILED;
	ok = aes_ecb_decrypt(key, out, (size_t) n, out);
	memset(key, 0, sizeof(key));
	if (!ok)
		return WX_AES_FAILED;

	pad = out[n - 1];
	if (pad == 0 || pad > AES_BLOCK)
		return WX_AES_BAD_PADDING;
	for (int i = 1; i <= pad; i++)
		if (out[n - i] != pad)
			return WX_AES_BAD_PADDING;
	*out_len = (size_t) n - pad;
	return WX_AES_OK;
}

/* AES-256-GCM decryption of ct with its tag; false on any failure. */
static bool
gcm_open(const unsigned char *key, const unsigned char *nonce,
		 const unsigned char *aad, size_t aad_len, const unsigned char *ct,
		 size_t ct_len, const unsigned char *tag, unsigned char *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			n1 = 0,
				n2 = 0;
	bool		ok;

	if (ctx == NULL)
		return false;
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, WX_GCM_NONCE_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
		(aad_len == 0 || EVP_DecryptUpdate(ctx, NULL, &n1, aad, (int) aad_len) == 1) &&
		EVP_DecryptUpdate(ctx, out, &n1, ct, (int) ct_len) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, WX_GCM_TAG_LEN, (void *) tag) == 1 &&
		EVP_DecryptFinal_ex(ctx, out + n1, &n2) == 1 &&
		(size_t) (n1 + n2) == ct_len;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

/* Lengths first (a wrong key length is a configuration error), then GCM. */
WxAesStatus
wx_gcm_decrypt(const char *key, size_t key_len, const char *nonce, size_t nonce_len,
			   const char *aad, size_t aad_len, const char *b64, size_t b64_len,
			   unsigned char *out, size_t *out_len)
{
	long		n;
	size_t		ct_len;

	*out_len = 0;
	if (key_len != WX_GCM_KEY_LEN)
		return WX_AES_BAD_KEY;
	if (nonce_len != WX_GCM_NONCE_LEN)
		return WX_AES_BAD_NONCE;
	if ((n = wx_base64_decode(b64, b64_len, out)) < 0)
		return WX_AES_BAD_BASE64;
	if (n <= WX_GCM_TAG_LEN || aad_len > INT32_MAX)
		return WX_AES_BAD_LENGTH;
	ct_len = (size_t) n - WX_GCM_TAG_LEN;
	/* In place: EVP allows out == in for GCM; the tag sits after ct. */
	if (!gcm_open((const unsigned char *) key, (const unsigned char *) nonce,
				  (const unsigned char *) (aad ? aad : ""), aad ? aad_len : 0,
				  out, ct_len, out + ct_len, out))
	{
		memset(out, 0, (size_t) n);
		ERR_clear_error();
		return WX_AES_BAD_TAG;
	}
	memset(out + ct_len, 0, WX_GCM_TAG_LEN);
	*out_len = ct_len;
	return WX_AES_OK;
}

/* Messages for each status. */
const char *
wx_aes_status_text(WxAesStatus status)
{
	switch (status)
	{
		case WX_AES_OK:
			return "decrypted";
		case WX_AES_BAD_BASE64:
			return "ciphertext is not base64";
		case WX_AES_BAD_LENGTH:
			return "ciphertext has a wrong length";
		case WX_AES_BAD_PADDING:
			return "padding does not check (wrong key or tampered)";
		case WX_AES_FAILED:
			return "OpenSSL failed";
		case WX_AES_BAD_KEY:
			return "the APIv3 key is not 32 bytes";
		case WX_AES_BAD_NONCE:
			return "the nonce is not 12 bytes";
		case WX_AES_BAD_TAG:
			return "authentication tag does not verify (wrong APIv3 key, or tampered)";
	}
	return "unknown status";
}
