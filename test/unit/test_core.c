/*
 * test_core.c
 *	  Unit tests of the PostgreSQL-free core (wx_sign, wx_xml, wx_aes; API v3's
 *	  wx_rsa, wx_v3 and AES-GCM are in test_v3.c): the official
 *	  and SDK vectors, canonical-string edge cases, constant-time compare,
 *	  nonce mapping, the XML codec's refusals and refund decryption.  Run by
 *	  "make unit", under AddressSanitizer and UBSan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "wx_aes.h"
#include "wx_sign.h"
#include "wx_xml.h"

#include "unit.h"

int			passed;
int			failed;

/* Count a check; say which one failed. */
void
check(int ok, const char *what, const char *file, int line)
{
	if (ok)
		passed++;
	else
	{
		failed++;
		printf("FAIL %s:%d: %s\n", file, line, what);
	}
}

/* Parameters as "name=value" strings, split at the first '='. */
static int
params_from(const char **pairs, WxParam *out)
{
	int			n = 0;

	for (; pairs[n] != NULL; n++)
	{
		const char *eq = strchr(pairs[n], '=');

		out[n].name = pairs[n];
		out[n].name_len = eq - pairs[n];
		out[n].value = eq + 1;
		out[n].value_len = strlen(eq + 1);
	}
	return n;
}

static void
expect_sign(const char **pairs, const char *key, WxSignType type,
			const char *expected, const char *what)
{
	WxParam		params[32];
	char		hex[WX_SIGN_MAX_HEX + 1];
	int			n = params_from(pairs, params);

	wx_params_sort(params, n);
	CHECK(wx_sign_compute(type, params, n, key, strlen(key), hex) &&
		  strcmp(hex, expected) == 0, what);
}

static const char *KEY = "192006250b4c09247ec02edce69f6a2d";

