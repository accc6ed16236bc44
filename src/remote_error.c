/*
 * remote_error.c
 *	  The remote-error contract: failures of calls to WeChat Pay, the class
 *	  of each err_code, and raising them with a stable SQLSTATE.
 *
 * SQL callers branch on the SQLSTATE (class WX) and read WeChat's own
 * err_code from the DETAIL, which always starts "err_code: CODE" for a
 * refusal.  The worker records the message and backs off instead.  A
 * refund is closed only after a refusal that certainly left nothing
 * behind (wxpay_failure_not_done).  The
 * err_code classes come from the v2 API reference (§3, error tables) and
 * for API v3's codes from wxpay-v3-api.md §6.6 (v3's 5xx and 429 answers
 * never get here: proto_v3.c reports them as outcomes unknown).
 */
#include "postgres.h"

#include "remote_error.h"

/*
 * What a refusal says about the request (wxpay-v3-api.md §6.6, the v2
 * error tables): whether WeChat Pay certainly did not act on it and never
 * will, so that what it would have created (a refund) may be closed here;
 * or whether the same request, with the same out_refund_no, must be sent
 * again: at once or after a back-off (the outcome is unknown or the
 * refusal temporary), or once the cause is fixed (a signature WeChat Pay
 * could not check, a balance too low for a v3 refund).
 */
typedef enum WxRetrySafety
{
	WX_NOT_DONE,				/* refused for good: nothing was or will be done */
	WX_SEND_AGAIN,				/* outcome unknown or temporary: the same request */
	WX_SEND_AGAIN_WHEN_FIXED	/* nothing done yet: the same request, after a fix */
} WxRetrySafety;

/*
 * err_codes whose SQLSTATE is not the generic "refused", or whose retry
 * safety is not "not done": the one table of WeChat Pay's codes.  A v2
 * code not listed is WX_NOT_DONE (result_code FAIL: the business request
 * failed); a v3 code not listed is not known to leave nothing behind, and
 * counts as WX_SEND_AGAIN_WHEN_FIXED (proto_v3.c reports v3's 5xx and 429
 * as outcomes unknown before any code is read).
 */
