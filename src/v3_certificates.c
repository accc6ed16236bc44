/*
 * v3_certificates.c
 *	  WeChat Pay platform certificates (wxpay-v3-api.md §3.4): the endpoint
 *	  GET /v3/certificates and the worker's downloads of it.
 *
 * The worker downloads the certificates of every v3 merchant that verifies
 * with certificates (any merchant_v3 row but one with a public key and no
 * certificate) every 24 hours, and at once, at most once in 30 seconds per
 * merchant, when an answer or notification of that merchant named an
 * unknown certificate serial (wxpay_v3_certificates_wanted, kept per
 * merchant in shared memory by merchant_marks.c: one merchant's unknown
 * serial never downloads another's).  Each certificate is decrypted
 * with the APIv3 key (AES-256-GCM authenticates it: a tag that does not
 * verify says the APIv3 key is wrong), must carry the serial
 * it is listed under, and is kept in wxpay.wechatpay_keys (source
 * download) until its expire_time, also after WeChat Pay stops listing it.
 * The answer itself is verified like any v3 answer, by a key already known
 * or by the listed certificate its Wechatpay-Serial names.  A merchant
 * without certificates (404 RESOURCE_NOT_EXISTS: public-key merchants) is
 * recorded quietly in wxpay.cert_downloads; other failures are
 * logged once when they start, and a download once it adds, changes or
 * removes a certificate (not each time it finds the same ones).
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "merchant_marks.h"
#include "spi_util.h"
#include "txn.h"
#include "wx_aes.h"
#include "wx_rsa.h"

/*
 * Most certificates one answer may list (WeChat Pay lists one, two during
 * a rotation); an answer with more is refused rather than read in part,
 * which could leave out the newest.
 */
#define MAX_CERTIFICATES 64
/* How often the worker looks for due downloads when nobody asked. */
#define DOWNLOAD_CHECK_MS 10000
/* The least time between two downloads of a merchant's certificates. */
#define DOWNLOAD_MIN_SECONDS "30"
/* How often one merchant's unknown serials are noted (and wake the worker). */
#define WANTED_NOTE_MS 1000

/* One listed certificate, decrypted. */
typedef struct WxListedCertificate
{
	const char *serial;
	const char *pem;
	const char *effective_at;
	const char *expires_at;
} WxListedCertificate;

/*
 * The n-th certificate of a /v3/certificates answer, decrypted with the
 * APIv3 key into c; false (with *why) when it is absent (why NULL), does
 * not decrypt, or is not a certificate with the listed serial.
 */
static bool
listed_certificate(const WxMerchant *m, const WxParamList *f, int n,
				   WxListedCertificate *c, char **why)
{
#define FIELD(name) wxpay_list_get(f, psprintf("data.%d.%s", n, name))
	const char *nonce = FIELD("encrypt_certificate.nonce");
	const char *aad = FIELD("encrypt_certificate.associated_data");
	const char *b64 = FIELD("encrypt_certificate.ciphertext");
	unsigned char *plain;
	size_t		len;
	WxAesStatus status;
	char		serial[WX_SERIAL_HEX_MAX];

	*why = NULL;
	memset(c, 0, sizeof(*c));
	if ((c->serial = FIELD("serial_no")) == NULL)
		return false;
	c->effective_at = wxpay_v3_time(FIELD("effective_time"));
	c->expires_at = wxpay_v3_time(FIELD("expire_time"));
#undef FIELD
	if (nonce == NULL || b64 == NULL || c->expires_at == NULL)
	{
		*why = psprintf("certificate %s is listed without its encrypt_certificate or expire_time", c->serial);
		return false;
	}
	plain = palloc(wx_base64_decoded_max(strlen(b64)) + 1);
	status = wx_gcm_decrypt(m->apiv3_key, strlen(m->apiv3_key), nonce, strlen(nonce),
							aad ? aad : "", aad ? strlen(aad) : 0, b64, strlen(b64), plain, &len);
	if (status == WX_AES_BAD_TAG)
	{
		/* Never the key itself: only that it is wrong. */
		*why = psprintf("the APIv3 key of merchant %s is wrong: certificate %s does not decrypt with it (%s)",
						m->mch_id, c->serial, wx_aes_status_text(status));
		return false;
	}
	if (status != WX_AES_OK)
	{
		*why = psprintf("certificate %s does not decrypt: %s", c->serial, wx_aes_status_text(status));
		return false;
	}
	plain[len] = '\0';
	if (!wx_cert_serial((char *) plain, len, serial) || pg_strcasecmp(serial, c->serial) != 0 ||
		wx_key_public((char *) plain, len) == NULL)
	{
		*why = psprintf("the certificate listed as %s is not an RSA certificate with that serial", c->serial);
		return false;
	}
	c->serial = pstrdup(serial);
	c->pem = (char *) plain;
	return true;
}

