/*
 * sign_core.c
 *	  The PostgreSQL-free signing core alone: signatures per second on one
 *	  core, against the floor of a one-shot OpenSSL digest over the
 *	  already-built canonical string.
 *
 *	  gcc -O2 -Isrc -o sign_core bench/sign_core.c src/wx_sign.c -lssl -lcrypto
 *	  ./sign_core [seconds-per-measurement]
 *
 * Each line printed is "name value" (signatures per second, median of 3
 * timed runs, CPU time of this thread) so bench/run.sh can read it.  The
 * official example's signature is checked first, so a wrong core never
 * reports a speed.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "wx_sign.h"

#define P(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}

/* WeChat Pay's documented example; its MD5 signature is below. */
static const WxParam official[] = {
	P("appid", "wxd930ea5d5a258f4f"),
	P("mch_id", "10000100"),
	P("device_info", "1000"),
	P("body", "test"),
	P("nonce_str", "ibuaiVcKdpRxkhJA"),
};
static const char official_key[] = "192006250b4c09247ec02edce69f6a2d";
static const char official_md5[] = "9A0A8659F005D6984697E2CA0A9CF3B7";

/* A unifiedorder request as the extension sends it (before "sign"). */
static const WxParam unified[] = {
	P("appid", "wx8888888888888888"),
	P("mch_id", "1900000109"),
	P("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
	P("body", "Bench Shop-Item 42"),
	P("out_trade_no", "B000000000042"),
	P("total_fee", "101"),
	P("spbill_create_ip", "203.0.113.7"),
	P("notify_url", "https://shop.example.com/wxpay/notify"),
	P("trade_type", "APP"),
	P("time_expire", "20261127093000"),
};

static volatile unsigned sink;

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct Case
{
	const WxParam *params;
	int			n;
	const char *key;
	size_t		key_len;
	WxSignType	type;
	char	   *canon;			/* the canonical string, for the floors */
	size_t		canon_len;
	const EVP_MD *md;
} Case;

/* What the extension does for every signature: sort a copy, then sign. */
static void
op_core(Case *c)
{
	WxParam		copy[16];
	char		hex[WX_SIGN_MAX_HEX + 1];

	memcpy(copy, c->params, sizeof(WxParam) * c->n);
	wx_params_sort(copy, c->n);
	if (!wx_sign_compute(c->type, copy, c->n, c->key, c->key_len, hex))
		abort();
	sink += (unsigned char) hex[0];
}

/*
 * The floor: one digest over the already-built canonical string (for
 * HMAC, the two SHA-256 passes of RFC 2104 with the padded keys prepared
 * in advance), with a context reused from call to call.
 */
static EVP_MD_CTX *floor_ctx;
static unsigned char floor_ipad[64];
static unsigned char floor_opad[64];

static void
op_floor(Case *c)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned char inner[EVP_MAX_MD_SIZE];
	unsigned int dlen;

	if (c->type == WX_SIGN_MD5)
	{
		if (EVP_DigestInit_ex(floor_ctx, c->md, NULL) != 1 ||
			EVP_DigestUpdate(floor_ctx, c->canon, c->canon_len) != 1 ||
			EVP_DigestFinal_ex(floor_ctx, digest, &dlen) != 1)
			abort();
	}
	else if (EVP_DigestInit_ex(floor_ctx, c->md, NULL) != 1 ||
			 EVP_DigestUpdate(floor_ctx, floor_ipad, 64) != 1 ||
			 EVP_DigestUpdate(floor_ctx, c->canon, c->canon_len) != 1 ||
			 EVP_DigestFinal_ex(floor_ctx, inner, &dlen) != 1 ||
			 EVP_DigestInit_ex(floor_ctx, c->md, NULL) != 1 ||
			 EVP_DigestUpdate(floor_ctx, floor_opad, 64) != 1 ||
			 EVP_DigestUpdate(floor_ctx, inner, dlen) != 1 ||
			 EVP_DigestFinal_ex(floor_ctx, digest, &dlen) != 1)
		abort();
	sink += digest[0];
}

/*
 * Same, but the canonical string is built in a buffer first and hashed in
 * one update: how much the core's piece-by-piece streaming costs.
 */
static void
op_oneshot(Case *c)
{
	WxParam		copy[16];
	char		buf[1024];
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen;
	size_t		len;

	memcpy(copy, c->params, sizeof(WxParam) * c->n);
	wx_params_sort(copy, c->n);
	len = wx_canonical_length(copy, c->n, c->key_len);
	wx_canonical_write(copy, c->n, c->key, c->key_len, buf);
	if (EVP_DigestInit_ex(floor_ctx, c->md, NULL) != 1 ||
		EVP_DigestUpdate(floor_ctx, buf, len) != 1 ||
		EVP_DigestFinal_ex(floor_ctx, digest, &dlen) != 1)
		abort();
	sink += digest[0];
}

