/*
 * orders.h
 *	  Writing to wxpay.orders (orders.c): everything but applying payment
 *	  reports, which endpoint.h declares with the reports themselves.
 */
#ifndef WXPAY_ORDERS_H
#define WXPAY_ORDERS_H

#include "endpoint.h"

/* A validated new order, before anything is sent. */
typedef struct WxNewOrder
{
	const char *mch_id;
	const char *out_trade_no;
	const char *trade_type;
	const char *body;
	int32		total_fee;
	const char *client_ip;
	const char *attach;			/* or NULL, likewise below */
	const char *openid;
	const char *product_id;
	Jsonb	   *params;			/* the optional fields as sent */
	const char *time_expire;	/* yyyyMMddHHmmss GMT+8; NULL: wxpay.order_ttl */
	const char *source;			/* the change source: unifiedorder, micropay */
} WxNewOrder;

extern char *wxpay_order_record(const WxNewOrder *o);
extern void wxpay_order_store_prepay(const char *mch_id, const WxPaymentReport *r);
extern void wxpay_order_mark_refunded(const char *mch_id, const char *out_trade_no);

/* anomalies.c: a verified report contradicting a paid order */
extern char *wxpay_payment_anomaly(const char *mch_id, const WxPaymentReport *r,
								   const char *order_fee);

#endif							/* WXPAY_ORDERS_H */
