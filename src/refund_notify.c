/*
 * refund_notify.c
 *	  Refund notifications: wxpay_handle_refund_notify with its AES-256-ECB
 *	  req_info, and wxpay_refund_decrypt for inspecting stored bodies.
 *
 * They carry no signature; their authenticity rests on req_info decrypting
 * (PKCS#7 intact) under the merchant's key and on naming a refund of ours
 * with its order and amount.  Even then a notification is only a trigger:
 * ECB has no integrity, so the worker confirms it with refundquery.
 */
#include "endpoint.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "notify.h"
#include "refund.h"
#include "spi_util.h"
#include "states.h"
#include "wx_aes.h"

PG_FUNCTION_INFO_V1(wxpay_handle_refund_notify);
PG_FUNCTION_INFO_V1(wxpay_handle_refund_notify_1_1);
PG_FUNCTION_INFO_V1(wxpay_refund_decrypt);

/*
 * A refund notification is a trigger, not proof: AES-ECB has no integrity.
 * Once it names one of our pending refunds, with its order and amount, the
 * worker is asked to confirm it with refundquery right away; only that
 * verified answer moves the refund.  A settled refund makes it a duplicate.
 */
static WxApplyResult
schedule_confirmation(const char *mch_id, const WxRefundReport *r, char **reason)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(mch_id), CStringGetTextDatum(r->out_refund_no)};
	char	   *state;

	if ((state = wxpay_lock_matching_refund(mch_id, r, reason)) == NULL)
		return WX_APPLY_REJECTED;
	if (wx_refund_state_final(state))
		return WX_APPLY_UNCHANGED;
	wxpay_spi_exec("UPDATE wxpay.refunds SET next_query_at = pg_catalog.now()"
				   " WHERE mch_id OPERATOR(pg_catalog.=) $1 AND out_refund_no OPERATOR(pg_catalog.=) $2",
				   2, types, values, NULL, false, SPI_OK_UPDATE);
	wxpay_wake_worker_at_commit();
	return WX_APPLY_CHANGED;
}

/*
 * req_info without CR and LF: base64 wrapped at 76 columns (as MIME
 * encoders write it) is the same base64; nothing else is tolerated.
 */
static char *
without_line_breaks(const char *s)
{
	char	   *out = palloc(strlen(s) + 1);
	char	   *o = out;

	for (; *s; s++)
		if (*s != '\r' && *s != '\n')
			*o++ = *s;
	*o = '\0';
	return out;
}

/* Decrypt req_info into its fields; NULL and a reason when it cannot be. */
static WxParamList *
decrypt_req_info(const char *api_key, const char *req_info, char **reason)
{
	char	   *b64 = without_line_breaks(req_info);
	size_t		len = strlen(b64);
	unsigned char *plain = palloc(wx_base64_decoded_max(len) + 1);
	size_t		plain_len;
	WxParamList *fields = palloc0(sizeof(WxParamList));
	char	   *root = NULL;
	WxXmlError	err;

	switch (wx_refund_decrypt(b64, len, api_key, strlen(api_key), plain, &plain_len))
	{
		case WX_AES_OK:
			break;
		case WX_AES_BAD_BASE64:
		case WX_AES_BAD_LENGTH:
			*reason = pstrdup("req_info is not base64 of whole AES blocks");
			return NULL;
		default:
			*reason = pstrdup("req_info does not decrypt with the merchant's key");
			return NULL;
	}
	if (wxpay_xml_parse((char *) plain, plain_len, fields, &root, &err) != WX_XML_OK)
	{
		*reason = psprintf("decrypted req_info is not valid XML: %s", err.message);
		return NULL;
	}
	if (strcmp(root, "root") != 0)
	{
		*reason = pstrdup("decrypted req_info has no <root>");
		return NULL;
	}
	return fields;
}

/* Judge a refund notification and apply it; fills out. */
static void
judge_refund(const WxNotice *n, WxNotifyOutcome *out)
{
	WxParamList outer;
	WxParamList *fields;
	WxMerchant *m;
	const char *req_info;
	WxRefundReport r;
	WxApplyResult result;
	char	   *reason = NULL;

	if ((m = wxpay_notify_sender(n->body, n->len, &outer, out)) == NULL)
		return;
	if ((req_info = wxpay_list_get(&outer, "req_info")) == NULL)
		return wxpay_notify_reject(out, pstrdup("req_info is missing"));
	if ((fields = decrypt_req_info(m->api_key, req_info, &reason)) == NULL)
		return wxpay_notify_reject(out, reason);

	memset(&r, 0, sizeof(r));
	r.out_refund_no = out->out_refund_no = (char *) wxpay_list_get(fields, "out_refund_no");
	r.out_trade_no = out->out_trade_no = (char *) wxpay_list_get(fields, "out_trade_no");
	out->transaction_id = (char *) wxpay_list_get(fields, "transaction_id");
	out->verified = true;		/* decrypted with the merchant's key: as far as v2 goes */
	r.refund_fee = wxpay_list_get(fields, "refund_fee");
	r.refund_id = wxpay_list_get(fields, "refund_id");
	r.status = wxpay_list_get(fields, "refund_status");
	r.success_time = wxpay_v2_refund_time(wxpay_list_get(fields, "success_time"));
	r.recv_accout = wxpay_list_get(fields, "refund_recv_accout");
	r.account = wxpay_list_get(fields, "refund_account");
	if (r.out_refund_no == NULL || r.out_trade_no == NULL || r.refund_fee == NULL || r.status == NULL)
		return wxpay_notify_reject(out, pstrdup("req_info lacks out_refund_no, out_trade_no, refund_fee or refund_status"));
	if (!wx_refund_state_valid(r.status))
		return wxpay_notify_reject(out, psprintf("unknown refund_status %s", r.status));
	result = schedule_confirmation(m->mch_id, &r, &reason);
	wxpay_notify_applied(out, result, reason);
	if (result == WX_APPLY_CHANGED)
		out->reason = pstrdup("refundquery scheduled to confirm it");
}

/*
 * wxpay_handle_refund_notify(body text) -> text, the HTTP response body
 * (the 1.1 symbol; 1.0's declaration names wxpay_handle_refund_notify)
 */
Datum
wxpay_handle_refund_notify_1_1(PG_FUNCTION_ARGS)
{
	return wxpay_handle_notification(fcinfo, "refund", judge_refund, false);
}

/* wxpay_handle_refund_notify as the 1.0 schema declares it */
Datum
wxpay_handle_refund_notify(PG_FUNCTION_ARGS)
{
	return wxpay_handle_notification(fcinfo, "refund", judge_refund, true);
}

/*
 * wxpay_refund_decrypt(req_info text, key text) -> jsonb, the fields of a
 * refund notification's req_info, for inspecting stored bodies
 */
Datum
wxpay_refund_decrypt(PG_FUNCTION_ARGS)
{
	char	   *req_info = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *key = PG_GETARG_TEXT_PP(1);
	char	   *reason;
	WxParamList *fields;

	wxpay_check_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	fields = decrypt_req_info(text_to_cstring(key), req_info, &reason);
	if (fields == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", reason)));
	PG_RETURN_JSONB_P(wxpay_list_to_jsonb(fields));
}
