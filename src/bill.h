/*
 * bill.h
 *	  Daily bills: importing a downloaded file into wxpay.bills and its
 *	  rows (bill_store.c), the download endpoints (bill.c), and the
 *	  worker's daily fetch (bill_worker.c).
 */
#ifndef WXPAY_BILL_H
#define WXPAY_BILL_H

#include "postgres.h"

#include "remote_error.h"
#include "wx_bill.h"

/* What an import did. */
typedef struct WxBillImport
{
	int64		bill_id;
	int32		version;
	const char *outcome;		/* imported, unchanged, new_version, no_bill */
	int64		rows;
	int64		byte_size;
	char		sha1[41];
} WxBillImport;

/*
 * Import body (text or gzip) as the bill of (mch_id, day, type): stored
 * whole, parsed into rows, the summary checked; sha1, when not NULL, is
 * the SHA-1 the decompressed text must have (v3's hash_value).  False
 * with fail when the bill is refused; nothing is stored then.  SPI must
 * be connected.
 */
extern bool wxpay_bill_store(const char *mch_id, WxBillKind kind,
							  const char *bill_date, const char *bill_type,
							  const char *body, size_t len, const char *sha1,
							  WxBillImport *out, WxFailure *fail);

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

#endif							/* WXPAY_BILL_H */
