/*
 * micropay.h
 *	  In-store payments (micropay.c): what the worker and the autonomous
 *	  steps call.
 */
#ifndef WXPAY_MICROPAY_H
#define WXPAY_MICROPAY_H

#include "wxpay.h"

extern void wxpay_micropay_schedule(const char *mch_id, const char *out_trade_no,
									const char *error, bool reversed);
extern void wxpay_micropay_release_leases(void);

#endif							/* WXPAY_MICROPAY_H */
