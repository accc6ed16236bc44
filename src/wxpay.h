/*
 * wxpay.h
 *	  Declarations shared by the SQL-facing parts of pg_wxpay.
 *
 * The PostgreSQL-free core lives in wx_*.h; this header adds what the
 * glue needs: parameter lists in palloc'd memory (params.c), conversions to and from
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

/* params.c and sign.c */
extern void wxpay_list_init(WxParamList *list, int capacity);
extern void wxpay_list_add(WxParamList *list, const char *name,
						   const char *value, size_t value_len);
extern void wxpay_list_add_name(WxParamList *list, const char *name,
								size_t name_len, const char *value,
								size_t value_len);
extern void wxpay_list_add_cstr(WxParamList *list, const char *name,
								const char *value);
extern void wxpay_list_append(WxParamList *list, const WxParamList *src);
extern const char *wxpay_list_get(const WxParamList *list, const char *name);
extern bool wxpay_list_is(const WxParamList *list, const char *name,
						  const char *expected);
extern void wxpay_list_from_jsonb(Jsonb *jb, WxParamList *list,
								  const char *argname);
extern void wxpay_list_borrow_jsonb(Jsonb *jb, WxParamList *list,
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

/* wxpay.c: settings */
extern int	wxpay_order_ttl;
extern char *wxpay_database;
extern int	wxpay_poll_interval;
extern int	wxpay_max_concurrency;
extern int	wxpay_lock_timeout;
extern int	wxpay_micropay_interval;
extern int	wxpay_micropay_window;

/* shmem.c: the extension's shared memory parts */
extern void wxpay_shmem_add(const char *name, Size (*size) (void),
							void (*init) (void *part), void **where);

/* worker.c, worker_start.c */
extern void wxpay_worker_register(void);
extern void wxpay_worker_shmem_init(void);
extern void wxpay_worker_connect(void);
extern void wxpay_worker_leave_if_asked(void);
extern struct Latch *wxpay_worker_latch(void);
extern void wxpay_wake_worker(void);
extern void wxpay_wake_worker_to_publish(void);
extern uint64 wxpay_worker_wakes(void);
extern void wxpay_count_paid_commit(void);
extern uint64 wxpay_paid_commits(void);

/* orders.c: who is writing to wxpay.orders and wxpay.refunds */
extern void wxpay_set_change_source(const char *source);
extern void wxpay_orders_init(void);

/* wake.c: what commits wake */
extern void wxpay_wake_worker_at_commit(void);
extern void wxpay_paid_event_at_commit(void);
extern void wxpay_wake_at_end_of_transaction(void);

/* paid_events.c */
extern bool wxpay_publish_paid_events(void);
extern bool wxpay_paid_events_waiting(void);
extern const char *const wxpay_paid_events_publish_sql;
extern const char *const wxpay_paid_events_left_behind_sql;

/* order_wait.c: backends waiting for an order to settle */
extern void wxpay_order_wait_shmem_init(void);
extern void wxpay_order_waiters_wake_at_commit(const char *mch_id,
												const char *out_trade_no);
extern void wxpay_order_waiters_wake_committed(void);
extern void wxpay_order_waiters_forget(void);

/* merchant.c */
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
	bool		v3;				/* protocol v3 (1.1 schema) */
	char	   *apiv3_key;		/* wxpay.merchant_v3, or NULL */
	char	   *serial_no;
} WxMerchant;

extern WxMerchant *wxpay_merchant_get(const char *mch_id, MemoryContext cxt);
extern WxMerchant *wxpay_merchant_find(const char *mch_id, MemoryContext cxt);

#endif							/* WXPAY_H */
