/*
 * endpoint.c
 *	  The endpoint pipeline (see endpoint.h): request, judge, read, apply,
 *	  for the SQL functions and the worker alike.
 */
#include "endpoint.h"

#include "utils/builtins.h"

/* A call of endpoint for merchant m, with nothing else set yet. */
void
wxpay_call_init(WxCall *call, const WxEndpoint *endpoint, const WxMerchant *m)
{
	memset(call, 0, sizeof(*call));
	call->endpoint = endpoint;
	call->merchant = m;
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
 * needs its client certificate); checked before anything is recorded.
 */
bool
wxpay_endpoint_usable(const WxCall *call, WxFailure *fail)
{
	const WxEndpoint *ep = call->endpoint;
	const WxMerchant *m = call->merchant;

	if (ep->client_cert && (m->cert_pem == NULL || m->key_pem == NULL))
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
	WxParamList fields;

	if (!wxpay_endpoint_usable(call, fail))
		return false;
	wxpay_list_init(&fields, 16);
	ep->build(call, &fields);
	ep->protocol->request(call, &fields, req);
	req->ca_pem = m->ca_pem;
	if (ep->client_cert)
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

	memset(answer, 0, sizeof(*answer));
	if (transport != WX_HTTP_OK)
		return wxpay_fail(fail, transport == WX_HTTP_UNTRUSTED ? WX_FAIL_UNTRUSTED : WX_FAIL_TRANSPORT,
						  transport_message);
	if (!ep->protocol->judge(call, resp, &answer->fields, fail))
		return false;
	if (!ep->read(call, answer, fail))
		return false;
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
		wxpay_raise_failure(&fail, call->merchant->mch_id, call->endpoint->path);
	transport = wxpay_http_perform(&req, &resp, &message);
	if (!wxpay_endpoint_finish(call, transport, message, &resp, answer, &fail))
		wxpay_raise_failure(&fail, call->merchant->mch_id, req.url);
}

/*
 * An apply step's result as the pipeline's: a rejection is a mismatch
 * between WeChat Pay's verified answer and the local records.
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