/*
 * The PEM of the certificate a /v3/certificates answer lists under serial,
 * decrypted; NULL when it lists none, and with *why when it lists one that
 * cannot be read (a wrong APIv3 key).  proto_v3.c verifies the answer with
 * it when no known key has that serial.
 */
const char *
wxpay_v3_answer_certificate(const WxMerchant *m, const WxParamList *fields,
							const char *serial, char **why)
{
	WxListedCertificate c;

	for (int n = 0; n < MAX_CERTIFICATES; n++)
	{
		bool		ok = listed_certificate(m, fields, n, &c, why);

		if (!ok && *why == NULL)
			break;
		if (pg_strcasecmp(c.serial, serial) == 0)
			return ok ? c.pem : NULL;
	}
	*why = NULL;
	return NULL;
}

/* A certificates answer: 200 with its data (read by apply). */
static bool
read_certificates(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	return wxpay_v3_result(call, answer, fail);
}

/*
 * Keep every listed certificate (all must decrypt), and forget downloaded
 * ones past their expiry.
 */
static bool
store_certificates(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	const char *mch_id = call->merchant->mch_id;
	WxListedCertificate certs[MAX_CERTIFICATES];
	int			n;
	char	   *why;

	for (n = 0; n < MAX_CERTIFICATES; n++)
		if (!listed_certificate(call->merchant, &answer->fields, n, &certs[n], &why))
		{
			if (why != NULL)
				return wxpay_fail(fail, WX_FAIL_MISMATCH, why);
			break;
		}
	if (wxpay_list_get(&answer->fields, psprintf("data.%d.serial_no", MAX_CERTIFICATES)) != NULL)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("/v3/certificates lists more than %d certificates", MAX_CERTIFICATES));
	for (int i = 0; i < n; i++)
	{
		char		nulls[5] = "    ";
		Datum		values[5];

		values[0] = CStringGetTextDatum(mch_id);
		values[1] = CStringGetTextDatum(certs[i].serial);
		values[2] = CStringGetTextDatum(certs[i].pem);
		values[3] = wxpay_text_or_null(certs[i].effective_at, nulls, 3);
		values[4] = CStringGetTextDatum(certs[i].expires_at);
		wxpay_spi_exec("INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem, effective_at, expires_at, source)"
					   " VALUES ($1, $2, $3, $4::pg_catalog.timestamptz, $5::pg_catalog.timestamptz, 'download')"
					   " ON CONFLICT (mch_id, serial) DO UPDATE SET expires_at = EXCLUDED.expires_at"
					   " WHERE wechatpay_keys.source OPERATOR(pg_catalog.=) 'download'"
					   " AND wechatpay_keys.expires_at IS DISTINCT FROM EXCLUDED.expires_at",
					   5, (Oid[]) {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}, values, nulls,
					   false, SPI_OK_INSERT);
		answer->changed |= SPI_processed > 0;
	}
	wxpay_spi_exec("DELETE FROM wxpay.wechatpay_keys WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND source OPERATOR(pg_catalog.=) 'download'"
				   " AND expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()",
				   1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(mch_id)}, NULL,
				   false, SPI_OK_DELETE);
	answer->changed |= SPI_processed > 0;
	return true;
}

static const WxEndpointV3 v3_certificates = {
	.method = "GET",
	.path = "/v3/certificates",
	.keys_in_answer = true,
	.read = read_certificates,
};

const WxEndpoint wx_endpoint_certificates = {
	.name = "certificates",
	.path = NULL,				/* API v3 only */
	.source = "download",
	.apply = store_certificates,
	.v3 = &v3_certificates,
};

