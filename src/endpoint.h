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
 * Adding an endpoint: one WxEndpoint (its v2 path, certificate need,
 * build and read, its API v3 part, and apply), usually in the file of its
 * SQL function, plus that function's SQL.  The merchant row chooses the
 * protocol (merchants.protocol): API v2 is wx_protocol_v2 (proto_v2.c),
 * API v3 wx_protocol_v3 (proto_v3.c), each reading its own part of the
 * one description; reports, apply and the worker are the same for both.
 *
 * A file endpoint (a bill) answers with an unsigned file on success and a
 * protocol message otherwise: the protocol's is_file tells which, and the
 * file reaches the endpoint's read and apply as answer->file, unjudged
 * (there is nothing to verify it with beyond TLS).  In API v3 the signed
 * answer names the file instead (answer->file_path and its SHA-1): the
 * pipeline stops before apply, and the caller fetches it with
 * wxpay_named_file_request and ends with wxpay_named_file_finish.
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

typedef struct WxAnswer WxAnswer;

/*
 * A protocol: how a request goes on the wire (common fields, signature,
 * headers) and how an answer is judged authentic before an endpoint reads
 * it.  API v2 is wx_protocol_v2 (proto_v2.c), API v3 wx_protocol_v3
 * (proto_v3.c); wxpay_call_protocol says which a call speaks.
 */
typedef struct WxProtocol
{
	const char *name;
	/* The request's URL, body, headers, from the endpoint's description. */
	bool		(*request) (const WxCall *call, WxHttpRequest *req, WxFailure *fail);
	/* An authentic answer from the merchant's WeChat Pay, into answer. */
	bool		(*judge) (const WxCall *call, const WxHttpResponse *resp,
						  WxAnswer *answer, WxFailure *fail);
	/* Whether judge sees answers with an error status (v3's error bodies). */
	bool		judges_error_status;
	/* Endpoints answering with a file: whether this body is the file. */
	bool		(*is_file) (const char *body, size_t len);
} WxProtocol;

extern const WxProtocol wx_protocol_v2;
extern const WxProtocol wx_protocol_v3;

/* One call: which endpoint, for whom, about what. */
struct WxCall
{
	const WxEndpoint *endpoint;
	const WxMerchant *merchant;
	const char *out_trade_no;
	const char *out_refund_no;
	const char *transaction_id; /* query by WeChat Pay's transaction id */
	const WxParamList *fields;	/* further request fields the caller validated */
	int32		total_fee;		/* refund: the order's total */
	int32		refund_fee;
	const char *bill_date;		/* bills: yyyyMMdd, Beijing time */
	const char *bill_type;		/* bills: ALL...; fund flow: the account_type */
};

/* A verified answer and what it means. */
struct WxAnswer
{
	WxParamList fields;			/* as WeChat Pay sent it; v3: names with dots
								 * for nested fields (amount.total) */
	Jsonb	   *json;			/* v3: the answer's JSON (returned to SQL) */
	long		status;			/* v3: the HTTP status */
	WxPaymentReport payment;
	WxRefundReport refund;
	bool		changed;		/* apply moved a row */
	const char *file;			/* file endpoints: the body, when it is the file */
	size_t		file_len;
	bool		no_file;		/* file endpoints: there is none (a day without trades) */
	const char *file_path;		/* v3 bills: the file the answer names, to
								 * fetch before apply (bill_v3.c) */
	const char *file_sha1;		/* and the SHA-1 WeChat Pay gave for it
								 * (decompressed), which it must have */
};

/*
 * An endpoint in API v3: method, path and JSON body instead of v2's signed
 * XML fields, and its own reading of the (JSON) answer.
 */
typedef struct WxEndpointV3
{
	const char *method;			/* "GET", "POST" */
	/* The path, with {out_trade_no}, {transaction_id}, {out_refund_no} or
	 * {trade_type} (jsapi, app, native, h5) filled in from the call. */
	const char *path;
	bool		mchid_query;	/* ?mchid=<mch_id> follows the path */
	/* Further query parameters, already encoded (a=1&b=2), or NULL. */
	char	   *(*query) (const WxCall *call);
	bool		keys_in_answer; /* /v3/certificates: the answer lists the
								 * key that may verify it */
	/* The request body, built as jsonb (NULL: no body). */
	Jsonb	   *(*body) (const WxCall *call);
	/* What a verified answer means; start with wxpay_v3_result. */
	bool		(*read) (const WxCall *call, WxAnswer *answer, WxFailure *fail);
} WxEndpointV3;

struct WxEndpoint
{
	const char *name;			/* "orderquery": messages and logs */
	const char *path;			/* "/pay/orderquery" */
	bool		client_cert;	/* mutual TLS with the merchant's certificate */
	const char *source;			/* order_events.source of what apply changes */
	bool		file_answer;	/* success is an unsigned file (a bill), not a message */
	size_t		max_answer;		/* larger answers fail; 0: the protocol's limit */
	/* The request's own fields (the protocol adds the common ones). */
	void		(*build) (const WxCall *call, WxParamList *req);
	/* What a verified answer means; false with fail when it is a refusal. */
	bool		(*read) (const WxCall *call, WxAnswer *answer, WxFailure *fail);
	/* Apply what was read to the local tables; false when they refuse it. */
	bool		(*apply) (const WxCall *call, WxAnswer *answer, WxFailure *fail);
	/* The same endpoint in API v3, or NULL when there is none. */
	const WxEndpointV3 *v3;
};

