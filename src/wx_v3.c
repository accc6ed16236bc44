/*
 * wx_v3.c
 *	  API v3 signing and verification rules, independent of PostgreSQL
 *	  (see wx_v3.h).  Messages are lists of lines, each ending in "\n",
 *	  signed and verified by wx_rsa.c without being materialised.
 */
#include "wx_v3.h"

#include <stdio.h>
#include <string.h>

/* Whether s is a non-empty string of printable ASCII without '"' or '\\'. */
static bool
quotable(const char *s, size_t max)
{
	size_t		n = 0;

	if (s == NULL || *s == '\0')
		return false;
	for (; s[n] != '\0'; n++)
		if (n >= max || s[n] < 0x21 || s[n] > 0x7e || s[n] == '"' || s[n] == '\\')
			return false;
	return true;
}

/* The request's message is METHOD, URL, TIMESTAMP, NONCE and BODY lines. */
bool
wx_v3_sign_request(const WxKey *key, const char *method, const char *url,
				   const char *timestamp, const char *nonce,
				   const char *body, size_t body_len, char *b64)
{
	WxSlice		lines[5] = {
		{method, strlen(method)}, {url, strlen(url)}, {timestamp, strlen(timestamp)},
		{nonce, strlen(nonce)}, {body ? body : "", body ? body_len : 0}
	};

	return wx_rsa_sign_lines(key, lines, 5, b64);
}

/* WECHATPAY2-SHA256-RSA2048 with the five fields in the Go SDK's order. */
bool
wx_v3_authorization(char *buf, const char *mchid, const char *serial_no,
					const char *timestamp, const char *nonce, const char *signature)
{
	int			n;

	if (!quotable(mchid, 32) || !quotable(serial_no, WX_V3_TOKEN_MAX) ||
		!quotable(timestamp, 20) || !quotable(nonce, WX_V3_TOKEN_MAX) ||
		!quotable(signature, WX_RSA_SIG_B64_MAX))
		return false;
	n = snprintf(buf, WX_V3_AUTH_MAX,
				 "WECHATPAY2-SHA256-RSA2048 mchid=\"%s\",nonce_str=\"%s\",timestamp=\"%s\","
				 "serial_no=\"%s\",signature=\"%s\"",
				 mchid, nonce, timestamp, serial_no, signature);
	return n > 0 && n < WX_V3_AUTH_MAX;
}

/* A decimal Unix time of at most 12 digits, or -1. */
static long long
parse_timestamp(const char *s)
{
	long long	t = 0;
	size_t		n = strlen(s);

	if (n == 0 || n > 12)
		return -1;
	for (size_t i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		t = t * 10 + (s[i] - '0');
	}
	return t;
}

/* Headers first (cheap, and they say why), then the signature itself. */
WxV3Verdict
wx_v3_verify(const WxKey *key, const char *timestamp, const char *nonce,
			 const char *signature, const char *body, size_t body_len, long long now)
{
	long long	ts;
	WxSlice		lines[3];

	if (timestamp == NULL || nonce == NULL || signature == NULL ||
		*timestamp == '\0' || *nonce == '\0' || *signature == '\0')
		return WX_V3_MISSING;
	if ((ts = parse_timestamp(timestamp)) < 0)
		return WX_V3_BAD_TIMESTAMP;
	if (ts > now + WX_V3_MAX_SKEW || ts < now - WX_V3_MAX_SKEW)
		return WX_V3_SKEWED;
	/* A nonce with a newline would let the body's lines move. */
	if (!quotable(nonce, WX_V3_TOKEN_MAX))
		return WX_V3_BAD_HEADER;
	lines[0] = (WxSlice) {timestamp, strlen(timestamp)};
	lines[1] = (WxSlice) {nonce, strlen(nonce)};
	lines[2] = (WxSlice) {body ? body : "", body ? body_len : 0};
	if (!wx_rsa_verify_lines(key, lines, 3, signature, strlen(signature)))
		return WX_V3_BAD_SIGNATURE;
	return WX_V3_OK;
}