static void
test_official_vectors(void)
{
	const char *official[] = {"appid=wxd930ea5d5a258f4f", "mch_id=10000100",
	"device_info=1000", "body=test", "nonce_str=ibuaiVcKdpRxkhJA", NULL};
	const char *with_empty[] = {"appid=wxd930ea5d5a258f4f", "mch_id=10000100",
		"device_info=1000", "body=test", "nonce_str=ibuaiVcKdpRxkhJA",
	"attach=", "sign=WHATEVER", NULL};
	const char *sdk[] = {"test1=test1", "test2=test2", NULL};
	const char *miniprogram[] = {"appId=wxd678efh567hg6787",
		"nonceStr=5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
		"package=prepay_id=wx2017033010242291fcfe0db70013231072",
	"signType=MD5", "timeStamp=1490840662", NULL};
	const char *chinese[] = {"appid=wxd930ea5d5a258f4f",
		"body=\xe8\x85\xbe\xe8\xae\xaf\xe5\x85\x85\xe5\x80\xbc\xe4\xb8\xad\xe5\xbf\x83-QQ\xe4\xbc\x9a\xe5\x91\x98\xe5\x85\x85\xe5\x80\xbc",
		"mch_id=10000100", "nonce_str=ibuaiVcKdpRxkhJA",
	"out_trade_no=20150806125346", "total_fee=1", NULL};
	const char *space[] = {"appid=wxd930ea5d5a258f4f", "body=test body",
	"mch_id=10000100", "nonce_str=ibuaiVcKdpRxkhJA", NULL};
	const char *with_type[] = {"appid=wxd930ea5d5a258f4f", "mch_id=10000100",
		"device_info=1000", "body=test", "nonce_str=ibuaiVcKdpRxkhJA",
	"sign_type=HMAC-SHA256", NULL};
	const char *app[] = {"appid=wxd930ea5d5a258f4f", "noncestr=ibuaiVcKdpRxkhJA",
		"package=Sign=WXPay", "partnerid=10000100",
	"prepayid=wx201411101639507cbf6ffd8b0779950874", "timestamp=1412000000", NULL};
	const char *jsapi_md5[] = {"appId=wxd930ea5d5a258f4f", "nonceStr=ibuaiVcKdpRxkhJA",
		"package=prepay_id=wx201411101639507cbf6ffd8b0779950874",
	"signType=MD5", "timeStamp=1412000000", NULL};
	const char *jsapi_hmac[] = {"appId=wxd930ea5d5a258f4f", "nonceStr=ibuaiVcKdpRxkhJA",
		"package=prepay_id=wx201411101639507cbf6ffd8b0779950874",
	"signType=HMAC-SHA256", "timeStamp=1412000000", NULL};

	expect_sign(official, KEY, WX_SIGN_MD5, "9A0A8659F005D6984697E2CA0A9CF3B7", "official MD5");
	expect_sign(official, KEY, WX_SIGN_HMAC_SHA256,
				"6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6", "official HMAC");
	expect_sign(with_empty, KEY, WX_SIGN_MD5, "9A0A8659F005D6984697E2CA0A9CF3B7", "empty value and sign dropped");
	expect_sign(sdk, KEY, WX_SIGN_MD5, "1E3A8D73B5A4AEE787C0F68B5DAB8520", "wechatpy MD5");
	expect_sign(sdk, KEY, WX_SIGN_HMAC_SHA256,
				"EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659", "wechatpy HMAC");
	expect_sign(miniprogram, "qazwsxedcrfvtgbyhnujmikolp111111", WX_SIGN_MD5,
				"22D9B4E54AB1950F51E0649E8810ACD6", "mini program paySign");
	expect_sign(chinese, KEY, WX_SIGN_MD5, "F5B9645FC05BD22DCE996D868916F5AC", "Chinese body MD5");
	expect_sign(chinese, KEY, WX_SIGN_HMAC_SHA256,
				"617197460F94E400DCC9C9D7FC660D67FC6A55CC4E1B8BC59DA31C0DC711835E", "Chinese body HMAC");
	expect_sign(space, KEY, WX_SIGN_MD5, "D22591D31E77380EA374579E9E9FDD1D", "space MD5");
	expect_sign(space, KEY, WX_SIGN_HMAC_SHA256,
				"155E0E6E20C517F591A9CB85C9FEA0EEDF2B0F0B47FD72C0E85D9E27BC16D37C", "space HMAC");
	expect_sign(with_type, KEY, WX_SIGN_MD5, "8BBDF38FFD24E59C51589AE437932C6B", "sign_type signed MD5");
	expect_sign(with_type, KEY, WX_SIGN_HMAC_SHA256,
				"2C9DF1156522C0B2B03B4DBF3BCA5CACB602CBD5CA0F9E112458CF3E9855303B", "sign_type signed HMAC");
	expect_sign(app, KEY, WX_SIGN_MD5, "932C45ECCFFFEE0C49C26BD82515E1F5", "APP second signature");
	expect_sign(jsapi_md5, KEY, WX_SIGN_MD5, "5ECC3B83367556DBD94BB5045E3BAD60", "JSAPI MD5");
	expect_sign(jsapi_hmac, KEY, WX_SIGN_HMAC_SHA256,
				"E48780BF60CD1ABA38B8898D8EF4A98BE915B6998D5E1A5B4DB2CCDD0F9F9765", "JSAPI HMAC");
}

static void
test_canonical(void)
{
	const char *official[] = {"mch_id=10000100", "appid=wxd930ea5d5a258f4f",
	"nonce_str=ibuaiVcKdpRxkhJA", "device_info=1000", "body=test", "sign=X", NULL};
	const char *expected = "appid=wxd930ea5d5a258f4f&body=test&device_info=1000"
		"&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=K";
	const char *upper[] = {"b=1", "B=2", "a=3", NULL};
	WxParam		params[8];
	char		buf[256];
	size_t		len;
	int			n;

	n = params_from(official, params);
	wx_params_sort(params, n);
	len = wx_canonical_length(params, n, 1);
	wx_canonical_write(params, n, "K", 1, buf);
	CHECK(len == strlen(expected) && memcmp(buf, expected, len) == 0,
		  "canonical string of the official example");

	n = params_from(upper, params);
	wx_params_sort(params, n);
	len = wx_canonical_length(params, n, 1);
	wx_canonical_write(params, n, "K", 1, buf);
	CHECK(len == strlen("B=2&a=3&b=1&key=K") && memcmp(buf, "B=2&a=3&b=1&key=K", len) == 0,
		  "upper case sorts before lower case");

	len = wx_canonical_length(params, 0, 1);
	wx_canonical_write(params, 0, "K", 1, buf);
	CHECK(len == 5 && memcmp(buf, "key=K", 5) == 0, "no parameters: just key=");
}

