-- Settled rows and contradicting reports: a row that reaches a final
-- state drops the last_error of earlier attempts (trial-v3 #11), and an
-- authentic report that contradicts a paid order is an anomaly, not a
-- duplicate (trial-v3 #5).  API v2 here; t/056_v3_ops.pl does the same for v3.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, api_base)
VALUES ('10000100', 'wxd930ea5d5a258f4f', '192006250b4c09247ec02edce69f6a2d',
        'https://shop.example.com/wxpay/notify', 'http://127.0.0.1:9');
\set key '192006250b4c09247ec02edce69f6a2d'
CREATE FUNCTION pg_temp.notify(body text) RETURNS TABLE (reply text, outcome text, reason text)
LANGUAGE plpgsql AS $$
BEGIN
	reply := wxpay_from_xml(wxpay_handle_notify(body)) ->> 'return_code';
	SELECT n.outcome, n.reason INTO outcome, reason FROM wxpay.notifications n ORDER BY n.id DESC LIMIT 1;
	RETURN NEXT;
END
$$;
CREATE FUNCTION pg_temp.paid(out_trade_no text, total_fee text, txn text)
RETURNS text LANGUAGE sql
AS $$ SELECT wxpay_to_xml(f || jsonb_build_object('sign', wxpay_sign(f, '192006250b4c09247ec02edce69f6a2d')))
	FROM (SELECT jsonb_build_object('return_code', 'SUCCESS', 'appid', 'wxd930ea5d5a258f4f',
	'mch_id', '10000100', 'nonce_str', wxpay_nonce(), 'result_code', 'SUCCESS', 'openid', 'o1',
	'trade_type', 'APP', 'bank_type', 'CMC', 'total_fee', total_fee, 'fee_type', 'CNY',
	'cash_fee', total_fee, 'transaction_id', txn, 'out_trade_no', out_trade_no,
	'time_end', '20261126153045') f) s $$;

INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 's-1', 'APP', 'Settled', 900, '1.2.3.4');

-- #11: the worker's lost answer left a last_error; the notification that
-- pays the order settles it, and the error goes with it.
UPDATE wxpay.orders SET last_error = 'answered HTTP 500 SYSTEMERROR: the outcome is unknown' WHERE out_trade_no = 's-1';
SELECT * FROM pg_temp.notify(pg_temp.paid('s-1', '900', '4200000000000000000000000001'));
SELECT state, last_error FROM wxpay.orders WHERE out_trade_no = 's-1';

-- The same for a refund (any writer: the guard trigger does it), to each
-- final state; a statement that settles it and sets last_error (a refusal
-- closing the refund) keeps its own error.
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee)
VALUES ('10000100', 'sr-1', 's-1', 100, 900), ('10000100', 'sr-2', 's-1', 100, 900),
       ('10000100', 'sr-3', 's-1', 100, 900), ('10000100', 'sr-4', 's-1', 100, 900);
UPDATE wxpay.refunds SET last_error = 'lost answer';
UPDATE wxpay.refunds SET state = 'SUCCESS', refund_id = '5030', success_time = now() WHERE out_refund_no = 'sr-1';
UPDATE wxpay.refunds SET state = 'REFUNDCLOSE' WHERE out_refund_no = 'sr-2';
UPDATE wxpay.refunds SET state = 'CHANGE' WHERE out_refund_no = 'sr-3';
UPDATE wxpay.refunds SET state = 'REFUNDCLOSE', last_error = 'WeChat Pay refused it' WHERE out_refund_no = 'sr-4';
SELECT out_refund_no, state, last_error FROM wxpay.refunds ORDER BY out_refund_no;

-- #5: a genuine repeat is a duplicate; a signed report of the paid order
-- with another amount is answered SUCCESS (the order is paid: WeChat Pay
-- must stop re-sending) but recorded as an anomaly, with a WARNING and a
-- row in wxpay.payment_anomalies; the order is untouched.
SELECT * FROM pg_temp.notify(pg_temp.paid('s-1', '900', '4200000000000000000000000001'));
SELECT * FROM pg_temp.notify(pg_temp.paid('s-1', '1', '4200000000000000000000000001'));
SELECT state, total_fee, transaction_id FROM wxpay.orders WHERE out_trade_no = 's-1';
SELECT mch_id, out_trade_no, transaction_id, source, reported_total_fee, order_total_fee, reason
  FROM wxpay.payment_anomalies;
-- Another transaction for the paid order stays what it was: rejected, and
-- listed among the unmatched payments.
SELECT * FROM pg_temp.notify(pg_temp.paid('s-1', '900', '4200000000000000000000000002'));
SELECT out_trade_no, transaction_id, total_fee FROM wxpay.unmatched_payments;
SELECT count(*) AS anomalies FROM wxpay.payment_anomalies;
-- Not for PUBLIC.
SELECT has_table_privilege('public', 'wxpay.payment_anomalies', 'SELECT') AS public_reads;
