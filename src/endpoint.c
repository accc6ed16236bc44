/*
 * endpoint.c
 *	  The endpoint pipeline (see endpoint.h): request, judge, read, apply,
 *	  for the SQL functions and the worker alike.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "spi_util.h"

/* A call of endpoint for merchant m, with nothing else set yet. */
void
wxpay_call_init(WxCall *call, const WxEndpoint *endpoint, const WxMerchant *m)
{
	memset(call, 0, sizeof(*call));
	call->endpoint = endpoint;
	call->merchant = m;
}

/* The protocol a call speaks: the merchant row's choice. */
const WxProtocol *
wxpay_call_protocol(const WxCall *call)
{
	return call->merchant->v3 ? &wx_protocol_v3 : &wx_protocol_v2;
}

/* The endpoint's path in the call's protocol (a v3 template), for messages. */
const char *
wxpay_call_path(const WxCall *call)
{
	const WxEndpoint *ep = call->endpoint;

	return call->merchant->v3 && ep->v3 ? ep->v3->path : ep->path;
}

/* An answer as jsonb in the current memory: v3's JSON, v2's fields. */
Jsonb *
wxpay_answer_jsonb(const WxAnswer *answer)
{
	Jsonb	   *copy;

	if (answer->json == NULL)
		return wxpay_list_to_jsonb(&answer->fields);
	copy = palloc(VARSIZE(answer->json));
	memcpy(copy, answer->json, VARSIZE(answer->json));
	return copy;
}

/* A SQL function's result in the caller's memory; ends the SPI connection. */
Jsonb *
wxpay_answer_result(MemoryContext caller, const WxAnswer *answer)
{
	Jsonb	   *result;

	if (answer->json == NULL)
		return wxpay_spi_result(caller, &answer->fields);
	MemoryContextSwitchTo(caller);
	result = wxpay_answer_jsonb(answer);
	SPI_finish();
	return result;
}

/* A build step for endpoints whose caller assembled the fields (call->fields). */
void
wxpay_build_fields(const WxCall *call, WxParamList *req)
{
	wxpay_list_append(req, call->fields);
}

/* A build step for endpoints that name the order by out_trade_no alone. */
void
wxpay_build_by_out_trade_no(const WxCall *call, WxParamList *req)
{
	wxpay_list_add_cstr(req, "out_trade_no", call->out_trade_no);
}

/*
 * Whether the merchant can make this call at all (a /secapi/ endpoint
 * needs its client certificate, API v3 the merchant's key and serial);
 * checked before anything is recorded.
 */
bool
wxpay_endpoint_usable(const WxCall *call, WxFailure *fail)
{
	const WxEndpoint *ep = call->endpoint;
	const WxMerchant *m = call->merchant;

	if (m->v3 && ep->v3 == NULL)
	{
		wxpay_fail(fail, WX_FAIL_LOCAL,
				   psprintf("%s is not available to merchant %s, which speaks API v3",
							ep->name, m->mch_id));
		fail->hint = "WeChat Pay has this call in API v2 only: it needs a merchant row with protocol v2.";
		return false;
	}
	if (!m->v3 && ep->path == NULL)
		return wxpay_fail(fail, WX_FAIL_LOCAL,
						  psprintf("%s is an API v3 endpoint and merchant %s speaks v2", ep->name, m->mch_id));
	if (m->v3 && (m->key_pem == NULL || m->serial_no == NULL || m->apiv3_key == NULL))
	{
		wxpay_fail(fail, WX_FAIL_LOCAL,
				   psprintf("merchant %s speaks API v3 but has no key_pem or no row in wxpay.merchant_v3",
							m->mch_id));
		fail->hint = "Set wxpay.merchants.key_pem to apiclient_key.pem and insert its APIv3 key into wxpay.merchant_v3.";
		return false;
	}
	if (!m->v3 && ep->client_cert && (m->cert_pem == NULL || m->key_pem == NULL))
	{
		wxpay_fail(fail, WX_FAIL_LOCAL,
				   psprintf("merchant %s has no client certificate for %s", m->mch_id, ep->path));
		fail->hint = "Set cert_pem and key_pem in wxpay.merchants to apiclient_cert.pem and apiclient_key.pem.";
		return false;
	}
	return true;
}

/*
 * The HTTP request for a call, in the current memory context: URL, signed
 * body, headers, trust.  False when it cannot be made.
 */
