/*
 * rsa_core.c
 *	  The API v3 core alone: request signatures per second on one core
 *	  (wx_v3_sign_request with the cached merchant key, over a JSAPI prepay
 *	  body), against the floor of OpenSSL signing a ready SHA-256 digest
 *	  with a prepared context (what `openssl speed rsa2048` times); and, for
 *	  the notification path, signature verifications and AES-256-GCM
 *	  decryptions per second.
 *
 *	  gcc -O2 -Isrc -o rsa_core bench/rsa_core.c src/wx_rsa.c src/wx_v3.c src/wx_aes.c src/wx_sign.c -lssl -lcrypto
 *	  ./rsa_core KEY.pem [seconds-per-measurement]
 *
 * Each line printed is "name value" (operations per second, median of 3
 * timed runs, CPU time of this thread) for bench/bench.py.  The official
 * request vector (wxpay-v3-api.md §8.1 S3) is checked first, so a wrong
 * core never reports a speed.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "wx_aes.h"
#include "wx_rsa.h"
#include "wx_v3.h"

static const char body[] =
"{\"appid\":\"wxd678efh567hg6787\",\"mchid\":\"1900007291\",\"description\":\"Image形象店-深圳腾大-QQ公仔\","
"\"out_trade_no\":\"1217752501201407033233368018\",\"notify_url\":\"https://www.weixin.qq.com/wxpay/pay.php\","
"\"amount\":{\"total\":100,\"currency\":\"CNY\"},\"payer\":{\"openid\":\"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\"}}";
static const char s3[] = "jnks4dlrPw3ZX+ozVvSK39oa0t7OMBsg83BHAwd8BRdUFiVaQNTLTvci+wURgP1OQBbKYhFG";

static char *pem;
static size_t pem_len;
static char *pub_pem;			/* its public half, as a WeChat Pay key would be */
static long pub_len;
static char sig[WX_RSA_SIG_B64_MAX];		/* S3, the request's signature */
static char answer_sig[WX_RSA_SIG_B64_MAX];	/* the same body signed as an answer */
static EVP_PKEY_CTX *floor_ctx;
static unsigned char digest[32];
static volatile unsigned sink;

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What the extension does per request: key from the cache, then sign. */
static void
op_sign(void)
{
	const WxKey *key = wx_key_private(pem, pem_len);
	char		b64[WX_RSA_SIG_B64_MAX];

	wx_v3_sign_request(key, "POST", "/v3/pay/transactions/jsapi", "1554208460",
					   "593BEC0C930BF1AFEB40B4A08C8FB242", body, sizeof(body) - 1, b64);
	sink += (unsigned char) b64[0];
}

/* The same without the cache: parse the PEM every time. */
static void
op_sign_uncached(void)
{
	wx_key_cache_clear();
	op_sign();
}

/* The floor: one RSA signature of a ready digest, context prepared. */
static void
op_floor(void)
{
	unsigned char out[512];
	size_t		n = sizeof(out);

	EVP_PKEY_sign(floor_ctx, out, &n, digest, sizeof(digest));
	sink += out[0];
}

/* A notification's signature check, with its public key cached. */
static void
op_verify(void)
{
	const WxKey *key = wx_key_public(pub_pem, pub_len);

	sink += wx_v3_verify(key, "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", answer_sig,
						 body, sizeof(body) - 1, 1554208460);
}

/* A payment resource's decryption (wxpay-v3-api.md §8.5 A1). */
static void
op_gcm(void)
{
	unsigned char out[64];
	size_t		len;

	sink += wx_gcm_decrypt("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", 32, "uluk4a9R25RW", 12,
						   "associatedData", 14, "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", 32, out, &len);
}

/* Operations per CPU second: median of 3 runs of about `seconds` each. */
static double
rate(void (*op) (void), double seconds)
{
	double		r[3],
				x;
	long		batch = 1;

	for (;;)
	{
		double		t0 = cpu_now();

		for (long i = 0; i < batch; i++)
			op();
		if (cpu_now() - t0 > 0.02)
			break;
		batch *= 2;
	}
	for (int k = 0; k < 3; k++)
	{
		long		n = 0;
		double		t0 = cpu_now(),
					t;

		do
		{
			for (long i = 0; i < batch; i++)
				op();
			n += batch;
		} while ((t = cpu_now() - t0) < seconds);
		r[k] = n / t;
	}
	if (r[0] > r[1])
		x = r[0], r[0] = r[1], r[1] = x;
	if (r[1] > r[2])
		r[1] = r[2];
	return r[0] > r[1] ? r[0] : r[1];
}

/* The key file's PEM text, into pem. */
static void
read_key(const char *path)
{
	FILE	   *f = fopen(path, "rb");

	if (f == NULL)
	{
		perror(path);
		exit(2);
	}
	pem = malloc(1 << 16);
	pem_len = fread(pem, 1, (1 << 16) - 1, f);
	pem[pem_len] = '\0';
	fclose(f);
}

int
main(int argc, char **argv)
{
	double		seconds = argc > 2 ? atof(argv[2]) : 1.0;
	BIO		   *bio;
	BIO		   *pub_bio;
	EVP_PKEY   *pkey;

	if (argc < 2)
	{
		fprintf(stderr, "usage: rsa_core KEY.pem [seconds]\n");
		return 2;
	}
	read_key(argv[1]);
	if (!wx_v3_sign_request(wx_key_private(pem, pem_len), "POST", "/v3/pay/transactions/jsapi", "1554208460",
							"593BEC0C930BF1AFEB40B4A08C8FB242", body, sizeof(body) - 1, sig) ||
		strncmp(sig, s3, strlen(s3)) != 0)
	{
		fprintf(stderr, "rsa_core: the official vector S3 does not reproduce\n");
		return 1;
	}
	bio = BIO_new_mem_buf(pem, (int) pem_len);
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	floor_ctx = EVP_PKEY_CTX_new(pkey, NULL);
	EVP_PKEY_sign_init(floor_ctx);
	EVP_PKEY_CTX_set_rsa_padding(floor_ctx, RSA_PKCS1_PADDING);
	EVP_PKEY_CTX_set_signature_md(floor_ctx, EVP_sha256());
	EVP_Digest(body, sizeof(body) - 1, digest, NULL, EVP_sha256(), NULL);
	pub_bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(pub_bio, pkey);
	pub_len = BIO_get_mem_data(pub_bio, &pub_pem);
	{
		WxSlice		lines[3] = {{"1554208460", 10}, {"593BEC0C930BF1AFEB40B4A08C8FB242", 32},
		{body, sizeof(body) - 1}};

		wx_rsa_sign_lines(wx_key_private(pem, pem_len), lines, 3, answer_sig);
	}
	if (wx_v3_verify(wx_key_public(pub_pem, pub_len), "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", answer_sig,
					 body, sizeof(body) - 1, 1554208460) != WX_V3_OK)
	{
		fprintf(stderr, "rsa_core: an answer signed with the key does not verify with its public key\n");
		return 1;
	}

	printf("v3_sign_core %.1f\n", rate(op_sign, seconds));
	printf("v3_sign_floor %.1f\n", rate(op_floor, seconds));
	printf("v3_sign_uncached %.1f\n", rate(op_sign_uncached, seconds));
	printf("v3_verify_core %.1f\n", rate(op_verify, seconds));
	printf("v3_gcm_core %.1f\n", rate(op_gcm, seconds));
	EVP_PKEY_CTX_free(floor_ctx);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	BIO_free(pub_bio);
	return sink == 0xdeadbeef;
}
