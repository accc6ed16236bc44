-- Payment notifications: the genuine path, duplicates, and every rejection,
-- each leaving the order untouched and the body on record.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
-- A notification handled: the reply's return_code, and what was recorded.
CREATE FUNCTION pg_temp.notify(body text) RETURNS TABLE (reply text, outcome text, reason text)
LANGUAGE plpgsql AS $$
BEGIN
	reply := wxpay_from_xml(wxpay_handle_notify(body)) ->> 'return_code';
	SELECT n.outcome, n.reason INTO outcome, reason FROM wxpay.notifications n ORDER BY n.id DESC LIMIT 1;
	RETURN NEXT;
END
$$;
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, api_base)
VALUES ('10000100', 'wxd930ea5d5a258f4f', '192006250b4c09247ec02edce69f6a2d',
        'https://shop.example.com/wxpay/notify', 'http://127.0.0.1:9');
INSERT INTO wxpay.merchants (mch_id, appid, api_key, sign_type, api_base)
VALUES ('10000200', 'wx2000', '192006250b4c09247ec02edce69f6a2d', 'HMAC-SHA256', 'http://127.0.0.1:9');
\set key '192006250b4c09247ec02edce69f6a2d'
-- A correctly signed notification body, as WeChat Pay would send it
CREATE FUNCTION pg_temp.signed(fields jsonb, key text, sign_type text DEFAULT 'MD5')
RETURNS text LANGUAGE sql
AS $$ SELECT wxpay_to_xml(fields || jsonb_build_object('sign', wxpay_sign(fields, key, sign_type))) $$;
CREATE FUNCTION pg_temp.paid(out_trade_no text, total_fee text, txn text)
RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('return_code', 'SUCCESS', 'return_msg', 'OK', 'appid', 'wxd930ea5d5a258f4f',
	'mch_id', '10000100', 'nonce_str', wxpay_nonce(), 'result_code', 'SUCCESS', 'openid', 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o',
	'is_subscribe', 'N', 'trade_type', 'APP', 'bank_type', 'CMC', 'total_fee', total_fee, 'fee_type', 'CNY',
	'cash_fee', total_fee, 'transaction_id', txn, 'out_trade_no', out_trade_no, 'time_end', '20261126153045',
	'coupon_fee_0', '0', 'future_field', 'signed too') $$;
CREATE FUNCTION pg_temp.last_notification()
RETURNS TABLE (outcome text, reason text, body_kept boolean) LANGUAGE sql
AS $$ SELECT outcome, reason, body <> '' FROM wxpay.notifications ORDER BY id DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.order_state(o text)
RETURNS TABLE (state text, transaction_id text, paid_at timestamptz, events bigint) LANGUAGE sql
AS $$ SELECT state, transaction_id, paid_at,
	(SELECT count(*) FROM wxpay.order_events e WHERE e.out_trade_no = o)
	FROM wxpay.orders WHERE out_trade_no = o $$;

SET timezone = 'UTC';
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 'n-1', 'APP', 'Notify', 100, '1.2.3.4'),
       ('10000100', 'n-2', 'APP', 'Notify', 100, '1.2.3.4'),
       ('10000200', 'n-3', 'APP', 'Notify', 1, '1.2.3.4'),
       ('10000100', 'n-4', 'APP', 'Notify', 100, '1.2.3.4');

-- Rejections first, each leaving n-1 as it was.  The reply says only
-- FAIL and "rejected"; the reason is on record, not told to the sender.
SELECT wxpay_handle_notify('this is not xml') AS raw_reply;
SELECT * FROM pg_temp.notify('this is not xml');
SELECT * FROM pg_temp.last_notification();
SELECT * FROM pg_temp.notify('');
SELECT * FROM pg_temp.notify(NULL);
SELECT * FROM pg_temp.notify('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><return_code>&xxe;</return_code></xml>');
SELECT * FROM pg_temp.last_notification();
SELECT * FROM pg_temp.notify('<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[boom]]></return_msg></xml>');
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011') || '{"mch_id": "99999"}', :'key'));
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011') || '{"appid": "wxother"}', :'key'));
-- Signed with a key that is not the merchant's
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011'), 'attackerattackerattackerattacker'));
-- Signed, then a field changed (amount raised after signing)
SELECT * FROM pg_temp.notify(replace(pg_temp.signed(pg_temp.paid('n-1', '1', '4200000000000000000000000011'), :'key'),
                                   '<total_fee><![CDATA[1]]>', '<total_fee><![CDATA[100]]>'));
-- Signed, then a field dropped
SELECT * FROM pg_temp.notify(regexp_replace(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011'), :'key'),
                                          '<future_field>.*</future_field>', ''));
-- No sign at all
SELECT * FROM pg_temp.notify(wxpay_to_xml(pg_temp.paid('n-1', '100', '4200000000000000000000000011')));
-- Genuine signature, but the payment failed
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011')
                                          || '{"result_code": "FAIL", "err_code": "SYSTEMERROR"}', :'key'));
-- Genuine signature, unknown order
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-404', '100', '4200000000000000000000000011'), :'key'));
-- Genuine signature, wrong amount (a leaked-data forgery WeChat warns about)
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '1', '4200000000000000000000000011'), :'key'));
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100.00', '4200000000000000000000000011'), :'key'));
-- Duplicate elements would make the signed value ambiguous
SELECT * FROM pg_temp.notify(replace(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011'), :'key'),
                                   '</xml>', '<total_fee>1</total_fee></xml>'));
