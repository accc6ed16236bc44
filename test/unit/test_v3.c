/*
 * test_v3.c
 *	  Unit tests of the API v3 core (wx_rsa, wx_v3, AES-GCM in wx_aes): every
 *	  vector of wxpay-v3-api.md §8 (official S1-S3, local L1-L5, the public-key
 *	  verification example, the Go and Java SDK signer vectors, AES A1-A5, the
 *	  notifications N1 and N2), the timestamp window, probes, serials and the
 *	  key cache.  Vector files are in test/vectors/v3 (README there).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "wx_aes.h"
#include "wx_rsa.h"
#include "wx_v3.h"

#include "unit.h"

#define TS "1554208460"
#define NONCE "593BEC0C930BF1AFEB40B4A08C8FB242"
#define APIV3_KEY "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"

/* A vector file as a malloc'd NUL-terminated string (NULL if missing). */
static char *
slurp(const char *name, size_t *len)
{
	char		path[512];
	FILE	   *f;
	char	   *buf;
	long		n;

	snprintf(path, sizeof(path), "%s/v3/%s", VECTOR_DIR, name);
	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t) n + 1);
	if (fread(buf, 1, (size_t) n, f) != (size_t) n)
		n = 0;
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = (size_t) n;
	return buf;
}

/* The cached key of a vector file: private, or a verification key. */
static const WxKey *
key_file(const char *name, bool private)
{
	size_t		len;
	char	   *pem = slurp(name, &len);
	const WxKey *key = pem == NULL ? NULL : private ? wx_key_private(pem, len) : wx_key_public(pem, len);

	free(pem);
	return key;
}

#define private_key(name) key_file((name), true)
#define public_key(name) key_file((name), false)

/* Lower-case hex SHA-256 of data, for comparing long plaintexts. */
static void
sha256_hex(const unsigned char *data, size_t len, char *hex)
{
	unsigned char md[32];

	EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
}

static void
expect_request(const WxKey *key, const char *method, const char *url, const char *body,
			   const char *expected, const char *what)
{
	char		b64[WX_RSA_SIG_B64_MAX];

	CHECK(wx_v3_sign_request(key, method, url, TS, NONCE, body, body ? strlen(body) : 0, b64) &&
		  strcmp(b64, expected) == 0, what);
}