bool
wxpay_endpoint_request(const WxCall *call, WxHttpRequest *req, WxFailure *fail)
{
	const WxEndpoint *ep = call->endpoint;
	const WxMerchant *m = call->merchant;

	if (!wxpay_endpoint_usable(call, fail) ||
		!wxpay_call_protocol(call)->request(call, req, fail))
		return false;
	req->ca_pem = m->ca_pem;
	if (ep->client_cert && !m->v3)
	{
		req->cert_pem = m->cert_pem;
		req->key_pem = m->key_pem;
	}
	return true;
}

/*
 * Judge a finished transfer, read the verified answer and apply it.  True
 * when all of that worked; false with fail saying which step refused.
 */
bool
wxpay_endpoint_finish(const WxCall *call, WxHttpFailure transport,
					  char *transport_message, const WxHttpResponse *resp,
					  WxAnswer *answer, WxFailure *fail)
{
	const WxEndpoint *ep = call->endpoint;
	const WxProtocol *protocol = wxpay_call_protocol(call);
	bool		error_status = transport == WX_HTTP_FAILED && !resp->too_large &&
		resp->status >= 300 && resp->status <= 599;

	memset(answer, 0, sizeof(*answer));
	if (transport != WX_HTTP_OK && !(error_status && protocol->judges_error_status))
		return wxpay_fail(fail, transport == WX_HTTP_UNTRUSTED ? WX_FAIL_UNTRUSTED : WX_FAIL_TRANSPORT,
						  transport_message);
	if (ep->file_answer && protocol->is_file != NULL && protocol->is_file(resp->body, resp->len))
	{
		answer->file = resp->body ? resp->body : "";
		answer->file_len = resp->len;
	}
	else if (!protocol->judge(call, resp, answer, fail))
		return false;
	if (!(protocol == &wx_protocol_v3 ? ep->v3->read : ep->read) (call, answer, fail))
		return false;
	if (answer->file_path != NULL)
		return true;			/* the caller fetches the file, then applies */
	return ep->apply == NULL || ep->apply(call, answer, fail);
}

/*
 * The SQL functions' path: make the call on the backend's handle and fill
 * answer; any failure is raised with its SQLSTATE.  SPI must be connected.
 */
void
wxpay_endpoint_call(const WxCall *call, WxAnswer *answer)
{
	WxHttpRequest req;
	WxHttpResponse resp;
	WxHttpFailure transport;
	char	   *message;
	WxFailure	fail;

	if (!wxpay_endpoint_request(call, &req, &fail))
		wxpay_raise_failure(&fail, call->merchant->mch_id, wxpay_call_path(call));
	transport = wxpay_http_perform(&req, &resp, &message);
	if (!wxpay_endpoint_finish(call, transport, message, &resp, answer, &fail))
		wxpay_raise_failure(&fail, call->merchant->mch_id, req.url);
	if (answer->file_path == NULL)
		return;
	/* A file the answer named (v3 bills): fetched, then applied. */
	if (!wxpay_named_file_request(call, answer, &req, &fail))
		wxpay_raise_failure(&fail, call->merchant->mch_id, wxpay_call_path(call));
	transport = wxpay_http_perform(&req, &resp, &message);
	if (!wxpay_named_file_finish(call, transport, message, &resp, answer, &fail))
		wxpay_raise_failure(&fail, call->merchant->mch_id, wxpay_call_path(call));
}

/*
 * An apply step's result as the pipeline's: a rejection is a mismatch
 * between WeChat Pay's verified answer and the local records (an anomaly
 * is not: the order stays paid, anomalies.c has logged and recorded it).
 */
bool
wxpay_apply_outcome(WxApplyResult result, char *reason, WxAnswer *answer,
					WxFailure *fail)
{
	if (result == WX_APPLY_REJECTED)
		return wxpay_fail(fail, WX_FAIL_MISMATCH,
						  psprintf("cannot apply WeChat Pay's answer: %s", reason));
	answer->changed = result == WX_APPLY_CHANGED;
	return true;
}

/*
 * The apply step of endpoints that report a payment: the answer's report
 * to the order, under the endpoint's change source.
 */
bool
wxpay_apply_payment_answer(const WxCall *call, WxAnswer *answer, WxFailure *fail)
{
	char	   *reason;
	WxApplyResult result = wxpay_apply_payment(call->merchant->mch_id, &answer->payment,
											   call->endpoint->source, &reason);

	return wxpay_apply_outcome(result, reason, answer, fail);
}
