/*
 * merchant_marks.h
 *	  Moments kept per merchant in shared memory (merchant_marks.c).
 */
#ifndef WXPAY_MERCHANT_MARKS_H
#define WXPAY_MERCHANT_MARKS_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef enum WxMarkKind
{
	WX_MARK_CERTIFICATES_WANTED = 0,	/* an unknown certificate serial was named */
	WX_MARK_APIV3_KEY_WARNED,	/* a wrong APIv3 key was reported in the log */
	WX_MARK_KINDS
} WxMarkKind;

extern void wxpay_merchant_marks_shmem_init(void);
extern bool wxpay_merchant_mark(const char *mch_id, WxMarkKind kind, int min_interval_ms);
extern int	wxpay_merchant_marked(WxMarkKind kind, char **mch_ids, TimestampTz *at, int max,
								  TimestampTz *latest);
extern int	wxpay_merchant_mark_slots(void);

#endif							/* WXPAY_MERCHANT_MARKS_H */
