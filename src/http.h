/*
 * http.h
 *	  HTTPS to WeChat Pay with libcurl, for backends and the worker: any
 *	  method, headers both ways, a size limit per request.  Knows nothing of
 *	  the protocol spoken over it (see proto_v2.c).
 */
#ifndef WXPAY_HTTP_H
#define WXPAY_HTTP_H

#include <curl/curl.h>

#include "utils/palloc.h"

#define WX_HTTP_MAX_HEADERS 8

/* What to send and how to trust the peer. */
typedef struct WxHttpRequest
{
	const char *method;			/* "POST", "GET", ... */
	const char *url;
	const char *body;			/* NULL: none */
	size_t		body_len;
	const char *headers[WX_HTTP_MAX_HEADERS];	/* "Name: value" lines */
	int			nheaders;
	size_t		max_response;	/* response bodies beyond this fail */
	const char *ca_pem;			/* extra CA to trust, or NULL */
	const char *cert_pem;		/* client certificate for /secapi/, or NULL */
	const char *key_pem;
} WxHttpRequest;

/* The answer: status, headers and body, in the memory context cxt. */
typedef struct WxHttpResponse
{
	MemoryContext cxt;
	long		status;
	char	   *body;			/* NUL-terminated; NULL when empty */
	size_t		len;
	size_t		cap;
	size_t		max;
	bool		too_large;
	char	   *headers;		/* raw header lines, NUL-terminated */
	size_t		headers_len;
	size_t		headers_cap;
	struct curl_slist *sent_headers;	/* freed by wxpay_http_release */
	char		error[CURL_ERROR_SIZE];
} WxHttpResponse;

/* How a transfer failed, for the caller's error contract. */
typedef enum WxHttpFailure
{
	WX_HTTP_OK,
	WX_HTTP_UNTRUSTED,			/* TLS verification or client certificate failed */
	WX_HTTP_FAILED				/* anything else: network, timeout, status, size */
} WxHttpFailure;

/* GUCs (ms) */
extern int	wxpay_http_timeout;
extern int	wxpay_connect_timeout;

extern void wxpay_http_global_init(void);
extern void wxpay_http_request_init(WxHttpRequest *req, const char *method,
									const char *url, size_t max_response);
extern void wxpay_http_add_header(WxHttpRequest *req, const char *line);
extern void wxpay_http_prepare(CURL *easy, const WxHttpRequest *req,
							   WxHttpResponse *resp, MemoryContext cxt);
extern void wxpay_http_release(WxHttpResponse *resp);
extern CURLMcode wxpay_http_poll(CURLM *multi);
extern WxHttpFailure wxpay_http_failure(const WxHttpRequest *req, CURLcode code,
										const WxHttpResponse *resp, char **message);
extern const char *wxpay_http_header(const WxHttpResponse *resp, const char *name);
extern WxHttpFailure wxpay_http_perform(const WxHttpRequest *req, WxHttpResponse *resp,
										char **message);

#endif							/* WXPAY_HTTP_H */
