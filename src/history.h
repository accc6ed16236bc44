/*
 * history.h
 *	  Who writes the history tables (history.c), and the change source
 *	  the extension's own code names around its writes (orders.c).
 */
#ifndef WXPAY_HISTORY_H
#define WXPAY_HISTORY_H

#include "postgres.h"

extern void wxpay_set_change_actor(Oid role);
extern const char *wxpay_change_source_name(void);
extern bool wxpay_change_is_restore_now(void);

#endif							/* WXPAY_HISTORY_H */