/* §8.1 (official) and §8.2 (local) with the documentation's sample key. */
static void
test_official_signatures(void)
{
	const WxKey *key = private_key("doc_merchant_key.pem");
	const char *b3 = "{\"appid\":\"wxd678efh567hg6787\",\"mchid\":\"1900007291\","
		"\"description\":\"Image形象店-深圳腾大-QQ公仔\",\"out_trade_no\":\"1217752501201407033233368018\","
		"\"notify_url\":\"https://www.weixin.qq.com/wxpay/pay.php\",\"amount\":{\"total\":100,\"currency\":\"CNY\"},"
		"\"payer\":{\"openid\":\"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\"}}";
	WxSlice		s1[4] = {{"wx2421b1c4370ec43b", 18}, {TS, 10}, {NONCE, 32},
	{"prepay_id=wx201410272009395522657a690389285100", 46}};
	WxSlice		s2[4] = {{"wx2421b1c4370ec43b", 18}, {TS, 10}, {NONCE, 32},
	{"wx201410272009395522657a690389285100", 36}};
	char		b64[WX_RSA_SIG_B64_MAX];
	char		auth[WX_V3_AUTH_MAX];

	CHECK(key != NULL, "documentation sample key parses");
	CHECK(wx_rsa_sign_lines(key, s1, 4, b64) && strcmp(b64,
		"mI35pfNEQV6777ke/1T+LJLQDNTm7yeoUJH+j/adPGhmCCi0PbgkvYQTRcXH0uibcLVtvFLdGLpmoYO9FV6lBBsTAjuhh5YOvQi0e2g3e0yytitiNET9FEuqM0pjnKfRW4K6LIZDdbWJv9KhZUx3DrJa5TL7OJ7VdADVivxVySIlPVKjGwuCXzuXSJes0UcILgWQUMyha5/3nYofuHtS7r+KYyMuxD+oJ9VM1Qdxk4UIG59CP5Y3wtYIFybyF3bdu1caHTRRX+DLyMXyYA/IrTmiW01c4RPjpHBX5Dk1sZyY1zVsWNsvMHr2e1NTWtBxKJ+qk5N61J7caYoepHFaxw==") == 0,
		  "S1 JSAPI paySign");
	CHECK(wx_rsa_sign_lines(key, s2, 4, b64) && strcmp(b64,
		"gXx9KhTP6IooKV1SuG3OCGlBIgZbKtubCZvnau6khw1iffvNT28IzLbKmztq2xA/RCNbZa1XOsoiuVmAEeTZQicWfhv4P+O4oBRIrx0X9f3cnWFkMBU9alTWs0nyQ1N9fcILOTe0f4kxOhVh+/Xhn5hOiUK7Sz3XA1mcpa3R2NCWf/e+0ow/RDf15iTymOHgDrEkT/gedg/3E0iXfDX3mFicSZhrHESZDOTXcl9RzELREBUFznd/o2NQM99WcL86m23HY0cTy+QGWU4QDmNrbQ9ihmLW71qPb0Cx/d7EQvw/Kyx0A6s64ZQp3hHdcmiRcLnjVXrKCk7LShaCK+lS3Q==") == 0,
		  "S2 APP sign");
	expect_request(key, "POST", "/v3/pay/transactions/jsapi", b3,
				   "jnks4dlrPw3ZX+ozVvSK39oa0t7OMBsg83BHAwd8BRdUFiVaQNTLTvci+wURgP1OQBbKYhFGvt7iqYpDSTQkp7Uq1sltaQKyncCyrA1g88m5bsKERQfPyT0ahSwKTYJ1CAn9QiJuSJRq1QsQs07eehbU/k9BCS51jTyc1Jpsi2H77HF9f/BnjXAOP3/sPObg6V5Ee4EzwLox684hhuMuIwHo7D8KFk3LIHOKDcNI4It1aCXydFWNpNK+SG86VUDe5kwoDpw4Ulqfu9z8OFDGbDs9TCxEv8iqQzbpxOlEVoOe2kalSYM5kApQb3nZcxdUtoE0liJGW3RGUNE0t4v01A==",
				   "S3 request signature (POST JSAPI prepay)");
	expect_request(key, "GET", "/v3/certificates", NULL,
				   "JNEITrKv8DWEtBJGZtxG9ARa+eIZDIn1Ht3MQM5j9jP77TtHdfCqLjpwevfWftBuaGMfEdiu2sWYtLvnZIoLW3FH10OVCBzKncid5xClTwav8JX+uDeGBBX8w64iHvFyuQj8ukZT+F1AFJii8hmXLD8Os90thnL0bfJYLo/4K237TH4dEd44NTH9ElFb/ykrvv9RBs+mCNpy5IUe2Qxhba3d3RiMqhWK2sSr3tsVzQihJ0TPMnjWqoU2W5Y/v3rBFDmLhqe0ZW6A4vyvjmiR0v/8XEI25Py4PNyZXszsdl4j0zLqelUJxGEMUBhYg1LIoDPjYMlA9HV1yKD6+JYZJA==",
				   "L1 GET with no body");
	expect_request(key, "GET", "/v3/certificates", "",
				   "JNEITrKv8DWEtBJGZtxG9ARa+eIZDIn1Ht3MQM5j9jP77TtHdfCqLjpwevfWftBuaGMfEdiu2sWYtLvnZIoLW3FH10OVCBzKncid5xClTwav8JX+uDeGBBX8w64iHvFyuQj8ukZT+F1AFJii8hmXLD8Os90thnL0bfJYLo/4K237TH4dEd44NTH9ElFb/ykrvv9RBs+mCNpy5IUe2Qxhba3d3RiMqhWK2sSr3tsVzQihJ0TPMnjWqoU2W5Y/v3rBFDmLhqe0ZW6A4vyvjmiR0v/8XEI25Py4PNyZXszsdl4j0zLqelUJxGEMUBhYg1LIoDPjYMlA9HV1yKD6+JYZJA==",
				   "L1 GET with an empty body signs the same");
	expect_request(key, "GET", "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1230000109", NULL,
				   "lDt3l+XSPpekGzNurSoluoDCTW80pTcaO/x4JfyMTM204qvpAOPWfSAN7CHDl3hHaQYmfh0b3Od90/b8DD+L+vykoSvVoUuBmfOoalUCGNClCKOSjiWD8bfhvfkiDbrx8LQlhGRVlW0kRmCn3dNvMmdxLp4D6ongPjawqy8qI4SglZUTSQSy2D7ZyxhdBD9Wbv0sMHyKMwRzHX67vGcIQMfp0irtrDz4H7N2t4c3EyydlF4W1CBSrFevv7eIcAZUPFZsAQ6ZoYzK2y+yJULzwt3u/7wQonG46UJkr3webpWSTpAFpvFRqVSFRPIVQGAYpMU+/y3bDrGap/A3DFL+OQ==",
				   "L2 GET with a query string");
	expect_request(key, "GET", "/v3/bill/tradebill?bill_date=2019-06-11&bill_type=ALL&tar_type=GZIP", NULL,
				   "YG2YqDII/69dqhh1rtSppeRB9DCZViYc20qBVXWGfAsqmKRa601iYyP7hB85/NUdOUNJXKLqeBY9VEBQ6eHtusECklTjAGlVWa3wmVY0lFPx/ptCONIFUytofwlFdauxVP1bAYbBMgX6P/d4XPVmvY5aUAeQx5V9DfT2k6zaSVNCaRBjH6dc/vUIiyZ6LriD56CpNAbdrXEEfYZlZIcJJFPBZcxDKr9MG/S77VTeS9sdOKbcP2uMvHvxVCRNb1wAX59HeX1BFYVcAVKbPxeZZ00jdCvFV6+CfB5Ezj4Z5IfuwiIXeT1Xln2S+xV+1tdN+aWGBHgst9JXUKELUSR9JA==",
				   "L3 bill request");
	expect_request(key, "POST", "/v3/pay/transactions/out-trade-no/1217752501201407033233368018/close",
				   "{\"mchid\":\"1230000109\"}",
				   "c5n/79yJ/yFAQigBHXHysqZ5Tcu0f2RYOkqxPjoTJUm6N3wXs16aULlF+kIk2KHc1U4PT+4jpVh0FohN4X9w5LUHWHbo1BQffofjpehoeQdYYUVXM8KqGWuQwstKPIkSGaMFKaRiDiWe0xB5zsEhlJT+Pb8446Lepb9X4uy+t8WfHRROInDkdwDrIuqUxUwbIN2F2f25qfIzAHYptn9yevNVtcbRU9dD7+KR98PO7XXsbkPUWPdUMuGCQpIT1cz7gWvG1tOtg93anisu9Og8KPPg6SKUwf6aGXL353Nsx71AheonVQ808SnVmRfdZq/uZSpQhJonds0gcZtwcKN3ug==",
				   "L4 close");
	expect_request(key, "GET",
				   "/v3/marketing/partnerships?limit=5&offset=10&authorized_data=%7B%22business_type%22%3A%22FAVOR_STOCK%22%2C%22stock_id%22%3A%222433405%22%7D&partner=%7B%22type%22%3A%22APPID%22%2C%22appid%22%3A%22wx4e1916a585d1f4e9%22%2C%22merchant_id%22%3A%222480029552%22%7D",
				   NULL,
				   "bEdIZMin9b6Plz3kj3PC2RXndz/iLw3mJsAO0CaVYdyMf1HDMKFYnrpU+eWjU+px+4VQHYhT4wl4Ku7a8hqZDKqnaQ/33hWFNDUs754GDMZBgebLLBR9lwZi4iu5ZYr6IHUwN5aZFKhsFV/HnJNmOxNmssjurK+HZkNnmQt4DZ/LOxM/ir5S0M4FuzGy3m3ZP6hQPZpjRv+sy1IO15OeAml+G6ctljKYQqTyjKZNtJV6AoOAZfXK7/8EFnrt6b0ZKnOZMUc9JAJ70kSyMDEkyasPHZwQuXZwUTZ8FvA5UuU/PJwCTMSAPghb9HUUCwb+y/Fqw1z1vwDrkmTFaO2/FA==",
				   "L5 percent-encoded query");

	/* The official header's shape, with S3's signature. */
	CHECK(wx_v3_sign_request(key, "POST", "/v3/pay/transactions/jsapi", TS, NONCE, b3, strlen(b3), b64) &&
		  wx_v3_authorization(auth, "1900007291", "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", TS, NONCE, b64) &&
		  strncmp(auth, "WECHATPAY2-SHA256-RSA2048 mchid=\"1900007291\",nonce_str=\"" NONCE "\",timestamp=\"" TS "\","
				  "serial_no=\"408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB\",signature=\"jnks4dlrPw3Z", 176) == 0 &&
		  strcmp(auth + strlen(auth) - 11, "t4v01A==\"") != 0 && strcmp(auth + strlen(auth) - 9, "t4v01A==\"") == 0,
		  "Authorization header: scheme, five quoted fields, no spaces");
	CHECK(!wx_v3_authorization(auth, "19000\"07291", "408B", TS, NONCE, b64), "a quote in mchid is refused");
	CHECK(!wx_v3_authorization(auth, "1900007291", "", TS, NONCE, b64), "an empty serial is refused");
	CHECK(!wx_v3_authorization(auth, "1900007291", "408B", TS, "a b", b64), "a space in the nonce is refused");
	CHECK(!wx_rsa_sign_lines(NULL, s1, 4, b64), "no key, no signature");
}

