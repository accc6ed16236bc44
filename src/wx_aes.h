/*
 * wx_aes.h
 *	  Decryption of what WeChat Pay encrypts, without PostgreSQL: v2 refund
 *	  notifications' req_info and v3 resources (notifications, platform
 *	  certificates).
 *
 * req_info is base64 of AES-256-ECB with PKCS#7 padding, keyed by the
 * lower-case hex MD5 of the API key used as 32 ASCII bytes.  A v3 resource
 * is base64 of AES-256-GCM ciphertext followed by its 16-byte tag, keyed by
 * the 32-byte APIv3 key itself, with a 12-byte nonce and associated data.
 */
#ifndef WX_AES_H
#define WX_AES_H

#include <stdbool.h>
#include <stddef.h>

typedef enum WxAesStatus
{
	WX_AES_OK = 0,
	WX_AES_BAD_BASE64,			/* not canonical base64 */
	WX_AES_BAD_LENGTH,			/* empty or not whole 16-byte blocks */
	WX_AES_BAD_PADDING,			/* wrong key or tampered ciphertext */
	WX_AES_FAILED,				/* OpenSSL failed */
	WX_AES_BAD_KEY,				/* GCM: the APIv3 key is not 32 bytes */
	WX_AES_BAD_NONCE,			/* GCM: the nonce is not 12 bytes */
	WX_AES_BAD_TAG				/* GCM: wrong key, nonce, AAD, or tampering */
} WxAesStatus;

#define WX_GCM_KEY_LEN 32
#define WX_GCM_NONCE_LEN 12
#define WX_GCM_TAG_LEN 16

/* Upper bound of the decoded size of len base64 characters. */
extern size_t wx_base64_decoded_max(size_t len);

/*
 * Strict base64 decoding (RFC 4648 alphabet, '=' padding, no white
 * space).  Returns the decoded length, or -1 if the input is not base64.
 */
extern long wx_base64_decode(const char *in, size_t len, unsigned char *out);

/*
 * Decrypt req_info with the merchant's API key into out, which must hold
 * wx_base64_decoded_max(b64_len) bytes; *out_len gets the plaintext size.
 */
extern WxAesStatus wx_refund_decrypt(const char *b64, size_t b64_len,
									 const char *api_key, size_t key_len,
									 unsigned char *out, size_t *out_len);

/*
 * Decrypt and authenticate a v3 resource: b64 is base64(ciphertext||tag),
 * aad may be empty.  out must hold wx_base64_decoded_max(b64_len) bytes;
 * *out_len gets the plaintext size.  Nothing is returned unless the tag
 * verifies (out is zeroed then).
 */
extern WxAesStatus wx_gcm_decrypt(const char *key, size_t key_len,
								  const char *nonce, size_t nonce_len,
								  const char *aad, size_t aad_len,
								  const char *b64, size_t b64_len,
								  unsigned char *out, size_t *out_len);

/* A short English description of a status, for messages. */
extern const char *wx_aes_status_text(WxAesStatus status);

#endif							/* WX_AES_H */
