/*
 * states.h
 *	  The order and refund state vocabulary as the C code uses it.
 *
 * The SQL functions wxpay.order_state_pending() and friends (the upgrade
 * script to 1.1) are the definition; these lists must equal them, which
 * the regression test checks through wxpay.state_vocabulary().
 */
#ifndef WXPAY_STATES_H
#define WXPAY_STATES_H

#include "postgres.h"

#include "lib/stringinfo.h"

extern bool wx_order_state_valid(const char *state);
extern bool wx_order_state_pending(const char *state);
extern bool wx_order_state_paid(const char *state);
extern bool wx_refund_state_valid(const char *state);
extern bool wx_refund_state_final(const char *state);
extern const char *const *wx_order_moves(const char *state);
extern const char *const *wx_refund_moves(const char *state);
extern void wx_states_json(StringInfo buf, const char *const *list);

#endif							/* WXPAY_STATES_H */
