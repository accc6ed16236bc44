/*
 * txn.h
 *	  Transactions of background processes, and running a step in an
 *	  internal subtransaction so an error inside it costs only that step.
 */
#ifndef WXPAY_TXN_H
#define WXPAY_TXN_H

#include "postgres.h"

#include "utils/elog.h"

typedef void (*WxStep) (void *arg);

extern ErrorData *wxpay_run_isolated(WxStep step, void *arg);
extern ErrorData *wxpay_run_isolated_waiting(WxStep step, void *arg, int lock_timeout_ms);
extern void wxpay_txn_begin(const char *activity);
extern void wxpay_txn_commit(void);

#endif							/* WXPAY_TXN_H */