/* Messages for each verdict. */
const char *
wx_v3_verdict_text(WxV3Verdict verdict)
{
	switch (verdict)
	{
		case WX_V3_OK:
			return "verified";
		case WX_V3_MISSING:
			return "Wechatpay-Timestamp, Wechatpay-Nonce or Wechatpay-Signature missing";
		case WX_V3_BAD_TIMESTAMP:
			return "Wechatpay-Timestamp is not a Unix time";
		case WX_V3_SKEWED:
			return "Wechatpay-Timestamp is more than 300 s from our clock";
		case WX_V3_BAD_HEADER:
			return "Wechatpay-Nonce has characters no nonce has";
		case WX_V3_BAD_SIGNATURE:
			return "Wechatpay-Signature does not verify";
	}
	return "unknown verdict";
}

/* WeChat Pay's probes start with a fixed prefix (doc 4016241880). */
bool
wx_v3_is_probe(const char *signature)
{
	return signature != NULL && strncmp(signature, "WECHATPAY/SIGNTEST/", 19) == 0;
}

/* 1-40 hex digits, or PUB_KEY_ID_ followed by 1-40 digits. */
WxV3SerialKind
wx_v3_serial_kind(const char *serial, size_t len)
{
	size_t		prefix = strlen(WX_V3_PUBKEY_PREFIX);

	if (serial == NULL || len == 0)
		return WX_SERIAL_INVALID;
	if (len > prefix && len <= prefix + 40 && memcmp(serial, WX_V3_PUBKEY_PREFIX, prefix) == 0)
	{
		for (size_t i = prefix; i < len; i++)
			if (serial[i] < '0' || serial[i] > '9')
				return WX_SERIAL_INVALID;
		return WX_SERIAL_PUBLIC_KEY;
	}
	if (len > 40)
		return WX_SERIAL_INVALID;
	for (size_t i = 0; i < len; i++)
		if (!((serial[i] >= '0' && serial[i] <= '9') || (serial[i] >= 'a' && serial[i] <= 'f') ||
			  (serial[i] >= 'A' && serial[i] <= 'F')))
			return WX_SERIAL_INVALID;
	return WX_SERIAL_CERTIFICATE;
}

/* Upper-case of an ASCII letter; anything else unchanged. */
static char
upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char) (c - 'a' + 'A') : c;
}

/* Both must be valid and of the same kind; hex compares in any case. */
bool
wx_v3_serial_equal(const char *configured, const char *received)
{
	size_t		n;
	WxV3SerialKind kind;

	if (configured == NULL || received == NULL || (n = strlen(configured)) != strlen(received))
		return false;
	kind = wx_v3_serial_kind(configured, n);
	if (kind == WX_SERIAL_INVALID || kind != wx_v3_serial_kind(received, n))
		return false;
	if (kind == WX_SERIAL_PUBLIC_KEY)
		return memcmp(configured, received, n) == 0;
	for (size_t i = 0; i < n; i++)
		if (upper(configured[i]) != upper(received[i]))
			return false;
	return true;
}

/* Whether url has only characters a URL we fetch may have. */
static bool
url_chars_ok(const char *url)
{
	for (; *url; url++)
		if (*url <= ' ' || *url > '~' || *url == '#' || *url == '\\')
			return false;
	return true;
}

/* After base's scheme://host[:port] (a trailing '/' of base ignored), a '/'. */
const char *
wx_v3_url_path_on(const char *base, const char *url)
{
	size_t		n;

	if (base == NULL || url == NULL || strlen(url) > WX_V3_URL_MAX || !url_chars_ok(url) ||
		strstr(base, "://") == NULL)
		return NULL;
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	if (n == 0 || strlen(url) <= n || url[n] != '/')
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (upper(base[i]) != upper(url[i]))
			return NULL;
	return url + n;
}
