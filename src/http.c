/*
 * http.c
 *	  libcurl for pg_wxpay: one reusable handle per backend, interruptible
 *	  transfers, TLS verification always on.
 *
 * A backend keeps one multi handle and one easy handle for its lifetime,
 * so connections and TLS sessions are reused from call to call.  The
 * transfer runs through the multi interface in 100 ms slices with
 * CHECK_FOR_INTERRUPTS between them, so statement_timeout and
 * pg_cancel_backend end a hung request promptly with PostgreSQL's own
 * error.  If that error longjmps out, the easy handle stays attached to the
 * multi handle; the next call detaches it first, which also drops the
 * half-done connection.  curl's callbacks never raise: the write callback
 * stops at the size cap and the caller reports it.
 *
 * Secrets: CURLOPT_VERBOSE is never set, and messages name the endpoint
 * and the failure, never a header, key or body.
 */
#include "wxpay.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "http.h"

int			wxpay_http_timeout = 10000;
int			wxpay_connect_timeout = 5000;

static bool curl_ready = false;
static CURLM *backend_multi = NULL;
static CURL *backend_easy = NULL;
static bool backend_easy_attached = false;
static struct curl_slist *xml_headers = NULL;

/*
 * curl_global_init in the process that uses curl, never in _PG_init: that
 * runs in the postmaster, which must stay single-threaded.
 */