static const struct
{
	const char *err_code;
	int			sqlstate;
	WxRetrySafety safety;
}			err_code_classes[] = {
	/* API v2.  Temporary, or the outcome is unknown: retry identically. */
	{"SYSTEMERROR", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"BIZERR_NEED_RETRY", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"BANKERROR", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"ORDER_NOT_READY", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"FREQUENCY_LIMITED", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"INVALID_REQ_TOO_MUCH", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"BILL_CREATING", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN}, /* the day's bill is not ready yet */
	{"ORDERPAID", ERRCODE_WXPAY_ORDER_PAID, WX_NOT_DONE},
	{"ORDERCLOSED", ERRCODE_WXPAY_ORDER_CLOSED, WX_NOT_DONE},
	{"ORDERREVERSED", ERRCODE_WXPAY_ORDER_CLOSED, WX_NOT_DONE},
	{"NOTENOUGH", ERRCODE_WXPAY_NOT_ENOUGH, WX_NOT_DONE},	/* v2: the refund failed */
	{"ORDERNOTEXIST", ERRCODE_WXPAY_NOT_FOUND, WX_NOT_DONE},
	{"REFUNDNOTEXIST", ERRCODE_WXPAY_NOT_FOUND, WX_NOT_DONE},
	{"USERPAYING", ERRCODE_WXPAY_USER_PAYING, WX_SEND_AGAIN},
	/* API v3 (§6.6) */
	{"SYSTEM_ERROR", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"SERVICE_UNAVAILABLE", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"RATELIMIT_EXCEEDED", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},
	{"STATEMENT_CREATING", ERRCODE_WXPAY_RETRY, WX_SEND_AGAIN},	/* v3's Bill Creating */
	{"SIGN_ERROR", ERRCODE_WXPAY_REFUSED, WX_SEND_AGAIN_WHEN_FIXED},
	{"NOT_ENOUGH", ERRCODE_WXPAY_NOT_ENOUGH, WX_SEND_AGAIN_WHEN_FIXED},	/* the same out_refund_no after funding */
	{"USER_PAYING", ERRCODE_WXPAY_USER_PAYING, WX_SEND_AGAIN},	/* query, then decide */
	{"ORDER_PAID", ERRCODE_WXPAY_ORDER_PAID, WX_NOT_DONE},
	{"ORDER_CLOSED", ERRCODE_WXPAY_ORDER_CLOSED, WX_NOT_DONE},
	{"ORDER_NOT_EXIST", ERRCODE_WXPAY_NOT_FOUND, WX_NOT_DONE},
	{"RESOURCE_NOT_EXISTS", ERRCODE_WXPAY_NOT_FOUND, WX_NOT_DONE},
	{"PARAM_ERROR", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"INVALID_REQUEST", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"APPID_MCHID_NOT_MATCH", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"MCH_NOT_EXISTS", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"NO_AUTH", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"OUT_TRADE_NO_USED", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"USER_ACCOUNT_ABNORMAL", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"RULE_LIMIT", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"TRADE_ERROR", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
	{"ACCOUNT_ERROR", ERRCODE_WXPAY_REFUSED, WX_NOT_DONE},
};

/* The table's row for a refusal's err_code, or -1. */
static int
err_code_class(const WxFailure *fail)
{
	for (size_t i = 0; fail->err_code && i < lengthof(err_code_classes); i++)
		if (strcmp(err_code_classes[i].err_code, fail->err_code) == 0)
			return (int) i;
	return -1;
}

/* Fill fail; returns false, so a reader can "return wxpay_fail(...)". */
bool
wxpay_fail(WxFailure *fail, WxFailureKind kind, char *message)
{
	memset(fail, 0, sizeof(*fail));
	fail->kind = kind;
	fail->message = message;
	return false;
}

/* A verified refusal (result_code FAIL) of endpoint, with its err_code. */
bool
wxpay_fail_remote(WxFailure *fail, const char *endpoint, const char *err_code,
				  const char *err_code_des)
{
	wxpay_fail(fail, WX_FAIL_REMOTE,
			   psprintf("WeChat Pay refused %s: %s", endpoint, err_code ? err_code : "result_code FAIL"));
	fail->err_code = err_code;
	fail->err_code_des = err_code_des;
	return false;
}

/* A copy of fail whose strings live in cxt (to outlive a transaction). */
void
wxpay_failure_copy(WxFailure *dst, const WxFailure *src, MemoryContext cxt)
{
	*dst = *src;
	dst->message = src->message ? MemoryContextStrdup(cxt, src->message) : NULL;
	dst->err_code = src->err_code ? MemoryContextStrdup(cxt, src->err_code) : NULL;
	dst->err_code_des = src->err_code_des ? MemoryContextStrdup(cxt, src->err_code_des) : NULL;
	dst->hint = src->hint ? MemoryContextStrdup(cxt, src->hint) : NULL;
}

/*
 * What went wrong, as stored in last_error: the message and WeChat's
 * description; a fresh copy in the current memory context.
 */
char *
wxpay_failure_text(const WxFailure *fail)
{
	if (fail->err_code_des != NULL)
		return psprintf("%s (%s)", fail->message, fail->err_code_des);
	return pstrdup(fail->message);
}

/* The SQLSTATE a failure reaches SQL callers with. */
int
wxpay_failure_sqlstate(const WxFailure *fail)
{
	switch (fail->kind)
	{
		case WX_FAIL_TRANSPORT:
			return ERRCODE_WXPAY_RETRY;
		case WX_FAIL_UNTRUSTED:
			return ERRCODE_WXPAY_UNTRUSTED;
		case WX_FAIL_MISMATCH:
			return ERRCODE_WXPAY_MISMATCH;
		case WX_FAIL_LOCAL:
			return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		case WX_FAIL_REMOTE:
			return err_code_class(fail) >= 0 ? err_code_classes[err_code_class(fail)].sqlstate :
				ERRCODE_WXPAY_REFUSED;
		case WX_FAIL_NONE:
			break;
	}
	return ERRCODE_INTERNAL_ERROR;
}

/* Whether the same request may simply be sent again later. */
bool
wxpay_failure_retryable(const WxFailure *fail)
{
	return wxpay_failure_sqlstate(fail) == ERRCODE_WXPAY_RETRY;
}

/*
 * Whether WeChat Pay certainly did not act on the request and never will
 * (a refusal WX_NOT_DONE): only then may a refund it was to make be closed.
 * Anything else (no answer, an answer we cannot trust, an outcome unknown,
 * a refusal to be sent again) leaves the refund for the same request.
 */
bool
wxpay_failure_not_done(const WxFailure *fail, bool v3)
{
	int			row;

	if (fail->kind != WX_FAIL_REMOTE)
		return false;
	row = err_code_class(fail);
	if (row < 0)
		return !v3;
	return err_code_classes[row].safety == WX_NOT_DONE;
}

/* The hint a failure is raised with: its own, or the retry advice. */
static const char *
failure_hint(const WxFailure *fail)
{
	int			row = fail->kind == WX_FAIL_REMOTE ? err_code_class(fail) : -1;

	if (fail->hint != NULL)
		return fail->hint;
	if (wxpay_failure_retryable(fail))
		return "The outcome is unknown or temporary: retry with identical parameters.";
	if (row >= 0 && err_code_classes[row].safety == WX_SEND_AGAIN_WHEN_FIXED)
		return "WeChat Pay did not act on the request: fix the cause, then retry with identical parameters (a refund with the same out_refund_no).";
	return NULL;
}

/* Raise a failure of a call to endpoint for merchant mch_id. */
void
wxpay_raise_failure(const WxFailure *fail, const char *mch_id, const char *endpoint)
{
	const char *hint = failure_hint(fail);

	if (fail->kind == WX_FAIL_REMOTE)
		ereport(ERROR,
				(errcode(wxpay_failure_sqlstate(fail)),
				 errmsg("%s", fail->message),
				 errdetail("err_code: %s, err_code_des: %s",
						   fail->err_code ? fail->err_code : "(none)",
						   fail->err_code_des ? fail->err_code_des : "(none)"),
				 hint ? errhint("%s", hint) : 0));
	ereport(ERROR,
			(errcode(wxpay_failure_sqlstate(fail)),
			 errmsg("%s", fail->message),
			 errdetail("Merchant %s, endpoint %s.", mch_id, endpoint),
			 hint ? errhint("%s", hint) : 0));
}