/* §8.4: the SDKs' own signer tests, over bytes without a newline. */
static void
test_sdk_signatures(void)
{
	const WxKey *go = private_key("go_testing_key.pem");
	const WxKey *java = private_key("java_merchant_key.pem");
	const WxKey *java_cert = public_key("java_merchant_cert.pem");
	const WxKey *doc_pub = public_key("doc_merchant_pub.pem");
	const char *go_sig = "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg==";
	const char *java_sig = "Rq+5ZpWV6IHTWE1+9gCrYJKguNgbItpMdlIA+PVCPCdUAKNlohZz7CL7Y8xWDIFJjdGnErMj6Z+Q/h9CF5MV+nAVkqDmBR0uP5ppsUEzco4ijvKHsvI2ro4boSW6vSfQs3W8I4QSI9a0/NFIgvj83Fv27LIYZf7deaFWmEwd1fpAeJRCyoKyBeJPdsjVx0//Lqe6Wze2zVdliLcBvaHCfpd8+rAVGS+FQDeWgHqJ7n/Zy09LmV1/ghs7pO1mdjdD16SHKlysAD3K5hNGUJX/SHrEXEcu1yO1AOb/YvOVkjNh8243rcfXNE5L4ph2XS11vS+2aToKYSOcKUagf0LLaw==";
	char		b64[WX_RSA_SIG_B64_MAX];

	CHECK(go != NULL && wx_rsa_sign_bytes(go, "source", 6, b64) && strcmp(b64, go_sig) == 0,
		  "wechatpay-go signer vector");
	CHECK(java != NULL && wx_rsa_sign_bytes(java, "message", 7, b64) && strcmp(b64, java_sig) == 0,
		  "wechatpay-java RSAVerifierTest vector");
	CHECK(java_cert != NULL && wx_rsa_verify_bytes(java_cert, "message", 7, java_sig, strlen(java_sig)),
		  "the Java vector verifies with the merchant certificate's key");
	CHECK(!wx_rsa_verify_bytes(java_cert, "messagE", 7, java_sig, strlen(java_sig)), "another message does not");
	CHECK(wx_key_pair_matches(java, java_cert), "the Java key matches its certificate");
	CHECK(!wx_key_pair_matches(go, java_cert) && !wx_key_pair_matches(java, doc_pub),
		  "other keys do not match it");
}

