/*
 * refund.h
 *	  What refund.c shares with refund_notify.c.
 */
#ifndef WXPAY_REFUND_H
#define WXPAY_REFUND_H

#include "endpoint.h"

extern char *wxpay_lock_matching_refund(const char *mch_id, const WxRefundReport *r,
										char **reason);

#endif							/* WXPAY_REFUND_H */