/* Whether params are in strictly increasing bytewise (unsigned) name order. */
static int
names_sorted(const WxParam *params, int n)
{
	for (int i = 1; i < n; i++)
	{
		size_t		a = params[i - 1].name_len,
					b = params[i].name_len;
		int			c = memcmp(params[i - 1].name, params[i].name, a < b ? a : b);

		if (c > 0 || (c == 0 && a >= b))
			return 0;
	}
	return 1;
}

/*
 * Both sorts (insertion sort for short lists, qsort past 24) and the
 * digest's staging buffer (spilled past 1024 bytes): the signatures must
 * equal one-shot digests over the string wx_canonical_write builds.
 */
static void
test_long_and_wide(void)
{
	static char names[40][8];
	static char values[40][120];
	static char canon[8192];
	WxParam		params[40];
	char		hex[WX_SIGN_MAX_HEX + 1];
	char		want[WX_SIGN_MAX_HEX + 1];
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen;
	size_t		len;
	const char *prefixes[] = {"a", "ab", "a_", "B", "\xc3\xa9", "z"};

	for (int n = 6; n <= 40; n += 34)
	{
		for (int i = 0; i < n; i++)
		{
			/* Names in falling order, some prefixes of others, one >= 0x80. */
			snprintf(names[i], sizeof(names[i]), "%s%d", prefixes[i % 6], (n - i) % 7);
			if (i < 6)
				snprintf(names[i], sizeof(names[i]), "%s", prefixes[5 - i]);
			memset(values[i], 'a' + i % 26, sizeof(values[i]) - 1);
			values[i][sizeof(values[i]) - 1] = '\0';
			params[i].name = names[i];
			params[i].name_len = strlen(names[i]);
			params[i].value = values[i];
			params[i].value_len = strlen(values[i]) - (size_t) i;
		}
		wx_params_sort(params, n);
		CHECK(names_sorted(params, n), n > 24 ? "qsort: bytewise name order" : "insertion sort: bytewise name order");
		len = wx_canonical_length(params, n, strlen(KEY));
		wx_canonical_write(params, n, KEY, strlen(KEY), canon);

		CHECK(wx_sign_compute(WX_SIGN_MD5, params, n, KEY, strlen(KEY), hex) &&
			  EVP_Digest(canon, len, digest, &dlen, EVP_md5(), NULL) == 1, "MD5 of a long string");
		for (unsigned i = 0; i < dlen; i++)
			snprintf(want + 2 * i, 3, "%02X", digest[i]);
		CHECK(strcmp(hex, want) == 0, n > 24 ? "MD5 streamed in several stages = one-shot MD5" :
			  "MD5 in one stage = one-shot MD5");

		CHECK(wx_sign_compute(WX_SIGN_HMAC_SHA256, params, n, KEY, strlen(KEY), hex) &&
			  HMAC(EVP_sha256(), KEY, strlen(KEY), (const unsigned char *) canon, len, digest, &dlen) != NULL,
			  "HMAC-SHA256 of a long string");
		for (unsigned i = 0; i < dlen; i++)
			snprintf(want + 2 * i, 3, "%02X", digest[i]);
		CHECK(strcmp(hex, want) == 0, n > 24 ? "HMAC-SHA256 streamed in several stages = one-shot HMAC" :
			  "HMAC-SHA256 in one stage = one-shot HMAC");
	}
}

static void
test_negative_hmac(void)
{
	/* HMAC over stringA without the &key= suffix is the wrong answer. */
	const char *official[] = {"appid=wxd930ea5d5a258f4f", "mch_id=10000100",
	"device_info=1000", "body=test", "nonce_str=ibuaiVcKdpRxkhJA", NULL};
	WxParam		params[8];
	char		hex[WX_SIGN_MAX_HEX + 1];
	int			n = params_from(official, params);

	wx_params_sort(params, n);
	wx_sign_compute(WX_SIGN_HMAC_SHA256, params, n, KEY, strlen(KEY), hex);
	CHECK(strcmp(hex, "F734F0E6B3509F9701F4A27CA72985EE10313DD0F96B71CAB42985D0F4F56376") != 0,
		  "HMAC includes the &key= suffix in the message");
}

