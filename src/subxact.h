/*
 * subxact.h
 *	  Running a step in an internal subtransaction, so an error inside it
 *	  costs only that step.
 */
#ifndef WXPAY_SUBXACT_H
#define WXPAY_SUBXACT_H

#include "postgres.h"

#include "utils/elog.h"

typedef void (*WxStep) (void *arg);

extern ErrorData *wxpay_run_isolated(WxStep step, void *arg);

#endif							/* WXPAY_SUBXACT_H */
