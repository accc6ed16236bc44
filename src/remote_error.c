/*
 * remote_error.c
 *	  The remote-error contract: failures of calls to WeChat Pay, the class
 *	  of each err_code, and raising them with a stable SQLSTATE.
 *
 * SQL callers branch on the SQLSTATE (class WX) and read WeChat's own
 * err_code from the DETAIL, which always starts "err_code: CODE" for a
 * refusal.  The worker records the message and backs off instead.  The
 * err_code classes come from the v2 API reference (§3, error tables) and
 * for API v3's codes from wxpay-v3-api.md §6.6 (v3's 5xx and 429 answers
 * never get here: proto_v3.c reports them as outcomes unknown).
 */
#include "postgres.h"

#include "remote_error.h"

/* err_codes whose SQLSTATE is not the generic "refused". */
static const struct
{
	const char *err_code;
	int			sqlstate;
}			err_code_classes[] = {
	/* Temporary, or the outcome is unknown: retry with identical parameters. */
	{"SYSTEMERROR", ERRCODE_WXPAY_RETRY},
	{"BIZERR_NEED_RETRY", ERRCODE_WXPAY_RETRY},
	{"BANKERROR", ERRCODE_WXPAY_RETRY},
	{"ORDER_NOT_READY", ERRCODE_WXPAY_RETRY},
	{"FREQUENCY_LIMITED", ERRCODE_WXPAY_RETRY},
	{"INVALID_REQ_TOO_MUCH", ERRCODE_WXPAY_RETRY},
	{"BILL_CREATING", ERRCODE_WXPAY_RETRY}, /* the day's bill is not ready yet */
	{"ORDERPAID", ERRCODE_WXPAY_ORDER_PAID},
	{"ORDERCLOSED", ERRCODE_WXPAY_ORDER_CLOSED},
	{"ORDERREVERSED", ERRCODE_WXPAY_ORDER_CLOSED},
	{"NOTENOUGH", ERRCODE_WXPAY_NOT_ENOUGH},
	{"ORDERNOTEXIST", ERRCODE_WXPAY_NOT_FOUND},
	{"REFUNDNOTEXIST", ERRCODE_WXPAY_NOT_FOUND},
	{"USERPAYING", ERRCODE_WXPAY_USER_PAYING},
	/* API v3 */
	{"SYSTEM_ERROR", ERRCODE_WXPAY_RETRY},
	{"SERVICE_UNAVAILABLE", ERRCODE_WXPAY_RETRY},
	{"RATELIMIT_EXCEEDED", ERRCODE_WXPAY_RETRY},
	{"ORDER_PAID", ERRCODE_WXPAY_ORDER_PAID},
	{"ORDER_CLOSED", ERRCODE_WXPAY_ORDER_CLOSED},
	{"NOT_ENOUGH", ERRCODE_WXPAY_NOT_ENOUGH},
	{"ORDER_NOT_EXIST", ERRCODE_WXPAY_NOT_FOUND},
	{"RESOURCE_NOT_EXISTS", ERRCODE_WXPAY_NOT_FOUND},
	{"USER_PAYING", ERRCODE_WXPAY_USER_PAYING},
	{"STATEMENT_CREATING", ERRCODE_WXPAY_RETRY},	/* v3's Bill Creating */
};

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
			for (size_t i = 0; fail->err_code && i < lengthof(err_code_classes); i++)
				if (strcmp(err_code_classes[i].err_code, fail->err_code) == 0)
					return err_code_classes[i].sqlstate;
			return ERRCODE_WXPAY_REFUSED;
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

/* The hint a failure is raised with: its own, or the retry advice. */
static const char *
failure_hint(const WxFailure *fail)
{
	if (fail->hint != NULL)
		return fail->hint;
	if (wxpay_failure_retryable(fail))
		return "The outcome is unknown or temporary: retry with identical parameters.";
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