static void
test_equal_and_types(void)
{
	const char *s = "9A0A8659F005D6984697E2CA0A9CF3B7";

	CHECK(wx_sign_equal(s, 32, s, 32), "equal signatures");
	CHECK(wx_sign_equal(s, 32, "9a0a8659f005d6984697e2ca0a9cf3b7", 32), "lower-case hex accepted");
	CHECK(!wx_sign_equal(s, 32, "9A0A8659F005D6984697E2CA0A9CF3B8", 32), "last digit differs");
	CHECK(!wx_sign_equal(s, 32, "9A0A8659F005D6984697E2CA0A9CF3B", 31), "short signature");
	CHECK(!wx_sign_equal(s, 32, "", 0), "empty signature");
	CHECK(!wx_sign_equal(s, 32, "9A0A8659F005D6984697E2CA0A9CF3B7A", 33), "long signature");
	CHECK(!wx_sign_equal(s, 32, "9A0A8659F005D6984697E2CA0A9CF3B\x17", 32), "control byte is not a letter");
	CHECK(wx_sign_type_parse("MD5", 3) == WX_SIGN_MD5, "MD5 parses");
	CHECK(wx_sign_type_parse("HMAC-SHA256", 11) == WX_SIGN_HMAC_SHA256, "HMAC parses");
	CHECK(wx_sign_type_parse("md5", 3) == WX_SIGN_MD5 && wx_sign_type_parse("hmac-sha256", 11) == WX_SIGN_HMAC_SHA256,
		  "sign types in any letter case, as the SDKs accept them");
	CHECK(wx_sign_type_parse("MD", 2) == WX_SIGN_INVALID && wx_sign_type_parse("SHA1", 4) == WX_SIGN_INVALID,
		  "other names are not sign types");
	CHECK(wx_sign_type_from_hex_length(32) == WX_SIGN_MD5 &&
		  wx_sign_type_from_hex_length(64) == WX_SIGN_HMAC_SHA256 &&
		  wx_sign_type_from_hex_length(40) == WX_SIGN_INVALID, "type from length");
}

static void
test_md5_hex_lower(void)
{
	char		hex[33];

	CHECK(wx_md5_hex_lower(KEY, strlen(KEY), hex) &&
		  strcmp(hex, "d96eb16afdd491fa1e705096edbc2205") == 0, "refund AES key of the local vector");
	CHECK(wx_md5_hex_lower("OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk", 32, hex) &&
		  strcmp(hex, "63dfc0c1f53d9bc83a8fdc365b8141da") == 0, "refund AES key of the wechatpy vector");
}

static void
test_nonce(void)
{
	unsigned char rnd[256];
	char		out[300];
	size_t		n;
	int			ok = 1;

	for (int i = 0; i < 256; i++)
		rnd[i] = (unsigned char) i;
	n = wx_nonce_from_random(rnd, 256, out, sizeof(out));
	CHECK(n == 248, "bytes >= 248 are rejected");
	for (size_t i = 0; i < n; i++)
		ok &= (out[i] >= 'A' && out[i] <= 'Z') || (out[i] >= 'a' && out[i] <= 'z') ||
			(out[i] >= '0' && out[i] <= '9');
	CHECK(ok, "nonce characters are alphanumeric");
	CHECK(out[0] == 'A' && out[61] == '9' && out[62] == 'A', "alphabet order");
	CHECK(wx_nonce_from_random(rnd, 256, out, 5) == 5, "output length is honoured");
}

static void *
test_alloc(void *arg, size_t size)
{
	/* A bump allocator over a static arena: freed all at once. */
	static char arena[4 * 1024 * 1024];
	size_t	   *used = arg;
	void	   *p;

	size = (size + 15) & ~(size_t) 15;
	if (*used + size > sizeof(arena))
		return NULL;
	p = arena + *used;
	*used += size;
	return p;
}

static WxXmlStatus
parse(const char *body, WxXmlDoc *doc, WxXmlError *err)
{
	static size_t used;

	used = 0;
	return wx_xml_parse(body, strlen(body), test_alloc, &used, doc, err);
}

static const char *
value_of(const WxXmlDoc *doc, const char *name)
{
	const WxParam *p = wx_params_find(doc->params, doc->nparams, name);

	return p ? p->value : NULL;
}

