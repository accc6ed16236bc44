/*
 * remote_error.h
 *	  The remote-error contract: why a call to WeChat Pay did not give a
 *	  usable answer, and the stable SQLSTATE each reason reaches SQL
 *	  callers with (README, "Errors from WeChat Pay").
 */
#ifndef WXPAY_REMOTE_ERROR_H
#define WXPAY_REMOTE_ERROR_H

#include "postgres.h"

#include "utils/elog.h"

/* SQLSTATE class WX: errors from WeChat Pay, by what the caller can do. */
#define ERRCODE_WXPAY_REFUSED		MAKE_SQLSTATE('W','X','0','0','0')
#define ERRCODE_WXPAY_RETRY			MAKE_SQLSTATE('W','X','0','0','1')
#define ERRCODE_WXPAY_ORDER_PAID	MAKE_SQLSTATE('W','X','0','0','2')
#define ERRCODE_WXPAY_ORDER_CLOSED	MAKE_SQLSTATE('W','X','0','0','3')
#define ERRCODE_WXPAY_NOT_ENOUGH	MAKE_SQLSTATE('W','X','0','0','4')
#define ERRCODE_WXPAY_NOT_FOUND		MAKE_SQLSTATE('W','X','0','0','5')
#define ERRCODE_WXPAY_USER_PAYING	MAKE_SQLSTATE('W','X','0','0','6')
#define ERRCODE_WXPAY_UNTRUSTED		MAKE_SQLSTATE('W','X','0','0','7')
#define ERRCODE_WXPAY_MISMATCH		MAKE_SQLSTATE('W','X','0','0','8')

/* Why a call gave no usable answer. */
typedef enum WxFailureKind
{
	WX_FAIL_NONE = 0,
	WX_FAIL_TRANSPORT,			/* no answer: network, timeout, HTTP status, size */
	WX_FAIL_UNTRUSTED,			/* an answer (or a peer) that cannot be trusted */
	WX_FAIL_REMOTE,				/* a verified refusal, with WeChat's err_code */
	WX_FAIL_MISMATCH,			/* a verified answer that does not fit the request
								 * or the local records */
	WX_FAIL_LOCAL				/* the request cannot be made: local configuration */
} WxFailureKind;

typedef struct WxFailure
{
	WxFailureKind kind;
	const char *err_code;		/* WX_FAIL_REMOTE: WeChat's err_code */
	const char *err_code_des;	/* and its description, if any */
	char	   *message;		/* what went wrong, for messages and last_error */
	const char *hint;			/* what to do about it, or NULL */
} WxFailure;

extern bool wxpay_fail(WxFailure *fail, WxFailureKind kind, char *message);
extern bool wxpay_fail_remote(WxFailure *fail, const char *endpoint,
							  const char *err_code, const char *err_code_des);
extern void wxpay_failure_copy(WxFailure *dst, const WxFailure *src, MemoryContext cxt);
extern char *wxpay_failure_text(const WxFailure *fail);
extern int	wxpay_failure_sqlstate(const WxFailure *fail);
extern bool wxpay_failure_retryable(const WxFailure *fail);
extern bool wxpay_failure_not_done(const WxFailure *fail, bool v3);
extern void wxpay_raise_failure(const WxFailure *fail, const char *mch_id,
								const char *endpoint) pg_attribute_noreturn();

#endif							/* WXPAY_REMOTE_ERROR_H */
