/*
 * args.h
 *	  Validation of SQL arguments: required arguments, patterns, text that
 *	  WeChat Pay v2 can carry, and the optional fields of a call's extra.
 */
#ifndef WXPAY_ARGS_H
#define WXPAY_ARGS_H

#include "wxpay.h"

#include "fmgr.h"

/* What WeChat Pay accepts as a merchant's order and refund numbers. */
#define WX_OUT_TRADE_NO_PATTERN "^[0-9A-Za-z_|*@-]{1,32}$"
#define WX_OUT_REFUND_NO_PATTERN "^[0-9A-Za-z_|*@-]{1,64}$"
/* The trade types of wxpay_unifiedorder; micropay orders are MICROPAY. */
#define WX_UNIFIEDORDER_TRADE_TYPES "^(APP|JSAPI|NATIVE|MWEB)$"
/* The longest body (the order's description), in bytes. */
#define WX_BODY_MAX_BYTES 128

/* One optional field a call's extra may carry. */
typedef struct WxOptionalField
{
	const char *name;
	int			max_bytes;
	const char *pattern;		/* a POSIX regex the value must match, or NULL */
	const char *hint;			/* shown when it does not */
	bool		json_ok;		/* may be given as a JSON object */
} WxOptionalField;

extern void wxpay_require_args(FunctionCallInfo fcinfo, const char *const *names,
							   int nargs);
extern bool wxpay_matches(const char *value, const char *pattern);
extern void wxpay_check_ip(const char *ip);
extern void wxpay_check_pattern(const char *name, const char *value,
								const char *pattern, const char *hint);
extern void wxpay_check_text_value(const char *name, const char *value, size_t len,
								   int max_bytes);
extern void wxpay_extra_to_list(Jsonb *extra, const WxOptionalField *spec, int nspec,
								WxParamList *out);

#endif							/* WXPAY_ARGS_H */