SELECT * FROM pg_temp.order_state('n-1');
SELECT outcome, count(*) FROM wxpay.notifications GROUP BY outcome ORDER BY outcome;

-- The genuine notification: exactly the documented reply, order paid
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011'), :'key'));
SELECT * FROM pg_temp.last_notification();
SELECT * FROM pg_temp.order_state('n-1');
SELECT payer FROM wxpay.orders WHERE out_trade_no = 'n-1';
SELECT old_state, new_state, source, transaction_id FROM wxpay.order_events WHERE out_trade_no = 'n-1' ORDER BY id;
-- Repeats reply SUCCESS and change nothing
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011'), :'key'));
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000011'), :'key', 'HMAC-SHA256'));
SELECT * FROM pg_temp.last_notification();
SELECT * FROM pg_temp.order_state('n-1');
-- A second, different transaction for a paid order is refused
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-1', '100', '4200000000000000000000000099'), :'key'));
SELECT * FROM pg_temp.order_state('n-1');

-- HMAC-SHA256 merchant: real notifications come without sign_type
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-3', '1', '4200000000000000000000000033')
                                          || '{"mch_id": "10000200", "appid": "wx2000"}', :'key', 'HMAC-SHA256'));
-- ... and with it, which is then part of the signature
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-2', '100', '4200000000000000000000000022')
                                          || '{"sign_type": "HMAC-SHA256"}', :'key', 'HMAC-SHA256'));
SELECT out_trade_no, state, transaction_id FROM wxpay.orders WHERE out_trade_no IN ('n-2', 'n-3') ORDER BY 1;

-- sign_type empty counts as absent (MD5 by the sign's length), and
-- a lower-case md5 is MD5; the value is signed as received either way
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 'n-5', 'APP', 'Notify', 100, '1.2.3.4'), ('10000100', 'n-6', 'APP', 'Notify', 100, '1.2.3.4'),
       ('10000100', 'n-7', 'APP', 'Notify', 100, '1.2.3.4');
SELECT * FROM pg_temp.notify(replace(pg_temp.signed(pg_temp.paid('n-5', '100', '4200000000000000000000000055'), :'key'),
                                     '<xml>', '<xml><sign_type><![CDATA[]]></sign_type>'));
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-6', '100', '4200000000000000000000000066')
                                          || '{"sign_type": "md5"}', :'key'));
-- An attach that looks like a DOCTYPE pays its order like any other
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-7', '100', '4200000000000000000000000077')
                                          || '{"attach": "<!DOCTYPE html>"}', :'key'));
SELECT out_trade_no, state FROM wxpay.orders WHERE out_trade_no IN ('n-5', 'n-6', 'n-7') ORDER BY 1;
-- A body built to make error texts split a UTF-8 character: no ERROR,
-- a FAIL reply, the body on record
SELECT * FROM pg_temp.notify('<xml><' || repeat('名', 22) || '>1</' || repeat('名', 22) || '><' || repeat('名', 22) || '>2</' || repeat('名', 22) || '></xml>');
SELECT count(*) AS crafted_body_kept FROM wxpay.notifications WHERE body LIKE '<xml><名名名%';
-- A prefixed duplicate cannot stand in for a signed field
SELECT * FROM pg_temp.notify(replace(pg_temp.signed(pg_temp.paid('n-7', '100', '4200000000000000000000000077'), :'key'),
                                     '</xml>', '<w:total_fee xmlns:w="urn:x">1</w:total_fee></xml>'));

-- A genuine payment for an order closed here is flagged, not applied
UPDATE wxpay.orders SET state = 'CLOSED' WHERE out_trade_no = 'n-4';
SELECT * FROM pg_temp.notify(pg_temp.signed(pg_temp.paid('n-4', '100', '4200000000000000000000000044'), :'key'));
SELECT * FROM pg_temp.order_state('n-4');

-- Every body is on record, append-only
SELECT count(*) AS bodies, count(*) FILTER (WHERE outcome = 'accepted') AS accepted,
       count(*) FILTER (WHERE outcome = 'duplicate') AS duplicates FROM wxpay.notifications;
DELETE FROM wxpay.notifications;
UPDATE wxpay.notifications SET outcome = 'accepted';
-- The handler waits at most wxpay.lock_timeout inside its judgement; the
-- caller's own lock_timeout is what it was afterwards
SET lock_timeout = '7s';
SELECT reply, outcome FROM pg_temp.notify('not xml either');
SHOW lock_timeout;
RESET lock_timeout;
-- A change of the merchant counts at the next notification (the session's
-- merchant cache forgets it at once, and again when the change rolls back)
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 'n-9', 'APP', 'Notify', 100, '1.2.3.4');
CREATE TEMP TABLE n9 AS SELECT pg_temp.signed(pg_temp.paid('n-9', '100', '4200000000000000000000000099'), :'key') AS body;
BEGIN;
UPDATE wxpay.merchants SET api_key = repeat('x', 32) WHERE mch_id = '10000100';
SELECT * FROM pg_temp.notify((SELECT body FROM n9));
ROLLBACK;
SELECT * FROM pg_temp.notify((SELECT body FROM n9));
UPDATE wxpay.merchants SET appid = 'wx-other' WHERE mch_id = '10000100';
SELECT * FROM pg_temp.notify((SELECT body FROM n9));
UPDATE wxpay.merchants SET appid = 'wxd930ea5d5a258f4f' WHERE mch_id = '10000100';
SELECT * FROM pg_temp.notify((SELECT body FROM n9));