static void
test_xml_parse(void)
{
	WxXmlDoc	doc;
	WxXmlError	err;
	const char *xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
		"<xml><a>&e;</a></xml>";

	CHECK(parse("<xml><b><![CDATA[x y]]></b><a>1</a><c></c></xml>", &doc, &err) == WX_XML_OK &&
		  doc.nparams == 3 && strcmp(doc.root, "xml") == 0 &&
		  strcmp(value_of(&doc, "a"), "1") == 0 && strcmp(value_of(&doc, "b"), "x y") == 0 &&
		  strcmp(value_of(&doc, "c"), "") == 0, "text, CDATA and empty children");
	CHECK(parse("<xml>\n  <a>&lt;&amp;&#x4e2d;</a>\n</xml>", &doc, &err) == WX_XML_OK &&
		  strcmp(value_of(&doc, "a"), "<&\xe4\xb8\xad") == 0, "predefined and character references");
	CHECK(parse(xxe, &doc, &err) == WX_XML_DOCTYPE && err.line == 1, "XXE refused before parsing");
	CHECK(parse("<!doctype x><xml/>", &doc, &err) == WX_XML_DOCTYPE, "lower-case doctype refused");
	CHECK(parse("\xEF\xBB\xBF<!-- c --><?pi x?>\n<!DOCTYPE x><xml/>", &doc, &err) == WX_XML_DOCTYPE,
		  "a DOCTYPE after a BOM, a comment and a PI is refused");
	CHECK(parse("<xml><!doctype x></xml>", &doc, &err) == WX_XML_MALFORMED, "a doctype inside the root is malformed");
	CHECK(parse("<xml><attach><![CDATA[<!DOCTYPE html>]]></attach></xml>", &doc, &err) == WX_XML_OK &&
		  strcmp(value_of(&doc, "attach"), "<!DOCTYPE html>") == 0, "DOCTYPE-like text inside CDATA is a value");
	CHECK(parse("<xml><attach>&lt;!DOCTYPE html&gt;&lt;!ENTITY x&gt;</attach></xml>", &doc, &err) == WX_XML_OK &&
		  strcmp(value_of(&doc, "attach"), "<!DOCTYPE html><!ENTITY x>") == 0, "and so is escaped text");
	CHECK(parse("<xml><x:total_fee xmlns:x=\"urn:x\">1</x:total_fee></xml>", &doc, &err) == WX_XML_NOT_FLAT,
		  "a namespace-prefixed element is refused");
	CHECK(parse("<xml xmlns=\"urn:x\"><a>1</a></xml>", &doc, &err) == WX_XML_NOT_FLAT, "a default namespace is refused");
	CHECK(parse("<xml><a id=\"1\">1</a></xml>", &doc, &err) == WX_XML_NOT_FLAT, "attributes are refused");
	{
		char		cut[] = "ab\xe5\x90";
		char		bad[] = "a\xff" "b";

		wx_utf8_clip(cut);
		wx_utf8_clip(bad);
		CHECK(strcmp(cut, "ab") == 0 && strcmp(bad, "a?b") == 0, "clipped to whole UTF-8 characters");
	}
	{
		char		body[400];
		char		name[70] = "";

		for (int i = 0; i < 22; i++)
			strcat(name, "\xe5\x90\x8d");	/* 名, 66 bytes in all */
		snprintf(body, sizeof(body), "<xml><%s>1</%s><%s>2</%s></xml>", name, name, name, name);
		CHECK(parse(body, &doc, &err) == WX_XML_DUPLICATE &&
			  wx_utf8_invalid_at(err.message, strlen(err.message), false) < 0,
			  "a message quoting a long multi-byte name is valid UTF-8");
	}
	CHECK(parse("<!ENTITY a \"b\"><xml/>", &doc, &err) == WX_XML_DOCTYPE, "bare ENTITY refused");
	CHECK(parse("<xml><a>1</b></xml>", &doc, &err) == WX_XML_MALFORMED &&
		  err.line == 1 && err.column > 0 && strlen(err.message) > 0, "mismatched tag located");
	CHECK(parse("<xml>\n<a>1</a>\n<b>", &doc, &err) == WX_XML_MALFORMED && err.line >= 2,
		  "truncated body reports a line");
	CHECK(parse("<xml><a>&undefined;</a></xml>", &doc, &err) == WX_XML_MALFORMED,
		  "undefined entity is malformed");
	CHECK(parse("<xml><a><b>1</b></a></xml>", &doc, &err) == WX_XML_NOT_FLAT, "nested refused");
	CHECK(parse("<xml>stray<a>1</a></xml>", &doc, &err) == WX_XML_NOT_FLAT, "root text refused");
	CHECK(parse("<xml><a>1</a><a>2</a></xml>", &doc, &err) == WX_XML_DUPLICATE, "duplicate refused");
	CHECK(parse("   ", &doc, &err) == WX_XML_EMPTY, "blank body");
	CHECK(parse("<xml><a>\xff</a></xml>", &doc, &err) == WX_XML_BAD_ENCODING, "invalid UTF-8");
	CHECK(parse("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><xml><a>\xc3\xa9</a></xml>", &doc, &err) == WX_XML_OK &&
		  strcmp(value_of(&doc, "a"), "\xc3\xa9") == 0, "declared encoding cannot reinterpret bytes");
	CHECK(parse("<root><out_refund_no>1234</out_refund_no></root>", &doc, &err) == WX_XML_OK &&
		  strcmp(doc.root, "root") == 0, "any root name");
	CHECK(wx_xml_parse("<xml><a>1</a>\0</xml>", 19, test_alloc, &(size_t){0}, &doc, &err) ==
		  WX_XML_BAD_ENCODING, "NUL byte refused");
}

