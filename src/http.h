/*
 * http.h
 *	  HTTPS POST to WeChat Pay with libcurl, for backends and the worker.
 */
#ifndef WXPAY_HTTP_H
#define WXPAY_HTTP_H

#include <curl/curl.h>

/* What to send and how to trust the peer. */
typedef struct WxHttpRequest
{
	const char *url;
	const char *body;
	size_t		body_len;
	const char *ca_pem;			/* extra CA to trust, or NULL */
	const char *cert_pem;		/* client certificate for /secapi/, or NULL */
	const char *key_pem;
} WxHttpRequest;

/* The response body, capped at WX_XML_MAX_BODY bytes, in palloc memory. */
typedef struct WxHttpResponse
{
	long		status;
	char	   *body;
	size_t		len;
	size_t		cap;
	bool		too_large;
	char		error[CURL_ERROR_SIZE];
} WxHttpResponse;

/* GUCs (ms) */
extern int	wxpay_http_timeout;
extern int	wxpay_connect_timeout;

extern void wxpay_http_global_init(void);
extern void wxpay_http_prepare(CURL *easy, const WxHttpRequest *req,
							   WxHttpResponse *resp);
extern CURLMcode wxpay_http_poll(CURLM *multi);
extern char *wxpay_http_failure(const WxHttpRequest *req, CURLcode code,
								const WxHttpResponse *resp);
extern void wxpay_http_post(const WxHttpRequest *req, WxHttpResponse *resp);

#endif							/* WXPAY_HTTP_H */
