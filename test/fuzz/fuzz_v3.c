/*
 * fuzz_v3.c
 *	  Fuzzes what API v3 reads from strangers: the signature headers
 *	  (Wechatpay-Timestamp, -Nonce, -Signature) with the raw body, the
 *	  serial header, strict base64 and AES-256-GCM resources.  The first
 *	  byte picks the parser; the rest is split at newlines into its inputs.
 *	  Invariants: a probe never verifies, a serial equals itself exactly when
 *	  it is valid, base64 round-trips, a decrypted resource is shorter than
 *	  its ciphertext.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "fuzz_common.h"
#include "wx_aes.h"
#include "wx_rsa.h"
#include "wx_v3.h"

/* The documentation's sample WeChat Pay public key (wxpay-v3-api.md A.3). */
static const char wechatpay_pub[] =
"-----BEGIN PUBLIC KEY-----\n"
"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwXNI6sdlknHBnK8Fu2U6\n"
"Cwor9qY747jP8KAfeBMeveEt1TqaHkLfaSD07trZLhGpfs8/AHqjhgSMO1O10YQW\n"
"OrrJ4hjIWPKqxbgrYMkBQc+mwdiWp4W3ByCqxBRagCveCXRWCmuJYovl9H/bsDI0\n"
"iGbpVtEOghJtfciisYSgxcLufUDTRkvwxjIBK1pCRjk33jJ5YTBWTHMRtMAOcFLN\n"
"F6hdEYdX8SPsgHHeLZ5Lv2T/686w1xtgCHef/sd4uSfWmyzsalQdHG/e4IyYmrhx\n"
"+O3VBoNDzE3nx23bFeV/RVNCG7cV6VhmYokJNHa/erIPkEmEFID6A5wQOXuxUkmJ\n"
"WwIDAQAB\n"
"-----END PUBLIC KEY-----\n";

/* Up to n newline-separated, NUL-terminated fields of s (the last takes the rest). */
static int
split(char *s, size_t len, char **fields, size_t *lens, int n)
{
	int			k = 0;
	size_t		start = 0;

	for (size_t i = 0; i <= len && k < n; i++)
	{
		if (i < len && (s[i] != '\n' || k == n - 1))
			continue;
		fields[k] = s + start;
		lens[k++] = i - start;
		if (i < len)
			s[i] = '\0';
		start = i + 1;
	}
	return k;
}

/* Timestamp, nonce, signature, body: verified at the official example's time. */
static void
fuzz_verify(char *s, size_t len)
{
	char	   *f[4];
	size_t		l[4];
	const WxKey *key = wx_key_public(wechatpay_pub, sizeof(wechatpay_pub) - 1);
	WxV3Verdict v;

	FUZZ_ASSERT(key != NULL);
	if (split(s, len, f, l, 4) < 4)
		return;
	v = wx_v3_verify(key, f[0], f[1], f[2], f[3], l[3], 1722850421);
	FUZZ_ASSERT(v >= WX_V3_OK && v <= WX_V3_BAD_SIGNATURE);
	FUZZ_ASSERT(wx_v3_verdict_text(v) != NULL);
	if (wx_v3_is_probe(f[2]))
		FUZZ_ASSERT(v != WX_V3_OK);
}

/* A serial header: valid exactly when it equals itself. */
static void
fuzz_serial(char *s, size_t len)
{
	WxV3SerialKind kind = wx_v3_serial_kind(s, strlen(s));

	(void) len;
	FUZZ_ASSERT(wx_v3_serial_equal(s, s) == (kind != WX_SERIAL_INVALID));
}

/*
 * A URL WeChat Pay names: when it is on the base, its path is the rest of
 * it after the base, starts with '/' and has no byte a request line cannot.
 */
static void
fuzz_url(const char *s)
{
	const char *base = "https://api.mch.weixin.qq.com";
	const char *path = wx_v3_url_path_on(base, s);

	if (path == NULL)
		return;
	FUZZ_ASSERT(path == s + strlen(base) && path[0] == '/' && strncasecmp(s, base, strlen(base)) == 0);
	for (const char *c = path; *c; c++)
		FUZZ_ASSERT(*c > ' ' && *c <= '~');
}

/* Base64 that decodes must come back from encoding to the same bytes. */
static void
fuzz_base64(char *s, size_t len)
{
	unsigned char *raw = malloc(wx_base64_decoded_max(len) + 1);
	long		n = wx_base64_decode(s, len, raw);

	if (n >= 0)
	{
		char	   *again = malloc(((size_t) n + 2) / 3 * 4 + 1);
		unsigned char *back = malloc(wx_base64_decoded_max(len) + 1);

		wx_base64_encode(raw, (size_t) n, again);
		FUZZ_ASSERT(strlen(again) == len);
		FUZZ_ASSERT(wx_base64_decode(again, len, back) == n && memcmp(raw, back, (size_t) n) == 0);
		free(again);
		free(back);
	}
	free(raw);
}

/* Nonce, associated data, ciphertext of a resource under a fixed APIv3 key. */
static void
fuzz_gcm(char *s, size_t len)
{
	char	   *f[3];
	size_t		l[3];
	unsigned char *out;
	size_t		out_len;
	WxAesStatus st;

	if (split(s, len, f, l, 3) < 3)
		return;
	out = malloc(wx_base64_decoded_max(l[2]) + 1);
	st = wx_gcm_decrypt("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", 32, f[0], l[0], f[1], l[1],
						f[2], l[2], out, &out_len);
	FUZZ_ASSERT(wx_aes_status_text(st) != NULL);
	if (st == WX_AES_OK)
		FUZZ_ASSERT(out_len + WX_GCM_TAG_LEN <= wx_base64_decoded_max(l[2]));
	else
		FUZZ_ASSERT(out_len == 0);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s;

	if (size < 1)
		return 0;
	s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 4)
	{
		case 0:
			fuzz_verify(s, size - 1);
			break;
		case 1:
			fuzz_serial(s, size - 1);
			fuzz_url(s);
			break;
		case 2:
			fuzz_base64(s, size - 1);
			break;
		default:
			fuzz_gcm(s, size - 1);
			break;
	}
	free(s);
	return 0;
}