void
wxpay_http_global_init(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	xml_headers = curl_slist_append(NULL, "Content-Type: text/xml; charset=utf-8");
	xml_headers = curl_slist_append(xml_headers, "Expect:");
	if (xml_headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	curl_ready = true;
}

/* Accumulate the body in palloc memory without ever raising. */
static size_t
collect_body(char *data, size_t size, size_t nmemb, void *arg)
{
	WxHttpResponse *resp = arg;
	size_t		n = size * nmemb;

	if (resp->len + n > WX_XML_MAX_BODY)
	{
		resp->too_large = true;
		return 0;				/* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (resp->len + n + 1 > resp->cap)
	{
		size_t		cap = Max(resp->cap * 2, resp->len + n + 1);
		char	   *grown = palloc_extended(Max(cap, 4096), MCXT_ALLOC_NO_OOM);

		if (grown == NULL)
			return 0;
		if (resp->len > 0)
			memcpy(grown, resp->body, resp->len);
		if (resp->body != NULL)
			pfree(resp->body);
		resp->body = grown;
		resp->cap = Max(cap, 4096);
	}
	memcpy(resp->body + resp->len, data, n);
	resp->len += n;
	resp->body[resp->len] = '\0';
	return n;
}

/* Whether a URL's host is on this machine: only there may http:// go. */
static bool
url_is_loopback(const char *url)
{
	static const char *const prefixes[] = {
		"http://127.", "http://localhost:", "http://localhost/", "http://[::1]"
	};

	for (int i = 0; i < lengthof(prefixes); i++)
		if (strncmp(url, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

#define SETOPT(easy, opt, val) \
	do { \
		if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_SYSTEM_ERROR), \
					 errmsg("could not set libcurl option %s", #opt))); \
	} while (0)

/* Blob options copy the data, so the PEM strings may be freed after. */
static void
set_blob(CURL *easy, CURLoption opt, const char *pem, const char *what)
{
	struct curl_blob blob;

	blob.data = (void *) pem;
	blob.len = strlen(pem);
	blob.flags = CURL_BLOB_COPY;
	if (curl_easy_setopt(easy, opt, &blob) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not load %s into libcurl", what)));
}

/*
 * Configure an easy handle for one POST.  Shared by backends and the
 * worker's multi loop; resp receives the body and curl's error text.
 */
void
wxpay_http_prepare(CURL *easy, const WxHttpRequest *req, WxHttpResponse *resp)
{
	memset(resp, 0, sizeof(*resp));
	curl_easy_reset(easy);

	SETOPT(easy, CURLOPT_URL, req->url);
	SETOPT(easy, CURLOPT_PROTOCOLS_STR, url_is_loopback(req->url) ? "http,https" : "https");
	SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	SETOPT(easy, CURLOPT_POST, 1L);
	SETOPT(easy, CURLOPT_POSTFIELDS, req->body);
	SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	SETOPT(easy, CURLOPT_HTTPHEADER, xml_headers);
	SETOPT(easy, CURLOPT_USERAGENT, "pg_wxpay/1.0");
	SETOPT(easy, CURLOPT_TIMEOUT_MS, (long) wxpay_http_timeout);
	SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(wxpay_connect_timeout, wxpay_http_timeout));
	SETOPT(easy, CURLOPT_WRITEFUNCTION, collect_body);
	SETOPT(easy, CURLOPT_WRITEDATA, resp);
	SETOPT(easy, CURLOPT_ERRORBUFFER, resp->error);
	SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);

	/* Verification is not configurable: there is no way to turn it off. */
	SETOPT(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_pem != NULL)
		set_blob(easy, CURLOPT_CAINFO_BLOB, req->ca_pem, "the merchant's ca_pem");
	if (req->cert_pem != NULL)
	{
		set_blob(easy, CURLOPT_SSLCERT_BLOB, req->cert_pem, "the merchant's cert_pem");
		set_blob(easy, CURLOPT_SSLKEY_BLOB, req->key_pem, "the merchant's key_pem");
		SETOPT(easy, CURLOPT_SSLCERTTYPE, "PEM");
		SETOPT(easy, CURLOPT_SSLKEYTYPE, "PEM");
	}
}

/* Endpoint of a URL for messages: scheme, host and path, nothing else. */
static const char *
endpoint_of(const char *url)
{
	const char *q = strchr(url, '?');

	return q ? pnstrdup(url, q - url) : url;
}

/*
 * Describe a failed transfer, or return NULL when the transfer worked and
 * the answer is an HTTP 200 within the size cap.
 */
char *
wxpay_http_failure(const WxHttpRequest *req, CURLcode code,
				   const WxHttpResponse *resp)
{
	const char *endpoint = endpoint_of(req->url);

	if (resp->too_large)
		return psprintf("response from %s exceeds %d bytes", endpoint, WX_XML_MAX_BODY);
	if (code != CURLE_OK)
		return psprintf("request to %s failed: %s", endpoint,
						resp->error[0] ? resp->error : curl_easy_strerror(code));
	if (resp->status != 200)
		return psprintf("request to %s failed: HTTP status %ld", endpoint, resp->status);
	return NULL;
}

/* The backend's handles, created on first use and kept for reuse. */
static void
backend_handles(void)
{
	wxpay_http_global_init();
	if (backend_multi == NULL && (backend_multi = curl_multi_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create libcurl multi handle")));
	if (backend_easy == NULL && (backend_easy = curl_easy_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create libcurl handle")));
	/* Left attached by a transfer that an interrupt cut short. */
	if (backend_easy_attached)
	{
		curl_multi_remove_handle(backend_multi, backend_easy);
		backend_easy_attached = false;
	}
}

/*
 * Wait up to 100 ms for activity on multi's transfers, reporting the
 * Extension wait event meanwhile so pg_stat_activity shows the wait.
 */
CURLMcode
wxpay_http_poll(CURLM *multi)
{
	CURLMcode	mc;

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	mc = curl_multi_poll(multi, NULL, 0, 100, NULL);
	pgstat_report_wait_end();
	return mc;
}

/* Run the attached transfer to completion, checking for interrupts. */
static CURLcode
run_transfer(void)
{
	int			running = 1;
	CURLMcode	mc;
	CURLMsg    *msg;
	int			queued;

	while (running)
	{
		mc = curl_multi_perform(backend_multi, &running);
		if (mc == CURLM_OK && running)
			mc = wxpay_http_poll(backend_multi);
		if (mc != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("libcurl multi interface failed: %s", curl_multi_strerror(mc))));
		CHECK_FOR_INTERRUPTS();
	}
	while ((msg = curl_multi_info_read(backend_multi, &queued)) != NULL)
		if (msg->msg == CURLMSG_DONE)
			return msg->data.result;
	return CURLE_RECV_ERROR;
}

/*
 * POST req and fill resp; any transport failure, non-200 status or
 * oversized body is an ERROR naming the endpoint.
 */
void
wxpay_http_post(const WxHttpRequest *req, WxHttpResponse *resp)
{
	CURLcode	code;
	char	   *failure;

	backend_handles();
	wxpay_http_prepare(backend_easy, req, resp);
	if (curl_multi_add_handle(backend_multi, backend_easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start libcurl transfer")));
	backend_easy_attached = true;
	code = run_transfer();
	curl_multi_remove_handle(backend_multi, backend_easy);
	backend_easy_attached = false;

	curl_easy_getinfo(backend_easy, CURLINFO_RESPONSE_CODE, &resp->status);
	if ((failure = wxpay_http_failure(req, code, resp)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s", failure),
				 code == CURLE_OPERATION_TIMEDOUT ?
				 errhint("The limits are wxpay.http_timeout (%d ms) and wxpay.connect_timeout (%d ms).",
						 wxpay_http_timeout, wxpay_connect_timeout) : 0));
}