/* Only the copy and the sort that op_core starts with. */
static void
op_sort(Case *c)
{
	WxParam		copy[16];

	memcpy(copy, c->params, sizeof(WxParam) * c->n);
	wx_params_sort(copy, c->n);
	sink += (unsigned char) copy[0].name[0];
}

/* Operations per CPU second: median of 3 runs of about `seconds` each. */
static double
rate(void (*op) (Case *), Case *c, double seconds)
{
	double		r[3];
	long		batch = 1000;

	/* Calibrate the batch so a check of the clock costs nothing. */
	for (;;)
	{
		double		t0 = cpu_now();

		for (long i = 0; i < batch; i++)
			op(c);
		if (cpu_now() - t0 > 0.02)
			break;
		batch *= 4;
	}
	for (int k = 0; k < 3; k++)
	{
		long		n = 0;
		double		t0 = cpu_now(),
					t;

		do
		{
			for (long i = 0; i < batch; i++)
				op(c);
			n += batch;
		} while ((t = cpu_now() - t0) < seconds);
		r[k] = n / t;
	}
	/* median of three */
	if (r[0] > r[1])
	{
		double		x = r[0];

		r[0] = r[1];
		r[1] = x;
	}
	if (r[1] > r[2])
		r[1] = r[2];
	return r[0] > r[1] ? r[0] : r[1];
}

static void
setup(Case *c, const WxParam *params, int n, const char *key, WxSignType type)
{
	WxParam		copy[16];

	c->params = params;
	c->n = n;
	c->key = key;
	c->key_len = strlen(key);
	c->type = type;
	/* Fetched once, as the core does: an implicit fetch per call costs more than MD5. */
	c->md = EVP_MD_fetch(NULL, type == WX_SIGN_MD5 ? "MD5" : "SHA256", NULL);
	if (c->md == NULL)
		abort();
	memcpy(copy, params, sizeof(WxParam) * n);
	wx_params_sort(copy, n);
	c->canon_len = wx_canonical_length(copy, n, c->key_len);
	c->canon = malloc(c->canon_len + 1);
	wx_canonical_write(copy, n, key, c->key_len, c->canon);
	c->canon[c->canon_len] = '\0';

	memset(floor_ipad, 0x36, sizeof(floor_ipad));
	memset(floor_opad, 0x5c, sizeof(floor_opad));
	for (size_t i = 0; i < c->key_len && i < 64; i++)
	{
		floor_ipad[i] ^= (unsigned char) key[i];
		floor_opad[i] ^= (unsigned char) key[i];
	}
}

int
main(int argc, char **argv)
{
	double		seconds = argc > 1 ? atof(argv[1]) : 0.3;
	WxParam		copy[16];
	char		hex[WX_SIGN_MAX_HEX + 1];
	struct
	{
		const char *name;
		const WxParam *params;
		int			n;
		WxSignType	type;
	}			cases[] = {
		{"official_md5", official, 5, WX_SIGN_MD5},
		{"official_hmac", official, 5, WX_SIGN_HMAC_SHA256},
		{"unified_md5", unified, 10, WX_SIGN_MD5},
		{"unified_hmac", unified, 10, WX_SIGN_HMAC_SHA256},
	};

	floor_ctx = EVP_MD_CTX_new();
	if (floor_ctx == NULL)
		return 1;
	memcpy(copy, official, sizeof(official));
	wx_params_sort(copy, 5);
	if (!wx_sign_compute(WX_SIGN_MD5, copy, 5, official_key, strlen(official_key), hex) ||
		strcmp(hex, official_md5) != 0)
	{
		fprintf(stderr, "sign_core: official example signs as %s, expected %s\n", hex, official_md5);
		return 1;
	}
	printf("check_official_md5 %s\n", hex);

	for (int i = 0; i < (int) (sizeof(cases) / sizeof(cases[0])); i++)
	{
		Case		c;

		setup(&c, cases[i].params, cases[i].n, official_key, cases[i].type);
		printf("%s_canonical_bytes %zu\n", cases[i].name, c.canon_len);
		printf("%s_core %.0f\n", cases[i].name, rate(op_core, &c, seconds));
		if (cases[i].type == WX_SIGN_MD5)
			printf("%s_oneshot %.0f\n", cases[i].name, rate(op_oneshot, &c, seconds));
		printf("%s_floor %.0f\n", cases[i].name, rate(op_floor, &c, seconds));
		printf("%s_sortonly %.0f\n", cases[i].name, rate(op_sort, &c, seconds));
		fflush(stdout);
		free(c.canon);
	}
	return 0;
}
