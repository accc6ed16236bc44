-- Retention: wxpay.archive_notifications() moves the settled bodies out of
-- wxpay.notifications and nothing else; duplicates delivered afterwards
-- are still answered SUCCESS with one transition; the audit trail stays.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, api_base)
VALUES ('10000100', 'wxd930ea5d5a258f4f', '192006250b4c09247ec02edce69f6a2d',
        'https://shop.example.com/wxpay/notify', 'http://127.0.0.1:9');
CREATE FUNCTION pg_temp.paid(out_trade_no text, total_fee text, txn text)
RETURNS text LANGUAGE sql
AS $$ SELECT wxpay_to_xml(f || jsonb_build_object('sign', wxpay_sign(f, '192006250b4c09247ec02edce69f6a2d')))
	FROM (SELECT jsonb_build_object('return_code', 'SUCCESS', 'appid', 'wxd930ea5d5a258f4f',
	'mch_id', '10000100', 'nonce_str', 'n' || out_trade_no, 'result_code', 'SUCCESS', 'openid', 'o1',
	'trade_type', 'APP', 'bank_type', 'CMC', 'total_fee', total_fee, 'fee_type', 'CNY',
	'cash_fee', total_fee, 'transaction_id', txn, 'out_trade_no', out_trade_no,
	'time_end', '20261126153045') f) s $$;
CREATE FUNCTION pg_temp.reply(body text) RETURNS text
LANGUAGE sql AS $$ SELECT wxpay_from_xml(wxpay_handle_notify(body)) ->> 'return_code' $$;
CREATE FUNCTION pg_temp.tables()
RETURNS TABLE (tbl text, out_trade_no text, outcome text, n bigint) LANGUAGE sql
AS $$ SELECT 'notifications', out_trade_no, outcome, count(*) FROM wxpay.notifications GROUP BY 2, 3
	UNION ALL SELECT 'archive', out_trade_no, outcome, count(*) FROM wxpay.notifications_archive GROUP BY 2, 3
	ORDER BY 1 DESC, 2, 3 $$;

INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 'r-1', 'APP', 'Kept', 100, '1.2.3.4'),
       ('10000100', 'r-2', 'APP', 'Pending', 100, '1.2.3.4');
-- r-1 paid, then delivered again; r-2 still pending, with a wrong amount
-- on record; a payment for an order unknown here (unmatched).
SELECT pg_temp.reply(pg_temp.paid('r-1', '100', '4200000000000000000000000101')) AS first,
       pg_temp.reply(pg_temp.paid('r-1', '100', '4200000000000000000000000101')) AS duplicate,
       pg_temp.reply(pg_temp.paid('r-2', '1', '4200000000000000000000000102')) AS wrong_amount,
       pg_temp.reply(pg_temp.paid('r-9', '100', '4200000000000000000000000109')) AS unknown;
SELECT * FROM pg_temp.tables();

-- Nothing is old enough yet; a horizon must be given and not negative.
SELECT wxpay.archive_notifications('1 day') AS moved;
\set VERBOSITY sqlstate
SELECT wxpay.archive_notifications(NULL);
SELECT wxpay.archive_notifications('-1 day');
\set VERBOSITY default
-- Only the archive may move them; nobody may delete from either table.
DELETE FROM wxpay.notifications WHERE out_trade_no = 'r-1';

-- Horizon 0: everything received before this transaction is old enough.
-- Only r-1's bodies move (its order is settled); the rejected ones stay.
SELECT wxpay.archive_notifications('0') AS moved;
SELECT * FROM pg_temp.tables();
SELECT count(*) AS rows_in_both FROM wxpay.notifications n JOIN wxpay.notifications_archive a USING (id);
SELECT out_trade_no, total_fee FROM wxpay.unmatched_payments;
DELETE FROM wxpay.notifications_archive;

-- WeChat Pay delivers r-1 once more: answered SUCCESS, recorded as a
-- duplicate, and the order moved to SUCCESS exactly once.
SELECT pg_temp.reply(pg_temp.paid('r-1', '100', '4200000000000000000000000101')) AS late_duplicate;
SELECT * FROM pg_temp.tables();
SELECT out_trade_no, old_state, new_state, source FROM wxpay.order_events ORDER BY id;
SELECT out_trade_no, state, transaction_id FROM wxpay.orders ORDER BY 1;

-- The archive is the DBA's: not PUBLIC's, and under row security.
SELECT has_function_privilege('public', 'wxpay.archive_notifications(interval)', 'EXECUTE') AS public_execute,
       has_table_privilege('public', 'wxpay.notifications_archive', 'SELECT') AS public_select,
       relrowsecurity FROM pg_class WHERE oid = 'wxpay.notifications_archive'::regclass;
-- The DBA exports the archive and may then empty it (TRUNCATE, the
-- owner's right); notifications cannot be emptied.
COPY (SELECT out_trade_no, outcome FROM wxpay.notifications_archive ORDER BY id) TO STDOUT;
SELECT has_table_privilege('public', 'wxpay.notifications_archive', 'TRUNCATE') AS public_truncate;
TRUNCATE wxpay.notifications;