static WxV3SerialKind
serial_kind(const char *s)
{
	return wx_v3_serial_kind(s, strlen(s));
}

/* §8.3: the official response-verification example (public-key mode). */
static void
test_official_verification(void)
{
	const WxKey *key = public_key("doc_wechatpay_pub.pem");
	const char *body = "{\"code_url\":\"weixin://wxpay/bizpayurl?pr=JyC91EIz1\"}";
	const char *nonce = "d824f2e086d3c1df967785d13fcd22ef";
	const char *sig = "mfI1CPqvBrgcXfgXMFjdNIhBf27ACE2YyeWsWV9ZI7T7RU0vHvbQpu9Z32ogzc+k8ZC5n3kz7h70eWKjgqNdKQF0eRp8mVKlmfzMLBVHbssB9jEZEDXThOX1XFqX7s7ymia1hoHQxQagPGzkdWxtlZPZ4ZPvr1RiqkgAu6Is8MZgXXrRoBKqjmSdrP1N7uxzJ/cjfSiis9FiLjuADoqmQ1P7p2N876YPAol7Rn0+GswwAwxldbdLrmVSjfytfSBJFqTMHn4itojgxSWWN1byuckQt8hSTEv/Lg97QoeGniYP17T80pJeQyL3b+295FPHSO2AtvCgyIbKMZ0BALilAA==";
	const char *spaced = "{\"code_url\": \"weixin://wxpay/bizpayurl?pr=JyC91EIz1\"}";
	long long	ts = 1722850421;
	char		probe[400];

	CHECK(key != NULL, "the sample WeChat Pay public key parses");
	CHECK(wx_v3_verify(key, "1722850421", nonce, sig, body, strlen(body), ts) == WX_V3_OK,
		  "official verification example verifies");
	CHECK(wx_v3_verify(key, "1722850421", nonce, sig, body, strlen(body), ts + 300) == WX_V3_OK &&
		  wx_v3_verify(key, "1722850421", nonce, sig, body, strlen(body), ts - 300) == WX_V3_OK,
		  "300 s either way is inside the window");
	CHECK(wx_v3_verify(key, "1722850421", nonce, sig, body, strlen(body), ts + 301) == WX_V3_SKEWED,
		  "an answer 301 s old is refused");
	CHECK(wx_v3_verify(key, "1722850421", nonce, sig, body, strlen(body), ts - 301) == WX_V3_SKEWED,
		  "an answer 301 s in the future is refused");
	CHECK(wx_v3_verify(key, "1722850421", nonce, sig, spaced, strlen(spaced), ts) == WX_V3_BAD_SIGNATURE,
		  "one extra space in the body does not verify");
	CHECK(wx_v3_verify(key, "1722850422", nonce, sig, body, strlen(body), ts) == WX_V3_BAD_SIGNATURE,
		  "another timestamp does not verify");
	snprintf(probe, sizeof(probe), "WECHATPAY/SIGNTEST/%s", sig + 19);
	CHECK(wx_v3_is_probe(probe) && !wx_v3_is_probe(sig), "probes are recognised");
	CHECK(wx_v3_verify(key, "1722850421", nonce, probe, body, strlen(body), ts) == WX_V3_BAD_SIGNATURE,
		  "a probe is a plain verification failure");
	CHECK(wx_v3_verify(key, "1722850421", nonce, "WECHATPAY/SIGNTEST/2sWfO+6t", body, strlen(body), ts) == WX_V3_BAD_SIGNATURE,
		  "a short probe (not base64) is a plain verification failure");
	CHECK(wx_v3_verify(NULL, "1722850421", nonce, sig, body, strlen(body), ts) == WX_V3_BAD_SIGNATURE,
		  "no key for the serial: does not verify");
	CHECK(wx_v3_verify(key, NULL, nonce, sig, body, strlen(body), ts) == WX_V3_MISSING &&
		  wx_v3_verify(key, "1722850421", "", sig, body, strlen(body), ts) == WX_V3_MISSING &&
		  wx_v3_verify(key, "1722850421", nonce, NULL, body, strlen(body), ts) == WX_V3_MISSING,
		  "a missing header is a failure of its own");
	CHECK(wx_v3_verify(key, "1722850421.0", nonce, sig, body, strlen(body), ts) == WX_V3_BAD_TIMESTAMP &&
		  wx_v3_verify(key, "-1722850421", nonce, sig, body, strlen(body), ts) == WX_V3_BAD_TIMESTAMP &&
		  wx_v3_verify(key, "1722850421000", nonce, sig, body, strlen(body), ts) == WX_V3_BAD_TIMESTAMP,
		  "timestamps that are not Unix seconds are refused");
	CHECK(wx_v3_verify(key, "1722850421", "d824\nf2e0", sig, body, strlen(body), ts) == WX_V3_BAD_HEADER,
		  "a nonce with a newline is refused");
	CHECK(serial_kind("PUB_KEY_ID_0000000000000024101100397200000006") == WX_SERIAL_PUBLIC_KEY &&
		  serial_kind("5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC") == WX_SERIAL_CERTIFICATE &&
		  serial_kind("PUB_KEY_ID_") == WX_SERIAL_INVALID &&
		  serial_kind("PUB_KEY_ID_12a") == WX_SERIAL_INVALID &&
		  serial_kind("5DEA10EF5587G") == WX_SERIAL_INVALID &&
		  serial_kind("") == WX_SERIAL_INVALID,
		  "serial kinds");
	CHECK(wx_v3_serial_equal("PUB_KEY_ID_0000000000000024101100397200000006",
							 "PUB_KEY_ID_0000000000000024101100397200000006") &&
		  !wx_v3_serial_equal("PUB_KEY_ID_0000000000000024101100397200000006",
							  "PUB_KEY_ID_0000000000000024101100397200000007") &&
		  wx_v3_serial_equal("5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC",
							 "5dea10ef55877e3cf6c33255c2e7defff7e427ec") &&
		  !wx_v3_serial_equal("pub_key_id_0000000000000024101100397200000006",
							  "PUB_KEY_ID_0000000000000024101100397200000006"),
		  "serials: hex in any case, public-key ids exactly");
}

