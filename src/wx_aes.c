/*
 * wx_aes.c
 *	  req_info of refund notifications: strict base64 and AES-256-ECB with
 *	  PKCS#7, independent of PostgreSQL.
 *
 * ECB has no integrity protection; the padding check is the only sign of
 * a wrong key or tampering, so callers treat a decrypted message as a
 * trigger to confirm with refundquery, not as proof.
 */
#include "wx_aes.h"

#include <string.h>

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
