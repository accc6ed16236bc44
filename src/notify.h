/*
 * notify.h
 *	  The judge-and-record machinery shared by payment and refund
 *	  notifications (notify.c, refund_notify.c).
 */
#ifndef WXPAY_NOTIFY_H
#define WXPAY_NOTIFY_H

#include "endpoint.h"

/* What became of a notification body, as wxpay.notifications records it. */
typedef struct WxNotifyOutcome
{
	const char *outcome;		/* accepted, duplicate, rejected */
	char	   *reason;
	char	   *mch_id;
	char	   *out_trade_no;
	char	   *out_refund_no;
	char	   *transaction_id;
	bool		verified;		/* authentic: signed (payments) or decrypted (refunds) */
} WxNotifyOutcome;

typedef void (*WxNotifyJudge) (const char *body, size_t len, WxNotifyOutcome *out);

extern void wxpay_notify_reject(WxNotifyOutcome *out, char *reason);
extern WxMerchant *wxpay_notify_sender(const char *body, size_t len,
									   WxParamList *fields, WxNotifyOutcome *out);
extern void wxpay_notify_applied(WxNotifyOutcome *out, WxApplyResult result,
								 char *reason);
extern Datum wxpay_handle_notification(FunctionCallInfo fcinfo, const char *kind,
									   WxNotifyJudge judge, bool schema_1_0);

#endif							/* WXPAY_NOTIFY_H */