/*--------------------------------------------------------------------
 * The worker's downloads
 *--------------------------------------------------------------------
 */

/*
 * An answer or a notification of merchant mch_id named a certificate
 * serial no key has: the worker downloads that merchant's certificates
 * now (at most once in 30 seconds).  Safe to call from any backend, also
 * in a transaction that rolls back; never raises.
 */
void
wxpay_v3_certificates_wanted(const char *mch_id)
{
	if (wxpay_merchant_mark(mch_id, WX_MARK_CERTIFICATES_WANTED, WANTED_NOTE_MS))
		wxpay_wake_worker();
}

/*
 * The v3 merchants due for a download: never downloaded, 24 hours ago, or
 * before their certificates were wanted ($1 the merchants, $2 when) and at
 * least 30 seconds ago.  Not those with a public key and no certificate:
 * nothing to download.
 */
#define DOWNLOAD_CANDIDATES \
	" FROM wxpay.merchant_v3 v" \
	" JOIN wxpay.merchants m ON m.mch_id OPERATOR(pg_catalog.=) v.mch_id" \
	" LEFT JOIN wxpay.cert_downloads d ON d.mch_id OPERATOR(pg_catalog.=) v.mch_id" \
	" LEFT JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.timestamptz[]))" \
	"  AS w(mch_id, wanted_at) ON w.mch_id OPERATOR(pg_catalog.=) v.mch_id" \
	" WHERE m.protocol OPERATOR(pg_catalog.=) 'v3'" \
	"  AND NOT (EXISTS (SELECT FROM wxpay.wechatpay_keys k WHERE k.mch_id OPERATOR(pg_catalog.=) v.mch_id" \
	"                   AND k.kind OPERATOR(pg_catalog.=) 'public_key')" \
	"   AND NOT EXISTS (SELECT FROM wxpay.wechatpay_keys k WHERE k.mch_id OPERATOR(pg_catalog.=) v.mch_id" \
	"                   AND k.kind OPERATOR(pg_catalog.=) 'certificate'))"
#define DUE_DOWNLOADS \
	"SELECT v.mch_id, d.status" DOWNLOAD_CANDIDATES \
	"  AND (d.checked_at IS NULL" \
	"   OR d.checked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '24 hours')" \
	"   OR (d.checked_at OPERATOR(pg_catalog.<) w.wanted_at" \
	"    AND d.checked_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '" DOWNLOAD_MIN_SECONDS " seconds')))" \
	" ORDER BY d.checked_at NULLS FIRST LIMIT 16"

/* When the first of them is due by the same rule (NULL: none; in the past: now). */
#define NEXT_DOWNLOAD \
	"SELECT pg_catalog.min(COALESCE(LEAST(d.checked_at OPERATOR(pg_catalog.+) interval '24 hours'," \
	"   CASE WHEN d.checked_at OPERATOR(pg_catalog.<) w.wanted_at" \
	"    THEN d.checked_at OPERATOR(pg_catalog.+) interval '" DOWNLOAD_MIN_SECONDS " seconds' END)," \
	"   pg_catalog.now()))" DOWNLOAD_CANDIDATES

/*
 * When the worker looked last, when the next download was due then (0:
 * none), and whether it has been woken since without looking.
 */
static TimestampTz last_look = 0;
static TimestampTz next_download_at = 0;
static bool look_skipped = false;

/* One merchant's download, from request to recorded outcome. */
typedef struct WxDownload
{
	WxCall		call;
	char	   *previous;		/* the last download's status, or NULL */
	WxHttpRequest req;
	WxHttpResponse resp;
	WxHttpFailure transport;
	char	   *message;
	const char *error;			/* the request could not be made */
} WxDownload;

