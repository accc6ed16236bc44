/*
 * endpoint.h
 *	  The endpoint layer: each WeChat Pay endpoint described once, and the
 *	  one pipeline that both the SQL functions and the worker run it through.
 *
 * A call goes: request (common fields, signature, headers, trust) ->
 * transfer (a backend's handle, or the worker's multi handle) -> judge
 * (transport, authenticity: the protocol's business) -> read (what the
 * verified answer means, as a normalised report) -> apply (the report to
 * wxpay.orders or wxpay.refunds).  No step raises for anything WeChat Pay
 * or the network does: each returns false with a WxFailure, which SQL
 * functions raise (remote_error.c) and the worker records.
 *
 * Adding an endpoint: one WxEndpoint (its protocol, path, certificate
 * need, build, read and apply), usually in the file of its SQL function,
 * plus that function's SQL.  A second protocol (API v3: JSON, RSA-signed
 * headers, other methods) adds a WxProtocol and its own descriptors;
 * reports, apply and the worker stay as they are.
 */
#ifndef WXPAY_ENDPOINT_H
#define WXPAY_ENDPOINT_H

#include "wxpay.h"

#include "http.h"
#include "remote_error.h"

/* What a verified answer or notification says about a payment. */
typedef struct WxPaymentReport
{
	const char *out_trade_no;
	const char *state;			/* an order state (states.h), or ACCEPT */
	const char *total_fee;		/* fen, as reported: checked against the order */
	const char *transaction_id;
	const char *paid_at;		/* timestamptz text, e.g. 2026-11-26 12:00:00+08 */
	Jsonb	   *payer;			/* payer fields worth keeping (openid, bank...) */
	const char *prepay_id;		/* unified order */
	const char *code_url;
	const char *mweb_url;
} WxPaymentReport;

/* What a verified answer or notification says about a refund. */
typedef struct WxRefundReport
{
	const char *out_refund_no;
	const char *out_trade_no;	/* checked against the refund when given */
	const char *refund_fee;		/* likewise */
	const char *refund_id;
	const char *status;			/* a refund state (states.h) */
	const char *success_time;	/* timestamptz text, or NULL */
	const char *recv_accout;
	const char *account;
} WxRefundReport;

typedef struct WxEndpoint WxEndpoint;
typedef struct WxCall WxCall;

/*
 * A protocol: how a request goes on the wire (common fields, signature,
 * headers) and how an answer is judged authentic before an endpoint reads
 * it.  API v2 is wx_protocol_v2 (proto_v2.c).
 */
typedef struct WxProtocol
{
	const char *name;
	/* The request's URL, body, headers; fields are the endpoint's own. */
	void		(*request) (const WxCall *call, WxParamList *fields, WxHttpRequest *req);
	/* An authentic answer from the merchant's WeChat Pay, into fields. */
	bool		(*judge) (const WxCall *call, const WxHttpResponse *resp,
						  WxParamList *fields, WxFailure *fail);
} WxProtocol;

extern const WxProtocol wx_protocol_v2;

/* One call: which endpoint, for whom, about what. */
struct WxCall
{
	const WxEndpoint *endpoint;
	const WxMerchant *merchant;
	const char *out_trade_no;
	const char *out_refund_no;
	const WxParamList *fields;	/* further request fields the caller validated */
	int32		total_fee;		/* refund: the order's total */
	int32		refund_fee;
};

/* A verified answer and what it means. */
typedef struct WxAnswer
{
	WxParamList fields;			/* as WeChat Pay sent it (returned to SQL) */
	WxPaymentReport payment;
	WxRefundReport refund;
	bool		changed;		/* apply moved a row */
} WxAnswer;

struct WxEndpoint
{
	const WxProtocol *protocol;
	const char *name;			/* "orderquery": messages and logs */
	const char *path;			/* "/pay/orderquery" */
	bool		client_cert;	/* mutual TLS with the merchant's certificate */
	const char *source;			/* order_events.source of what apply changes */
	/* The request's own fields (the protocol adds the common ones). */
	void		(*build) (const WxCall *call, WxParamList *req);
	/* What a verified answer means; false with fail when it is a refusal. */
	bool		(*read) (const WxCall *call, WxAnswer *answer, WxFailure *fail);
	/* Apply what was read to the local tables; false when they refuse it. */
	bool		(*apply) (const WxCall *call, WxAnswer *answer, WxFailure *fail);
};

/* The endpoints (query.c, refund.c, unifiedorder.c, micropay.c). */
extern const WxEndpoint wx_endpoint_unifiedorder;
extern const WxEndpoint wx_endpoint_orderquery;
extern const WxEndpoint wx_endpoint_closeorder;
extern const WxEndpoint wx_endpoint_refund;
extern const WxEndpoint wx_endpoint_refundquery;
extern const WxEndpoint wx_endpoint_micropay;
extern const WxEndpoint wx_endpoint_reverse;

/* endpoint.c: the pipeline, and build steps endpoints share */
extern void wxpay_build_fields(const WxCall *call, WxParamList *req);
extern void wxpay_build_by_out_trade_no(const WxCall *call, WxParamList *req);
extern bool wxpay_endpoint_usable(const WxCall *call, WxFailure *fail);
extern bool wxpay_endpoint_request(const WxCall *call, WxHttpRequest *req,
								   WxFailure *fail);
extern bool wxpay_endpoint_finish(const WxCall *call, WxHttpFailure transport,
								  char *transport_message,
								  const WxHttpResponse *resp, WxAnswer *answer,
								  WxFailure *fail);
extern void wxpay_endpoint_call(const WxCall *call, WxAnswer *answer);
extern void wxpay_call_init(WxCall *call, const WxEndpoint *endpoint,
							const WxMerchant *m);

/* proto_v2.c: merchant API v2 (XML, MD5 / HMAC-SHA256) */
extern bool wxpay_v2_result(const WxEndpoint *ep, const WxParamList *resp,
							WxFailure *fail);
extern void wxpay_v2_payment_report(const WxParamList *fields, const char *state,
									WxPaymentReport *r);
extern char *wxpay_v2_time(const char *yyyymmddhhmmss);
extern const char *wxpay_v2_refund_time(const char *yyyy_mm_dd_hh_mm_ss);

/* orders.c and refund.c: applying reports */
typedef enum WxApplyResult
{
	WX_APPLY_CHANGED,			/* the row moved to the reported state */
	WX_APPLY_UNCHANGED,			/* it was there already: a duplicate */
	WX_APPLY_REJECTED			/* the report cannot be applied; see reason */
} WxApplyResult;

extern WxApplyResult wxpay_apply_payment(const char *mch_id,
										 const WxPaymentReport *r,
										 const char *source, char **reason);
extern WxApplyResult wxpay_apply_refund_report(const char *mch_id,
											   const WxRefundReport *r,
											   const char *source, char **reason);
extern bool wxpay_apply_outcome(WxApplyResult result, char *reason,
								WxAnswer *answer, WxFailure *fail);
extern bool wxpay_apply_payment_answer(const WxCall *call, WxAnswer *answer,
									   WxFailure *fail);

#endif							/* WXPAY_ENDPOINT_H */
