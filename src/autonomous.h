/*
 * autonomous.h
 *	  Steps run in a dynamic background worker, committing on their own
 *	  (autonomous.c), and the steps there are (refund.c, micropay.c).
 */
#ifndef WXPAY_AUTONOMOUS_H
#define WXPAY_AUTONOMOUS_H

#include "wxpay.h"

#include "http.h"

extern Jsonb *wxpay_run_autonomous(const char *step, Jsonb *args, Oid owner);
extern Jsonb *wxpay_autonomous_step(const char *step, Jsonb *args, MemoryContext cxt);
extern WxHttpFailure wxpay_step_exchange(const WxHttpRequest *req, WxHttpResponse *resp,
										 char **message, MemoryContext cxt,
										 const char *activity);
extern void wxpay_step_commit(MemoryContext cxt);

/* refund.c */
extern Jsonb *wxpay_refund_step(Jsonb *args, MemoryContext cxt);

/* micropay.c */
extern Jsonb *wxpay_micropay_step(Jsonb *args, MemoryContext cxt);
extern Jsonb *wxpay_reverse_step(Jsonb *args, MemoryContext cxt);

#endif							/* WXPAY_AUTONOMOUS_H */