/* Record a download's outcome; failures are logged when they start. */
static void
record_download(WxDownload *d, const char *status, const char *message)
{
	char		nulls[3] = "  ";

	if (strcmp(status, "error") == 0 && (d->previous == NULL || strcmp(d->previous, "error") != 0))
		ereport(LOG,
				(errmsg("wxpay: could not download the platform certificates of merchant %s: %s",
						d->call.merchant->mch_id, message)));
	wxpay_spi_exec("INSERT INTO wxpay.cert_downloads (mch_id, checked_at, status, message)"
				   " VALUES ($1, pg_catalog.now(), $2, $3) ON CONFLICT (mch_id) DO UPDATE"
				   " SET checked_at = EXCLUDED.checked_at, status = EXCLUDED.status, message = EXCLUDED.message",
				   3, (Oid[]) {TEXTOID, TEXTOID, TEXTOID},
				   (Datum[]) {CStringGetTextDatum(d->call.merchant->mch_id), CStringGetTextDatum(status),
				   wxpay_text_or_null(message, nulls, 2)}, nulls, false, SPI_OK_INSERT);
}

/* wxpay_run_isolated's step: judge, store and record one download. */
static void
finish_download(void *arg)
{
	WxDownload *d = arg;
	WxAnswer	answer;
	WxFailure	fail;
	char	   *text;

	if (d->error != NULL)
	{
		record_download(d, "error", d->error);
		return;
	}
	if (wxpay_endpoint_finish(&d->call, d->transport, d->message, &d->resp, &answer, &fail))
	{
		if (answer.changed)
			ereport(LOG,
					(errmsg("wxpay: platform certificates of merchant %s downloaded",
							d->call.merchant->mch_id)));
		record_download(d, "ok", NULL);
		return;
	}
	text = wxpay_failure_text(&fail);
	wx_utf8_clip(text);
	record_download(d, wxpay_failure_sqlstate(&fail) == ERRCODE_WXPAY_NOT_FOUND ? "none" : "error", text);
}

/* What prepare_downloads works on (a step of wxpay_run_isolated). */
typedef struct WxDownloads
{
	WxDownload *downloads;
	int			n;
	MemoryContext cxt;
} WxDownloads;

