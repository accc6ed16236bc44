/*
 * bill.h
 *	  Daily bills: importing a downloaded file into wxpay.bills and its
 *	  rows (bill_store.c), the download endpoints (bill.c), and the
 *	  worker's daily fetch (bill_worker.c).
 */
#ifndef WXPAY_BILL_H
#define WXPAY_BILL_H

#include "postgres.h"

#include "utils/date.h"

#include "remote_error.h"
#include "wx_bill.h"

/* Why a file was refused. */
typedef enum WxBillRefusal
{
	WX_BILL_ACCEPTED,
	WX_BILL_MALFORMED,			/* not a bill that reads and adds up */
	WX_BILL_OTHER_DAY,			/* a bill of (also) another day */
	WX_BILL_WRONG_TYPE			/* a trade bill of another bill_type */
} WxBillRefusal;

/* What an import did. */
typedef struct WxBillImport
{
	int64		bill_id;
	int32		version;
	const char *outcome;		/* imported, unchanged, new_version, no_bill */
	int64		rows;			/* of the version stored (unchanged: the one there) */
	int64		byte_size;
	char		sha1[41];
	WxBillRefusal refusal;		/* when wxpay_bill_store refused the file: */
	const char *reason;			/* what is wrong ("its rows are of ...") */
	const char *detail;			/* NULL, or more about it */
} WxBillImport;

/*
 * Import body (text or gzip) as the bill of (mch_id, bill_date yyyyMMdd,
 * type): stored whole, parsed into rows, the summary checked, every row of
 * that (Beijing) day; sha1, when not NULL, is the SHA-1 the decompressed
 * text must have (v3's hash_value).  False when the bill is refused, nothing stored:
 * out says why (for an import's own error), fail is the download's
 * failure (WX007).  SPI must be connected.
 */
extern bool wxpay_bill_store(const char *mch_id, WxBillKind kind,
							  const char *bill_date, const char *bill_type,
							  const char *body, size_t len, const char *sha1,
							  WxBillImport *out, WxFailure *fail);

/*
 * The one rule for which days have a bill (downloads v2 and v3, imports,
 * backfill): a day is refused (22023) until it is over in Beijing time,
 * since a bill of a day not over yet is partial, and when downloadable
 * also when older than the three months WeChat Pay keeps.  Returns the
 * day as yyyyMMdd (palloc'd).  Needs no SPI.
 */
extern char *wxpay_bill_check_date(DateADT day, bool downloadable);

/* Record that WeChat Pay has no bill for that day (No Bill Exist). */
extern void wxpay_bill_record_none(const char *mch_id, WxBillKind kind,
								   const char *bill_date, const char *bill_type,
								   WxBillImport *out);

/* bill_v3.c: the v3 parts of downloadbill and downloadfundflow */
struct WxEndpointV3;
extern const struct WxEndpointV3 wx_v3_tradebill;
extern const struct WxEndpointV3 wx_v3_fundflowbill;

/* bill_worker.c: the worker's daily bills, and their settings */
extern char *wxpay_bill_fetch_after;
extern int	wxpay_bill_retry_interval;
extern void wxpay_bill_round(void);
extern long wxpay_bill_next_due_ms(long max_ms);

#endif							/* WXPAY_BILL_H */
