/*
 * wxpay.h
 *	  Declarations shared by the SQL-facing parts of pg_wxpay.
 *
 * The PostgreSQL-free core lives in wx_*.h; this header adds what the
 * glue needs: parameter lists in palloc'd memory, conversions to and from
 * jsonb, and the entry points each concern exports to the others.
 */
#ifndef WXPAY_H
#define WXPAY_H

#include "postgres.h"

#include "executor/spi.h"
#include "utils/jsonb.h"

#include "wx_sign.h"
#include "wx_xml.h"

/* A growable list of parameters; strings are palloc'd or borrowed. */
typedef struct WxParamList
{
	WxParam    *items;
	int			count;
	int			capacity;
} WxParamList;

/* sign.c */
extern void wxpay_list_init(WxParamList *list, int capacity);
extern void wxpay_list_add(WxParamList *list, const char *name,
						   const char *value, size_t value_len);
extern void wxpay_list_add_cstr(WxParamList *list, const char *name,
								const char *value);
extern const char *wxpay_list_get(const WxParamList *list, const char *name);
extern bool wxpay_list_is(const WxParamList *list, const char *name,
						  const char *expected);
extern void wxpay_list_from_jsonb(Jsonb *jb, WxParamList *list,
								  const char *argname);
extern Jsonb *wxpay_list_to_jsonb(const WxParamList *list);
extern WxSignType wxpay_sign_type_arg(const char *name, const char *argname);
extern void wxpay_check_key(const char *key, size_t len);
extern char *wxpay_sign_list(WxParamList *list, WxSignType type,
							 const char *key, size_t key_len);
extern bool wxpay_verify_list(WxParamList *list, WxSignType type,
							  const char *key, size_t key_len);
extern char *wxpay_make_nonce(int len);

/* xml.c */
extern char *wxpay_xml_from_list(const WxParamList *list, size_t *len);
extern WxXmlStatus wxpay_xml_parse(const char *body, size_t len,
								   WxParamList *list, char **root,
								   WxXmlError *err);
extern void wxpay_xml_report(WxXmlStatus status, const WxXmlError *err,
							 size_t len, const char *what);

#endif							/* WXPAY_H */

/* wxpay.c: settings */
extern int	wxpay_order_ttl;
extern char *wxpay_database;
extern int	wxpay_poll_interval;
extern int	wxpay_max_concurrency;

/* worker.c */
extern void wxpay_worker_register(void);

/* orders.c: who is writing to wxpay.orders */
extern void wxpay_set_change_source(const char *source);
extern void wxpay_orders_init(void);
extern SPIPlanPtr wxpay_saved_plan(SPIPlanPtr *slot, const char *sql, int nargs,
								   Oid *types);

/* api.c: merchants and verified calls */
typedef struct WxMerchant
{
	char	   *mch_id;
	char	   *appid;
	char	   *api_key;
	WxSignType	sign_type;
	char	   *notify_url;
	char	   *api_base;
	char	   *ca_pem;
	char	   *cert_pem;
	char	   *key_pem;
	bool		caller_allowed; /* the calling role may act for it */
} WxMerchant;

extern WxMerchant *wxpay_merchant_get(const char *mch_id);
extern WxMerchant *wxpay_merchant_find(const char *mch_id);
extern char *wxpay_judge_response(const WxMerchant *m, const char *path,
								  const char *body, size_t len,
								  WxParamList *resp);
extern WxParamList *wxpay_call(const WxMerchant *m, const char *path,
							   WxParamList *req, bool client_cert);
extern void wxpay_require_result(const WxParamList *resp, const char *path);
extern Jsonb *wxpay_spi_result(MemoryContext caller, const WxParamList *list);
extern void wxpay_check_pattern(const char *name, const char *value,
								const char *pattern, const char *hint);
extern void wxpay_require_args(FunctionCallInfo fcinfo, const char *const *names,
							   int nargs);
extern char *wxpay_request_body(const WxMerchant *m, WxParamList *req,
								size_t *len);

/* orders.c: applying verified reports to orders */
typedef enum WxApplyResult
{
	WX_APPLY_CHANGED,			/* the order moved to the reported state */
	WX_APPLY_UNCHANGED,			/* it was there already: a duplicate */
	WX_APPLY_REJECTED			/* the report cannot be applied; see reason */
} WxApplyResult;

extern WxApplyResult wxpay_apply_report(const char *mch_id,
										const char *out_trade_no,
										const char *trade_state,
										const WxParamList *fields,
										const char *source, char **reason);

/* notify.c: notification bodies, judged and recorded */
typedef struct NotifyOutcome
{
	const char *outcome;		/* accepted, duplicate, rejected */
	char	   *reason;
	char	   *mch_id;
	char	   *out_trade_no;
	char	   *out_refund_no;
	char	   *transaction_id;
} NotifyOutcome;

typedef void (*NotifyJudge) (const char *body, size_t len, NotifyOutcome *out);

extern void wxpay_notify_reject(NotifyOutcome *out, char *reason);
extern WxMerchant *wxpay_notify_sender(const char *body, size_t len,
									   WxParamList *fields, NotifyOutcome *out);
extern void wxpay_notify_applied(NotifyOutcome *out, WxApplyResult result,
								 char *reason);
extern Datum wxpay_handle_notification(FunctionCallInfo fcinfo, const char *kind,
									   NotifyJudge judge);

/* refund.c: applying refund reports */
typedef struct WxRefundReport
{
	const char *out_refund_no;
	const char *out_trade_no;	/* checked against the refund when given */
	const char *refund_fee;		/* likewise */
	const char *refund_id;
	const char *status;			/* SUCCESS, CHANGE, REFUNDCLOSE, PROCESSING */
	const char *success_time;	/* yyyy-MM-dd HH:mm:ss, GMT+8 */
	const char *recv_accout;
	const char *account;
} WxRefundReport;

extern WxApplyResult wxpay_apply_refund_report(const char *mch_id,
											   const WxRefundReport *r,
											   const char *source, char **reason);
extern bool wxpay_refundquery_report(const WxParamList *resp,
									 const char *out_refund_no,
									 WxRefundReport *r);