/* The merchants whose certificates are wanted, and when: DUE_DOWNLOADS' $1, $2. */
static Datum *
wanted_arrays(void)
{
	int			max = wxpay_merchant_mark_slots();
	char	  **mch_ids = palloc(sizeof(char *) * max);
	TimestampTz *at = palloc(sizeof(TimestampTz) * max);
	Datum	   *ids = palloc(sizeof(Datum) * max);
	Datum	   *ats = palloc(sizeof(Datum) * max);
	Datum	   *arrays = palloc(sizeof(Datum) * 2);
	TimestampTz latest;
	int			n = wxpay_merchant_marked(WX_MARK_CERTIFICATES_WANTED, mch_ids, at, max, &latest);

	for (int i = 0; i < n; i++)
	{
		ids[i] = CStringGetTextDatum(mch_ids[i]);
		ats[i] = TimestampTzGetDatum(at[i]);
	}
	arrays[0] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	arrays[1] = PointerGetDatum(construct_array(ats, n, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	return arrays;
}

/* The due merchants' downloads with their requests, in cxt. */
static void
prepare_downloads(void *arg)
{
	WxDownloads *all = arg;
	WxDownload *downloads = all->downloads;
	MemoryContext cxt = all->cxt;
	int			n = 0;
	int			due;
	char	  **mch_ids;
	char	  **previous;
	Datum	   *wanted = wanted_arrays();
	Datum		next;
	bool		none;

	wxpay_spi_exec(NEXT_DOWNLOAD, 2, (Oid[]) {TEXTARRAYOID, TIMESTAMPTZARRAYOID}, wanted,
				   NULL, true, SPI_OK_SELECT);
	next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &none);
	next_download_at = none ? 0 : DatumGetTimestampTz(next);
	wxpay_spi_exec(DUE_DOWNLOADS, 2, (Oid[]) {TEXTARRAYOID, TIMESTAMPTZARRAYOID}, wanted,
				   NULL, true, SPI_OK_SELECT);
	due = (int) SPI_processed;
	mch_ids = palloc(sizeof(char *) * (due + 1));
	previous = palloc(sizeof(char *) * (due + 1));
	for (int i = 0; i < due; i++)
	{
		mch_ids[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		previous[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}
	for (int i = 0; i < due; i++)
	{
		WxMerchant *m = wxpay_merchant_find(mch_ids[i], cxt);
		WxDownload *d = &downloads[n];
		WxFailure	fail;
		MemoryContext old;

		if (m == NULL)
			continue;
		old = MemoryContextSwitchTo(cxt);
		wxpay_call_init(&d->call, &wx_endpoint_certificates, m);
		d->previous = previous[i] ? pstrdup(previous[i]) : NULL;
		if (!wxpay_endpoint_request(&d->call, &d->req, &fail))
			d->error = fail.message;
		MemoryContextSwitchTo(old);
		all->n = ++n;
	}
}

/*
 * The worker's step: download the certificates of every merchant due, one
 * after the other outside any transaction, then record each outcome in a
 * subtransaction of its own.  Called between rounds: looks every
 * DOWNLOAD_CHECK_MS, and at once when a merchant's certificates were
 * wanted since.
 */
void
wxpay_v3_download_certificates(void)
{
	MemoryContext caller = CurrentMemoryContext;
	WxDownloads all;
	ErrorData  *edata;
	TimestampTz asked_at;

	(void) wxpay_merchant_marked(WX_MARK_CERTIFICATES_WANTED, NULL, NULL, 0, &asked_at);
	if (asked_at <= last_look &&
		!TimestampDifferenceExceeds(last_look, GetCurrentTimestamp(), DOWNLOAD_CHECK_MS))
	{
		look_skipped = true;
		return;
	}
	last_look = GetCurrentTimestamp();
	look_skipped = false;

	/*
	 * Everything here outlives the two transactions below, so its context
	 * hangs from TopMemoryContext, whatever the caller's is: a child of a
	 * transaction's context would go with the first commit (a commit
	 * resets TopTransactionContext and deletes its children).
	 */
	all.cxt = AllocSetContextCreate(TopMemoryContext, "wxpay certificates", ALLOCSET_SMALL_SIZES);
	all.downloads = MemoryContextAllocZero(all.cxt, sizeof(WxDownload) * 16);
	all.n = 0;

	/* A failure here costs the downloads, never the worker's rounds. */
	wxpay_txn_begin("wxpay: looking for platform certificates to download");
	if ((edata = wxpay_run_isolated(prepare_downloads, &all)) != NULL)
		ereport(WARNING,
				(errmsg("wxpay: could not prepare the platform certificate downloads: %s", edata->message)));
	wxpay_txn_commit();
	MemoryContextSwitchTo(all.cxt);
	for (int i = 0; i < all.n; i++)
	{
		pgstat_report_activity(STATE_RUNNING, "wxpay: downloading platform certificates");
		if (all.downloads[i].error == NULL)
			all.downloads[i].transport = wxpay_http_perform(&all.downloads[i].req, &all.downloads[i].resp,
															&all.downloads[i].message);
		CHECK_FOR_INTERRUPTS();
	}
	if (all.n > 0)
	{
		wxpay_txn_begin("wxpay: storing platform certificates");
		for (int i = 0; i < all.n; i++)
			if ((edata = wxpay_run_isolated(finish_download, &all.downloads[i])) != NULL)
				ereport(WARNING,
						(errmsg("wxpay: could not store the platform certificates of merchant %s: %s",
								all.downloads[i].call.merchant->mch_id, edata->message)));
		wxpay_txn_commit();
		/* An idle state keeps the last text: say the storing is over. */
		pgstat_report_activity(STATE_IDLE, "wxpay: platform certificates stored");
	}
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(all.cxt);
}

/*
 * How long the worker may sleep, at most max_ms, before a download is due
 * (a 24-hour refresh, or the end of a wanted merchant's 30 s) as of its
 * last look, or before it may look again (DOWNLOAD_CHECK_MS after the
 * last) when it was woken since without looking (a merchant added, a
 * setting changed).
 */
long
wxpay_v3_certificates_sleep_ms(long max_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake;

	if (next_download_at == 0 && !look_skipped)
		return max_ms;
	wake = TimestampTzPlusMilliseconds(last_look, DOWNLOAD_CHECK_MS);
	if (!look_skipped)
		wake = Max(next_download_at, wake);
	return (long) Min((int64) max_ms, Max((int64) 0, (wake - now + 999) / 1000));
}