/* The resource ciphertext of a notification body (a vector file). */
static char *
resource_ciphertext(const char *body)
{
	const char *start = strstr(body, "\"ciphertext\":\"");
	const char *end;
	char	   *out;

	if (start == NULL)
		return NULL;
	start += 14;
	end = strchr(start, '"');
	out = malloc((size_t) (end - start) + 1);
	memcpy(out, start, (size_t) (end - start));
	out[end - start] = '\0';
	return out;
}

static WxAesStatus
gcm(const char *key, const char *nonce, const char *aad, const char *b64,
	unsigned char *out, size_t *len)
{
	return wx_gcm_decrypt(key, strlen(key), nonce, strlen(nonce), aad, aad ? strlen(aad) : 0,
						  b64, strlen(b64), out, len);
}

/* §8.5: A1-A5 and the rejections. */
static void
test_gcm(void)
{
	const char *a4_plain = "{\"mchid\":\"1900000109\",\"appid\":\"wxd678efh567hg6787\",\"out_trade_no\":\"1217752501201407033233368018\","
		"\"transaction_id\":\"4200000000202401010000000001\",\"trade_type\":\"JSAPI\",\"trade_state\":\"SUCCESS\","
		"\"trade_state_desc\":\"支付成功\",\"bank_type\":\"OTHERS\",\"attach\":\"\",\"success_time\":\"2024-01-01T12:00:00+08:00\","
		"\"payer\":{\"openid\":\"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\"},\"amount\":{\"total\":100,\"payer_total\":100,\"currency\":\"CNY\",\"payer_currency\":\"CNY\"}}";
	const char *a5_ct = "JgGMD9Ry2eJ1pA19lLHX4UspvV5M4xANpE9nS1N0CFlewgfiUfEGHLN6wsx11jrHOngIRD2wJVy4by0gpmU2+b57q3rQ2swAS5RV3vdtOM8GDrpaOSURaUYAGsAR8y83aXf8eNSZFk+hRN6ruB+B9LQO7N5jswsUmOUAh4w4ykqTJZ4G9DMaBnZiGrgoGDM9Ltjj7NvOhpbonUZ8jBe8iEUnnQdZg7m/EbcEj11DZcAiZ8IuxuLwvVsY79rXjyenyI5WpWjbxpFna4q9V81KP66GV/APyevqnk/e1P0z1CId06QJZtEpnn/MhR10OqNBgzyJg/CZA85WCymX5ey3Pw7KQ6ckctwfHHtzn1V7Ros29JQDG1+bHX+nQJEqqZI0nS4XCUhtgxW8H3xJIZInq6/P5bno+dhxcMIfD0Xz0QkyxcyQIFxiVKvnF293pZCnpfr0glXgK+lvK0wIDLat/9O+vkSLgAAbAYa2Nu52aJCUokhOTQ4ty1OVajFC3DuvUko1YknRS625vxVaESH7HA==";
	const char *a5_plain = "{\"mchid\":\"1900000100\",\"transaction_id\":\"1008450740201411110005820873\",\"out_trade_no\":\"20150806125346\","
		"\"refund_id\":\"50200207182018070300011301001\",\"out_refund_no\":\"7752501201407033233368018\",\"refund_status\":\"SUCCESS\","
		"\"success_time\":\"2018-06-08T10:34:56+08:00\",\"user_received_account\":\"招商银行信用卡0403\","
		"\"amount\":{\"total\":999,\"refund\":999,\"payer_total\":999,\"payer_refund\":999}}";
	char	   *a2 = slurp("a2_certificate.b64", NULL);
	char	   *n2 = slurp("n2_body.json", NULL);
	char	   *a4_ct = n2 ? resource_ciphertext(n2) : NULL;
	unsigned char out[4096];
	char		hex[65];
	char		serial[WX_SERIAL_HEX_MAX];
	char		tampered[64];
	size_t		len;

	CHECK(gcm(APIV3_KEY, "uluk4a9R25RW", "associatedData", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", out, &len) == WX_AES_OK &&
		  len == 7 && memcmp(out, "message", 7) == 0, "A1 wechatpay-java AeadAesCipherTest");
	CHECK(a2 != NULL && gcm(APIV3_KEY, "14b16c03dc1b", "certificate", a2, out, &len) == WX_AES_OK && len == 1475,
		  "A2 /v3/certificates resource decrypts to 1475 bytes");
	sha256_hex(out, len, hex);
	CHECK(strcmp(hex, "8693813ac0735cb54b6e67f25086a5924c103712255b8857049b8e502d564eb4") == 0,
		  "A2 plaintext has the documented SHA-256");
	CHECK(wx_cert_serial((char *) out, len, serial) &&
		  strcmp(serial, "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC") == 0 &&
		  wx_key_public((char *) out, len) != NULL,
		  "A2's certificate has the serial_no of its entry and a usable key");
	CHECK(gcm("testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
			  "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC", out, &len) == WX_AES_BAD_KEY,
		  "A3 (a 16-byte key: AES-128 in Go) is refused as a key-length error");
	CHECK(a4_ct != NULL && gcm(APIV3_KEY, "Kj7QIyUiYx1q", "transaction", a4_ct, out, &len) == WX_AES_OK &&
		  len == strlen(a4_plain) && memcmp(out, a4_plain, len) == 0, "A4 payment resource of N2");
	sha256_hex(out, len, hex);
	CHECK(len == 431 && strcmp(hex, "da58eb4ae071de71857aeee748618027efb4c6ae1bb9215edc807bbe73373bb0") == 0,
		  "A4 plaintext: 431 bytes with the documented SHA-256");
	CHECK(gcm(APIV3_KEY, "c5ac7061fcca", "", a5_ct, out, &len) == WX_AES_OK &&
		  len == strlen(a5_plain) && memcmp(out, a5_plain, len) == 0, "A5 empty associated data");
	CHECK(gcm(APIV3_KEY, "c5ac7061fcca", NULL, a5_ct, out, &len) == WX_AES_OK, "A5 absent associated data");
	CHECK(gcm(APIV3_KEY, "c5ac7061fcca", "refund", a5_ct, out, &len) == WX_AES_BAD_TAG && len == 0,
		  "A5 with associated data it was not made with fails the tag");
	CHECK(gcm("key", "uluk4a9R25RW", "aad", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", out, &len) == WX_AES_BAD_KEY &&
		  gcm(APIV3_KEY, "iv", "aad", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", out, &len) == WX_AES_BAD_NONCE,
		  "X1's shape (3-byte key, 2-byte nonce) is refused, never padded");
	CHECK(gcm("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gc", "uluk4a9R25RW", "associatedData",
			  "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", out, &len) == WX_AES_BAD_TAG, "wrong APIv3 key fails the tag");
	strcpy(tampered, "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=");
	tampered[0] = 'v';
	CHECK(gcm(APIV3_KEY, "uluk4a9R25RW", "associatedData", tampered, out, &len) == WX_AES_BAD_TAG &&
		  out[0] == 0, "tampered ciphertext fails the tag and leaves no plaintext");
	CHECK(gcm(APIV3_KEY, "uluk4a9R25RW", "associatedData", "AAAAAAAAAAAAAAAAAAAAAA==", out, &len) == WX_AES_BAD_LENGTH,
		  "a tag alone (16 bytes) is refused");
	CHECK(gcm(APIV3_KEY, "uluk4a9R25RW", "associatedData", "WECHATPAY/SIGNTEST/", out, &len) == WX_AES_BAD_BASE64,
		  "non-base64 ciphertext is refused");
	free(a2);
	free(n2);
	free(a4_ct);
}

/* §8.6: complete notifications N1 (signature only) and N2. */
static void
test_notifications(void)
{
	size_t		n1_len,
				n2_len;
	char	   *n1 = slurp("n1_body.json", &n1_len);
	char	   *n2 = slurp("n2_body.json", &n2_len);
	char	   *n1_cert = slurp("go_notify_cert.pem", NULL);
	char	   *n1_ct = n1 ? resource_ciphertext(n1) : NULL;
	char		serial[WX_SERIAL_HEX_MAX];
	unsigned char out[2048];
	size_t		len;
	const char *n1_sig = "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXFlbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1IBLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY406ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q==";
	const char *n2_java = "OLf5EVBVeaJ0Hoq1SzHhGGVhDUDyHFJzsVjShTa1nIWXaDwNmGnkgGHdJ8AajSxvcCTHm4lVgizhXJrvzKFNzDbO5fLNXhCzYrRMHDKp/UGOfw3injAyKYL2L/ctFliS8XxE1Wjfzw2Ej8rnKm4ZWv/W4eHYxAj4/ZVTNAuWvMueBDKUE5U7r9R0eaRAAWuMWVJDx41SwALyDDe/vVhXZER1NF42NbA5cIlqOtE0QOyTF1ohT+4KRRKLBHlTNoZCORX18NoYoIKuTIlqnfegRCfYiaa2WsCupMjfSWdRmX4l+zmBrvWlam9AA6M1nChwjSnEAY007DbTRYNqlja9Rw==";
	const char *n2_doc = "Qejx2gf1RzEkVrWK6ZHUAvxfIGDbmcweuK++Bcfl76SjueVSYRYlCgsd8noRUqqUwD853PfhWJ7weCRWHZhFswXOIazgT1Xo/L+3i55x7WTueAHdkQdWUHWXlLX4sTKgR01Ecu42dQTiDgtap0UdDJb0fP2ulGS4CfPEbIKCD+b4BZkDmJefyLlxtrbgWfsXZjgRlDIkPSPX+NkfkW+bgNDXygDEE1v9qcmtbm4cxc+rxNrm91qONIbOmp9jn1j1zxrdIrIQnugZpdtEOUYSWjpuZ1XsFY1j+TbcawtdT/+M1jFp6yMrrJU2OW7oZsPRxHxtJn4FvKggwBGMqUKVqw==";
	const WxKey *go_cert = public_key("go_notify_cert.pem");
	const WxKey *java_pub = public_key("java_wechatpay_pub.pem");
	const WxKey *doc_pub = public_key("doc_merchant_pub.pem");

	CHECK(n1_cert != NULL && wx_cert_serial(n1_cert, strlen(n1_cert), serial) &&
		  wx_v3_serial_equal(serial, "D7CE59D1F522D701"), "N1's certificate has the notification's serial");
	CHECK(wx_v3_verify(go_cert, "1624523846", "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz", n1_sig, n1, n1_len,
					   1624523846) == WX_V3_OK, "N1 verifies with its certificate at its own time");
	CHECK(wx_v3_verify(go_cert, "1624523846", "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz", n1_sig, n1, n1_len,
					   1704081605) == WX_V3_SKEWED, "N1 is refused at any later clock");
	CHECK(n1_ct != NULL && gcm("testMchAPIv3Key0", "Kj7QIyUiYx1q", "payscore", n1_ct, out, &len) == WX_AES_BAD_KEY,
		  "N1's 16-byte APIv3 key is a key-length error");
	CHECK(wx_v3_verify(java_pub, "1704081605", NONCE, n2_java, n2, n2_len, 1704081605) == WX_V3_OK,
		  "N2 verifies with the Java SDK's WeChat Pay public key");
	CHECK(wx_v3_verify(doc_pub, "1704081605", NONCE, n2_doc, n2, n2_len, 1704081605) == WX_V3_OK,
		  "N2 verifies with the documentation's key (A.2)");
	CHECK(wx_v3_verify(doc_pub, "1704081605", NONCE, n2_java, n2, n2_len, 1704081605) == WX_V3_BAD_SIGNATURE,
		  "N2's Java signature does not verify with another key");
	CHECK(wx_v3_verify(java_pub, "1704081605", NONCE, n2_java, n2, n2_len - 1, 1704081605) == WX_V3_BAD_SIGNATURE,
		  "N2 with its last byte cut does not verify");
	free(n1);
	free(n2);
	free(n1_cert);
	free(n1_ct);
}

/* Key parsing, the cache and certificate serials. */
static void
test_keys(void)
{
	size_t		len;
	char	   *pem = slurp("doc_merchant_key.pem", &len);
	char	   *pub = slurp("doc_merchant_pub.pem", NULL);
	char	   *zero = slurp("serial_leading_zero_cert.pem", NULL);
	char	   *java_cert = slurp("java_merchant_cert.pem", NULL);
	char		serial[WX_SERIAL_HEX_MAX];
	const WxKey *first;

	first = wx_key_private(pem, len);
	CHECK(first != NULL && wx_key_private(pem, len) == first, "a PEM is parsed once, then cached");
	CHECK(wx_key_public(pem, len) == NULL, "a private key is not a verification key");
	CHECK(wx_key_private(pub, strlen(pub)) == NULL, "a public key is not a private key");
	CHECK(private_key("rsa1024_key.pem") == NULL, "a 1024-bit key is refused");
	CHECK(wx_key_private("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 58) == NULL &&
		  wx_key_public("garbage", 7) == NULL && wx_key_private(NULL, 0) == NULL,
		  "garbage is no key");
	CHECK(wx_cert_serial(zero, strlen(zero), serial) &&
		  strcmp(serial, "0A1B2C3D4E5F60718293A4B5C6D7E8F901234567") == 0,
		  "a serial starting with a zero digit keeps it");
	CHECK(wx_cert_serial(java_cert, strlen(java_cert), serial) &&
		  strcmp(serial, "5F1C72E2A8931B72A2E13AF8DEE92471EB397115") == 0,
		  "the Java merchant certificate's documented serial");
	CHECK(!wx_cert_serial(pub, strlen(pub), serial), "a public key has no serial");
	{
		int64_t		not_before = 0,
					not_after = 0;

		CHECK(wx_cert_validity(java_cert, strlen(java_cert), &not_before, &not_after) &&
			  not_before == 1652147830 && not_after == 1746755830,
			  "the Java merchant certificate's validity, as openssl x509 -dates prints it");
		CHECK(!wx_cert_validity(pub, strlen(pub), &not_before, &not_after), "a public key has no validity");
	}
	for (int i = 0; i < WX_KEY_CACHE_SIZE + 2; i++)
	{
		char		other[4096];
		int			n = snprintf(other, sizeof(other), "%s%*s", pem, i + 1, "");

		CHECK(wx_key_private(other, (size_t) n) != NULL, "distinct PEM texts fill the cache");
	}
	CHECK(wx_key_private(pem, len) != NULL, "an evicted key is parsed again");
	wx_key_cache_clear();
	free(pem);
	free(pub);
	free(zero);
	free(java_cert);
}

/* Which download_url may receive the merchant's Authorization. */
static void
test_url_on_base(void)
{
	const char *base = "https://api.mch.weixin.qq.com";
	const char *path = wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com/v3/billdownload/file?token=x&tartype=gzip");

	CHECK(path != NULL && strcmp(path, "/v3/billdownload/file?token=x&tartype=gzip") == 0,
		  "the documented download_url: its path and query are signed");
	CHECK(wx_v3_url_path_on("https://127.0.0.1:8443/", "https://127.0.0.1:8443/v3/billdownload/file?token=x") != NULL,
		  "a base with a port and a trailing slash");
	CHECK(wx_v3_url_path_on(base, "HTTPS://API.mch.weixin.qq.com/v3/x") != NULL, "scheme and host without case");
	CHECK(wx_v3_url_path_on(base, "https://api2.mch.weixin.qq.com/v3/x") == NULL, "another host, even WeChat's backup");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com.evil.example/v3/x") == NULL, "a longer host");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com@evil.example/v3/x") == NULL, "user info");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com:444/v3/x") == NULL, "another port");
	CHECK(wx_v3_url_path_on(base, "http://api.mch.weixin.qq.com/v3/x") == NULL, "plain http");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com") == NULL, "no path");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com/v3/x y") == NULL, "a space");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com/v3/x\r\nHost: evil") == NULL, "a line break");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com/v3/x#frag") == NULL, "a fragment");
	CHECK(wx_v3_url_path_on(base, "https://api.mch.weixin.qq.com\\@evil.example/v3/x") == NULL, "a backslash");
	CHECK(wx_v3_url_path_on("api.mch.weixin.qq.com", "api.mch.weixin.qq.com/v3/x") == NULL, "a base without a scheme");
	CHECK(wx_v3_url_path_on(NULL, "https://api.mch.weixin.qq.com/v3/x") == NULL, "no base");
}

/* Every API v3 test. */
void
test_v3(void)
{
	test_official_signatures();
	test_sdk_signatures();
	test_official_verification();
	test_gcm();
	test_notifications();
	test_keys();
	test_url_on_base();
	wx_key_cache_clear();
}