static void
test_xml_large(void)
{
	size_t		len = WX_XML_MAX_BODY + 1;
	char	   *big = malloc(len + 1);
	WxXmlDoc	doc;
	WxXmlError	err;
	size_t		used = 0;

	memset(big, ' ', len);
	memcpy(big, "<xml>", 5);
	memcpy(big + len - 6, "</xml>", 6);
	CHECK(wx_xml_parse(big, len, test_alloc, &used, &doc, &err) == WX_XML_TOO_LARGE, "over 1 MB refused");
	CHECK(wx_xml_parse(big, len - 1, test_alloc, &used, &doc, &err) != WX_XML_TOO_LARGE, "1 MB accepted");
	free(big);
}

static void
test_xml_build(void)
{
	const char *pairs[] = {"a=x]]>y", "b=line1\r\nline2", "c=]]]]>>", "d=", NULL};
	WxParam		params[8];
	char		buf[512];
	size_t		len;
	int			n = params_from(pairs, params);
	WxXmlDoc	doc;
	WxXmlError	err;

	len = wx_xml_build(params, n, buf);
	CHECK(len == wx_xml_build_length(params, n), "build length matches");
	buf[len] = '\0';
	CHECK(parse(buf, &doc, &err) == WX_XML_OK && doc.nparams == 4 &&
		  strcmp(value_of(&doc, "a"), "x]]>y") == 0 &&
		  strcmp(value_of(&doc, "b"), "line1\r\nline2") == 0 &&
		  strcmp(value_of(&doc, "c"), "]]]]>>") == 0 &&
		  strcmp(value_of(&doc, "d"), "") == 0, "values round-trip byte for byte");

	n = params_from((const char *[]) {"appid=wx1", NULL}, params);
	len = wx_xml_build(params, n, buf);
	buf[len] = '\0';
	CHECK(strcmp(buf, "<xml><appid><![CDATA[wx1]]></appid></xml>") == 0, "canonical shape");

	CHECK(wx_xml_name_valid("sign_type", 9) && wx_xml_name_valid("coupon_fee_0", 12) &&
		  wx_xml_name_valid("_a.b-c", 6), "valid names");
	CHECK(!wx_xml_name_valid("0a", 2) && !wx_xml_name_valid("a b", 3) &&
		  !wx_xml_name_valid("a<", 2) && !wx_xml_name_valid("", 0) &&
		  !wx_xml_name_valid("ns:a", 4), "invalid names");
	CHECK(wx_xml_value_invalid_at("ok\ttab", 6) == -1, "tab is fine");
	CHECK(wx_xml_value_invalid_at("a\x01", 2) == 1, "control character located");
	CHECK(wx_utf8_invalid_at("\xf0\x9f\x98\x80", 4, true) == 0 &&
		  wx_utf8_invalid_at("\xf0\x9f\x98\x80", 4, false) == -1, "4-byte UTF-8 rejectable");
	CHECK(wx_utf8_invalid_at("\xc0\xaf", 2, false) == 0, "overlong refused");
	CHECK(wx_utf8_invalid_at("\xed\xa0\x80", 3, false) == 0, "surrogate refused");
}

