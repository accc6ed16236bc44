/*
 * fuzz_sign.c
 *	  Fuzzes the canonical string and both digests: input lines are
 *	  name=value pairs.  The streamed digest input must equal the written
 *	  canonical string, and signatures must compare equal only to themselves.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "fuzz_common.h"
#include "wx_sign.h"

#define MAX_PARAMS 64

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	WxParam		params[MAX_PARAMS];
	int			n = 0;
	size_t		start = 0;
	const char *s = (const char *) data;
	char		md5[WX_SIGN_MAX_HEX + 1];
	char		hmac[WX_SIGN_MAX_HEX + 1];
	char		check[WX_SIGN_MAX_HEX + 1];
	unsigned char digest[16];
	char	   *canonical;
	size_t		len;

	for (size_t i = 0; i <= size && n < MAX_PARAMS; i++)
	{
		if (i < size && s[i] != '\n')
			continue;
		const char *eq = memchr(s + start, '=', i - start);

		if (eq != NULL)
		{
			params[n].name = s + start;
			params[n].name_len = eq - (s + start);
			params[n].value = eq + 1;
			params[n].value_len = s + i - (eq + 1);
			n++;
		}
		start = i + 1;
	}
	wx_params_sort(params, n);
	FUZZ_ASSERT(wx_sign_compute(WX_SIGN_MD5, params, n, "k", 1, md5));
	FUZZ_ASSERT(wx_sign_compute(WX_SIGN_HMAC_SHA256, params, n, "k", 1, hmac));
	FUZZ_ASSERT(strlen(md5) == 32 && strlen(hmac) == 64);

	/* The streamed MD5 equals MD5 over the written canonical string. */
	len = wx_canonical_length(params, n, 1);
	canonical = malloc(len + 1);
	wx_canonical_write(params, n, "k", 1, canonical);
	FUZZ_ASSERT(EVP_Digest(canonical, len, digest, NULL, EVP_md5(), NULL) == 1);
	for (int i = 0; i < 16; i++)
		snprintf(check + 2 * i, 3, "%02X", digest[i]);
	FUZZ_ASSERT(strcmp(check, md5) == 0);
	free(canonical);

	FUZZ_ASSERT(wx_sign_equal(md5, 32, md5, 32));
	FUZZ_ASSERT(!wx_sign_equal(md5, 32, hmac, 64));
	if (size >= 32)
	{
		/* Equal exactly when each byte is the same hex digit, any case. */
		bool		same = true;

		for (int i = 0; i < 32; i++)
		{
			char		c = s[i];

			if (c >= 'a' && c <= 'f')
				c -= 'a' - 'A';
			same &= c == md5[i];
		}
		FUZZ_ASSERT(wx_sign_equal(md5, 32, s, 32) == same);
	}
	return 0;
}