/* The endpoints (query.c, refund.c, unifiedorder.c, micropay.c, bill.c;
 * their v3 parts there, or bill_v3.c for the bills). */
extern const WxEndpoint wx_endpoint_downloadbill;
extern const WxEndpoint wx_endpoint_downloadfundflow;
extern const WxEndpoint wx_endpoint_unifiedorder;
extern const WxEndpoint wx_endpoint_orderquery;
extern const WxEndpoint wx_endpoint_orderquery_by_id;
extern const WxEndpoint wx_endpoint_closeorder;
extern const WxEndpoint wx_endpoint_refund;
extern const WxEndpoint wx_endpoint_refundquery;
extern const WxEndpoint wx_endpoint_micropay;
extern const WxEndpoint wx_endpoint_reverse;
extern const WxEndpoint wx_endpoint_certificates;	/* v3 only */

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
extern const WxProtocol *wxpay_call_protocol(const WxCall *call);
extern const char *wxpay_call_path(const WxCall *call);
extern Jsonb *wxpay_answer_jsonb(const WxAnswer *answer);
extern Jsonb *wxpay_answer_result(MemoryContext caller, const WxAnswer *answer);

/* proto_v2.c: merchant API v2 (XML, MD5 / HMAC-SHA256) */
extern bool wxpay_v2_result(const WxEndpoint *ep, const WxParamList *resp,
							WxFailure *fail);
extern bool wxpay_v2_return_failure(const char *path, const WxParamList *resp,
									WxFailure *fail);
extern void wxpay_v2_payment_report(const WxParamList *fields, const char *state,
									WxPaymentReport *r);
extern char *wxpay_v2_time(const char *yyyymmddhhmmss);
extern const char *wxpay_v2_refund_time(const char *yyyy_mm_dd_hh_mm_ss);

/* proto_v3.c: merchant API v3 (JSON, SHA256-RSA2048, verified by serial) */
typedef struct WxJson
{
	JsonbParseState *state;
} WxJson;

extern void wxpay_json_begin(WxJson *j);
extern void wxpay_json_string(WxJson *j, const char *key, const char *value);
extern void wxpay_json_int(WxJson *j, const char *key, int64 value);
extern void wxpay_json_object(WxJson *j, const char *key);
extern void wxpay_json_merge(WxJson *j, Jsonb *object);
extern void wxpay_json_end(WxJson *j);
extern Jsonb *wxpay_json_finish(WxJson *j);
extern Jsonb *wxpay_v3_parse(const char *body, size_t len);
extern void wxpay_v3_fields(Jsonb *jb, WxParamList *fields);
extern char *wxpay_v3_integers_check(Jsonb *jb);
extern const struct WxKey *wxpay_v3_verification_key(const WxMerchant *m, const char *serial);
extern bool wxpay_v3_verify(const WxMerchant *m, const char *serial, const char *timestamp,
							const char *nonce, const char *signature,
							const char *body, size_t len, char **why);
extern bool wxpay_v3_signed_request(const WxMerchant *m, const char *method, const char *path,
									const char *body, const char *accept, const char *serial,
									size_t max_response, WxHttpRequest *http, WxFailure *fail);
extern bool wxpay_v3_result(const WxCall *call, const WxAnswer *answer, WxFailure *fail);
extern void wxpay_v3_payment_report(const WxParamList *fields, WxPaymentReport *r);
extern void wxpay_v3_refund_report(const WxParamList *fields, const char *status_field,
								   WxRefundReport *r);
extern char *wxpay_v3_time(const char *rfc3339);
extern char *wxpay_v3_time_from_v2(const char *yyyymmddhhmmss);
extern void wxpay_v3_certificates_wanted(const char *mch_id);

/* bill_v3.c: a file named by a verified answer (v3 bills) */
extern bool wxpay_named_file_request(const WxCall *call, const WxAnswer *answer,
									 WxHttpRequest *req, WxFailure *fail);
extern bool wxpay_named_file_finish(const WxCall *call, WxHttpFailure transport,
									char *message, const WxHttpResponse *resp,
									WxAnswer *answer, WxFailure *fail);

/* v3_certificates.c: platform certificates */
extern const char *wxpay_v3_answer_certificate(const WxMerchant *m, const WxParamList *fields,
											   const char *serial, char **why);
extern void wxpay_v3_download_certificates(void);
extern long wxpay_v3_certificates_sleep_ms(long max_ms);

/* orders.c and refund.c: applying reports */
typedef enum WxApplyResult
{
	WX_APPLY_CHANGED,			/* the row moved to the reported state */
	WX_APPLY_UNCHANGED,			/* it was there already: a duplicate */
	WX_APPLY_REJECTED,			/* the report cannot be applied; see reason */
	WX_APPLY_ANOMALY			/* unchanged, but the report contradicts the row
								 * (a paid order's amount); see reason */
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
