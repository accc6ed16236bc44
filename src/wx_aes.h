/*
 * wx_aes.h
 *	  Decryption of refund notifications' req_info, without PostgreSQL.
 *
 * req_info is base64 of AES-256-ECB with PKCS#7 padding, keyed by the
 * lower-case hex MD5 of the API key used as 32 ASCII bytes.
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
	WX_AES_FAILED				/* OpenSSL failed */
} WxAesStatus;

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

#endif							/* WX_AES_H */
