/*
 * notify.h
 *	  The judge-and-record machinery shared by payment and refund
 *	  notifications (notify.c, refund_notify.c).
 */
#ifndef WXPAY_NOTIFY_H
#define WXPAY_NOTIFY_H

#include "endpoint.h"

/*
 * A notification as received: its body and, for API v3, the merchant its
 * notify URL names and the signature headers (the only ones recorded).
 */
typedef struct WxNotice
{
	text	   *raw;			/* the body, as recorded */
	const char *body;			/* its bytes */
	size_t		len;
	const char *mch_id;			/* v3; NULL for v2 */
	WxParamList headers;		/* v3: Wechatpay-* and Request-ID, canonical names */
	Jsonb	   *headers_jsonb;	/* the same, as recorded; NULL for v2 */
} WxNotice;

/* What became of a notification body, as wxpay.notifications records it. */
typedef struct WxNotifyOutcome
{
	const char *kind;			/* pay, refund: a constant; NULL: the handler's */
	const char *outcome;		/* accepted, duplicate, anomaly, rejected */
	char	   *reason;
	char	   *mch_id;
	char	   *out_trade_no;
	char	   *out_refund_no;
	char	   *transaction_id;
	bool		verified;		/* authentic: signed (payments, v3) or decrypted (v2 refunds) */
	bool		failed;			/* the judge raised: a temporary failure, try again */
	Jsonb	   *resource;		/* v3: the decrypted resource of a verified body */
} WxNotifyOutcome;

typedef void (*WxNotifyJudge) (const WxNotice *notice, WxNotifyOutcome *out);

extern void wxpay_notify_reject(WxNotifyOutcome *out, char *reason);
extern WxMerchant *wxpay_notify_sender(const char *body, size_t len,
									   WxParamList *fields, WxNotifyOutcome *out);
extern void wxpay_notify_applied(WxNotifyOutcome *out, WxApplyResult result,
								 char *reason);
extern void wxpay_notification_judge_and_record(const char *kind, const WxNotice *notice,
												 WxNotifyJudge judge, bool schema_1_0,
												 WxNotifyOutcome *out);
extern Datum wxpay_handle_notification(FunctionCallInfo fcinfo, const char *kind,
									   WxNotifyJudge judge, bool schema_1_0);

#endif							/* WXPAY_NOTIFY_H */
