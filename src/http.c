/*
 * http.c
 *	  libcurl for pg_wxpay: one reusable handle per backend, interruptible
 *	  transfers, TLS verification always on, any method, headers both ways
 *	  and a response size limit per request.  The protocol layers
 *	  (proto_v2.c) decide what the headers and bodies say.
 *
 * A backend keeps one multi handle and one easy handle for its lifetime,
 * so connections and TLS sessions are reused from call to call.  The
 * transfer runs through the multi interface in 100 ms slices with
 * CHECK_FOR_INTERRUPTS between them, so statement_timeout and
 * pg_cancel_backend end a hung request promptly with PostgreSQL's own
 * error.  If that error longjmps out, the easy handle stays attached to the
 * multi handle; the next call detaches it first, which also drops the
 * half-done connection.  curl's callbacks never raise: the write callback
 * stops at the size cap and the caller reports it.  The header list curl
 * needs is malloc'd by curl; it is freed when the transfer is released, or
 * at the next use of the backend's handle after an error.
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
static struct curl_slist *backend_sent_headers = NULL;

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
	curl_ready = true;
}

/*
 * Append n bytes to a growing buffer in cxt without ever raising; false
 * when memory runs out.
 */
static bool
append_bytes(MemoryContext cxt, char **buf, size_t *len, size_t *cap,
			 const char *data, size_t n)
{
	if (*len + n + 1 > *cap)
	{
		size_t		grown_cap = Max(Max(*cap * 2, *len + n + 1), 1024);
		/* HUGE: a day's bill can exceed 1 GB's allocation limit's half */
		char	   *grown = MemoryContextAllocExtended(cxt, grown_cap, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);

		if (grown == NULL)
			return false;
		if (*len > 0)
			memcpy(grown, *buf, *len);
		if (*buf != NULL)
			pfree(*buf);
		*buf = grown;
		*cap = grown_cap;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return true;
}

/* Accumulate the body, up to the request's limit. */
static size_t
collect_body(char *data, size_t size, size_t nmemb, void *arg)
{
	WxHttpResponse *resp = arg;
	size_t		n = size * nmemb;

	if (resp->len + n > resp->max)
	{
		resp->too_large = true;
		return 0;				/* makes curl fail with CURLE_WRITE_ERROR */
	}
	return append_bytes(resp->cxt, &resp->body, &resp->len, &resp->cap, data, n) ? n : 0;
}

/* Accumulate header lines, at most 64 kB of them. */
static size_t
collect_header(char *data, size_t size, size_t nmemb, void *arg)
{
	WxHttpResponse *resp = arg;
	size_t		n = size * nmemb;

	/* A new response (after a 100 Continue or a redirect status) starts afresh. */
	if (n > 5 && strncmp(data, "HTTP/", 5) == 0)
		resp->headers_len = 0;
	if (resp->headers_len + n > 65536)
		return 0;
	return append_bytes(resp->cxt, &resp->headers, &resp->headers_len, &resp->headers_cap,
						data, n) ? n : 0;
}

/* Whether a URL's host is on this machine: only there may http:// go. */
static bool
url_is_loopback(const char *url)
{
	static const char *const prefixes[] = {
		"http://127.", "http://localhost:", "http://localhost/", "http://[::1]"
	};

	for (size_t i = 0; i < lengthof(prefixes); i++)
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

/* A request with no body, headers or certificates yet. */
void
wxpay_http_request_init(WxHttpRequest *req, const char *method, const char *url,
						size_t max_response)
{
	memset(req, 0, sizeof(*req));
	req->method = method;
	req->url = url;
	req->max_response = max_response;
}

/* Add a "Name: value" header line; the string must outlive the transfer. */
void
wxpay_http_add_header(WxHttpRequest *req, const char *line)
{
	if (req->nheaders >= WX_HTTP_MAX_HEADERS)
		elog(ERROR, "too many HTTP headers for %s", req->url);
	req->headers[req->nheaders++] = line;
}

/* The request's header lines as curl wants them (malloc'd by curl). */
static struct curl_slist *
header_list(const WxHttpRequest *req)
{
	/* No "Expect: 100-continue" round trip for small bodies. */
	struct curl_slist *list = curl_slist_append(NULL, "Expect:");

	for (int i = 0; list != NULL && i < req->nheaders; i++)
	{
		struct curl_slist *more = curl_slist_append(list, req->headers[i]);

		if (more == NULL)
			curl_slist_free_all(list);
		list = more;
	}
	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return list;
}

/*
 * Configure an easy handle for one request.  Shared by backends and the
 * worker's multi loop; resp receives the status, headers, body and curl's
 * error text, allocated in cxt.  wxpay_http_release frees what curl holds.
 */
void
wxpay_http_prepare(CURL *easy, const WxHttpRequest *req, WxHttpResponse *resp,
				   MemoryContext cxt)
{
	memset(resp, 0, sizeof(*resp));
	resp->cxt = cxt;
	resp->max = req->max_response;
	curl_easy_reset(easy);

	SETOPT(easy, CURLOPT_URL, req->url);
	SETOPT(easy, CURLOPT_PROTOCOLS_STR, url_is_loopback(req->url) ? "http,https" : "https");
	SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	SETOPT(easy, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body != NULL)
	{
		SETOPT(easy, CURLOPT_POSTFIELDS, req->body);
		SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	}
	else if (strcmp(req->method, "GET") == 0)
		SETOPT(easy, CURLOPT_HTTPGET, 1L);
	SETOPT(easy, CURLOPT_USERAGENT, "pg_wxpay/1.1");
	SETOPT(easy, CURLOPT_TIMEOUT_MS, (long) wxpay_http_timeout);
	SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(wxpay_connect_timeout, wxpay_http_timeout));
	SETOPT(easy, CURLOPT_WRITEFUNCTION, collect_body);
	SETOPT(easy, CURLOPT_WRITEDATA, resp);
	SETOPT(easy, CURLOPT_HEADERFUNCTION, collect_header);
	SETOPT(easy, CURLOPT_HEADERDATA, resp);
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
	/* Last: nothing above may raise while curl holds the list. */
	resp->sent_headers = header_list(req);
	SETOPT(easy, CURLOPT_HTTPHEADER, resp->sent_headers);
}

/* Free what curl allocated for a finished (or abandoned) transfer. */
void
wxpay_http_release(WxHttpResponse *resp)
{
	if (resp->sent_headers != NULL)
		curl_slist_free_all(resp->sent_headers);
	resp->sent_headers = NULL;
}

/*
 * A response header's value (the last one of that name), or NULL; names
 * compare case-insensitively, the value is trimmed.
 */
const char *
wxpay_http_header(const WxHttpResponse *resp, const char *name)
{
	size_t		nlen = strlen(name);
	const char *found = NULL;
	size_t		found_len = 0;

	for (const char *line = resp->headers; line != NULL && *line != '\0';)
	{
		const char *end = strchr(line, '\n');
		size_t		len = end ? (size_t) (end - line) : strlen(line);

		if (len > nlen && line[nlen] == ':' && pg_strncasecmp(line, name, nlen) == 0)
		{
			found = line + nlen + 1;
			found_len = len - nlen - 1;
			while (found_len > 0 && (*found == ' ' || *found == '\t'))
				found++, found_len--;
			while (found_len > 0 && (found[found_len - 1] == '\r' || found[found_len - 1] == ' '))
				found_len--;
		}
		line = end ? end + 1 : line + len;
	}
	return found ? pnstrdup(found, found_len) : NULL;
}

/* Endpoint of a URL for messages: scheme, host and path, nothing else. */
static const char *
endpoint_of(const char *url)
{
	const char *q = strchr(url, '?');

	return q ? pnstrdup(url, q - url) : url;
}

/*
 * Describe a failed transfer in *message, or return WX_HTTP_OK when it
 * worked and the answer is a 2xx within the size limit.  Other statuses
 * are failures here; a protocol whose errors come with 4xx bodies reads
 * them before asking.
 */
WxHttpFailure
wxpay_http_failure(const WxHttpRequest *req, CURLcode code,
				   const WxHttpResponse *resp, char **message)
{
	const char *endpoint = endpoint_of(req->url);

	*message = NULL;
	if (resp->too_large)
		*message = psprintf("response from %s exceeds %zu bytes", endpoint, req->max_response);
	else if (code != CURLE_OK)
		*message = psprintf("request to %s failed: %s", endpoint,
							resp->error[0] ? resp->error : curl_easy_strerror(code));
	else if (resp->status < 200 || resp->status > 299)
		*message = psprintf("request to %s failed: HTTP status %ld", endpoint, resp->status);
	else
		return WX_HTTP_OK;
	/* The peer could not be trusted, or we could not prove who we are. */
	if (code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE ||
		code == CURLE_SSL_CERTPROBLEM || code == CURLE_SSL_CRL_BADFILE ||
		code == CURLE_SSL_ISSUER_ERROR || code == CURLE_SSL_PINNEDPUBKEYNOTMATCH)
		return WX_HTTP_UNTRUSTED;
	return WX_HTTP_FAILED;
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
	if (backend_sent_headers != NULL)
	{
		curl_slist_free_all(backend_sent_headers);
		backend_sent_headers = NULL;
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
 * Run req on the backend's handle and fill resp (in the current memory
 * context).  Returns how it failed, with *message, or WX_HTTP_OK.
 */
WxHttpFailure
wxpay_http_perform(const WxHttpRequest *req, WxHttpResponse *resp, char **message)
{
	CURLcode	code;

	backend_handles();
	wxpay_http_prepare(backend_easy, req, resp, CurrentMemoryContext);
	backend_sent_headers = resp->sent_headers;
	if (curl_multi_add_handle(backend_multi, backend_easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start libcurl transfer")));
	backend_easy_attached = true;
	code = run_transfer();
	curl_multi_remove_handle(backend_multi, backend_easy);
	backend_easy_attached = false;
	wxpay_http_release(resp);
	backend_sent_headers = NULL;

	curl_easy_getinfo(backend_easy, CURLINFO_RESPONSE_CODE, &resp->status);
	return wxpay_http_failure(req, code, resp, message);
}