static char *
read_vector(const char *name)
{
	char		path[512];
	FILE	   *f;
	static char buf[4096];
	size_t		n;

	snprintf(path, sizeof(path), "%s/%s", VECTOR_DIR, name);
	f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void
test_refund_decrypt(void)
{
	const char *local = "WBzGpzQuNpcFxIlFjUUD9Cu8k64/SIERgxT2leZdH4LL2pb+JPMCit+b2zIy2yIkHKW7OavuV/"
		"ysmp419fOa//sNqQ8QZ/QqGG7L7Ft26zOJT8KKGtIQhQk/aqUrb9asj3LpNFyDkPu7x8bcK2r8Fg==";
	const char *expected = "<root><out_refund_no><![CDATA[1234]]></out_refund_no>"
		"<refund_status><![CDATA[SUCCESS]]></refund_status></root>";
	const char *wechatpy = read_vector("wechatpy_refund_req_info.b64");
	unsigned char out[2048];
	char		tampered[256];
	size_t		len;
	WxXmlDoc	doc;
	WxXmlError	err;

	CHECK(wx_refund_decrypt(local, strlen(local), KEY, strlen(KEY), out, &len) == WX_AES_OK &&
		  len == 110 && memcmp(out, expected, len) == 0, "local refund vector decrypts");
	CHECK(wechatpy != NULL && wx_refund_decrypt(wechatpy, strlen(wechatpy), "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk",
												32, out, &len) == WX_AES_OK && len == 795,
		  "wechatpy refund vector decrypts to 795 bytes");
	out[len] = '\0';
	CHECK(parse((char *) out, &doc, &err) == WX_XML_OK && strcmp(doc.root, "root") == 0 &&
		  strcmp(value_of(&doc, "out_refund_no"), "1234") == 0 &&
		  strcmp(value_of(&doc, "refund_id"), "50300103182020010413419046597") == 0 &&
		  strcmp(value_of(&doc, "refund_recv_accout"), "\xe6\x8b\x9b\xe5\x95\x86\xe9\x93\xb6\xe8\xa1\x8c\xe4\xbf\xa1\xe7\x94\xa8\xe5\x8d\xa1" "8915") == 0,
		  "wechatpy plaintext has the documented fields");
	CHECK(wx_refund_decrypt(local, strlen(local), "wrongwrongwrongwrongwrongwrong12", 32, out, &len) == WX_AES_BAD_PADDING,
		  "wrong key fails the padding check");
	strcpy(tampered, local);
	tampered[strlen(tampered) - 4] = tampered[strlen(tampered) - 4] == 'A' ? 'B' : 'A';
	CHECK(wx_refund_decrypt(tampered, strlen(tampered), KEY, strlen(KEY), out, &len) == WX_AES_BAD_PADDING,
		  "tampered last block fails the padding check");
	CHECK(wx_refund_decrypt("not base64!", 11, KEY, strlen(KEY), out, &len) == WX_AES_BAD_BASE64, "garbage is not base64");
	CHECK(wx_refund_decrypt("QUJD", 4, KEY, strlen(KEY), out, &len) == WX_AES_BAD_LENGTH, "3 bytes is not a block");
	CHECK(wx_refund_decrypt("", 0, KEY, strlen(KEY), out, &len) == WX_AES_BAD_LENGTH, "empty");
	CHECK(wx_base64_decode("aGVsbG8=", 8, out) == 5 && memcmp(out, "hello", 5) == 0, "base64 with padding");
	CHECK(wx_base64_decode("aGVs=G8=", 8, out) == -1, "padding inside is refused");
	CHECK(wx_base64_decode("aGVsbG8", 7, out) == -1, "unpadded length is refused");
}

int
main(void)
{
	test_official_vectors();
	test_canonical();
	test_long_and_wide();
	test_negative_hmac();
	test_equal_and_types();
	test_md5_hex_lower();
	test_nonce();
	test_xml_parse();
	test_xml_large();
	test_xml_build();
	test_refund_decrypt();
	test_v3();
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
