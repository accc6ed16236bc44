-- Merchants, local validation of unifiedorder, the order state machine
-- and its history, and the client parameters.  No network: the merchant
-- points at a closed loopback port, so a request that went out would show
-- up as a connection error instead of the validation error expected.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, api_base)
VALUES ('10000100', 'wxd930ea5d5a258f4f', '192006250b4c09247ec02edce69f6a2d',
        'https://shop.example.com/wxpay/notify', 'http://127.0.0.1:9');
INSERT INTO wxpay.merchants (mch_id, appid, api_key, sign_type, api_base)
VALUES ('10000200', 'wx2000', '192006250b4c09247ec02edce69f6a2d', 'HMAC-SHA256', 'http://127.0.0.1:9');

\set VERBOSITY sqlstate
-- Merchant constraints
INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES ('m1', 'wx1', 'short');
INSERT INTO wxpay.merchants (mch_id, appid, api_key, sign_type) VALUES ('m1', 'wx1', '192006250b4c09247ec02edce69f6a2d', 'SHA1');
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base) VALUES ('m1', 'wx1', '192006250b4c09247ec02edce69f6a2d', 'http://api.example.com');
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url) VALUES ('m1', 'wx1', '192006250b4c09247ec02edce69f6a2d', 'https://a.example/n?x=1');
INSERT INTO wxpay.merchants (mch_id, appid, api_key, cert_pem) VALUES ('m1', 'wx1', '192006250b4c09247ec02edce69f6a2d', 'cert without key');

-- Local validation: 22023 (22004 for NULL), and nothing recorded
SELECT wxpay_unifiedorder('10000100', 'o1', 0, 'Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o1', -5, 'Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', NULL, 1, 'Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', '', 1, 'Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o#1', 1, 'Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', repeat('x', 33), 1, 'Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, '', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, repeat('商', 43), '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods 😀', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, ' Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'MICROPAY');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'JSAPI');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'NATIVE');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'MWEB');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"colour": "red"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"attach": 5}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"time_expire": "2025-01-01"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"time_expire": "20250101120000"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"time_expire": "2025-01-01T12:00:00+08:00"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"time_expire": "20990230120000"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP',
                          jsonb_build_object('time_expire', to_char(now() AT TIME ZONE 'Asia/Shanghai' + interval '30 seconds', 'YYYYMMDDHH24MISS')));
SELECT count(*) AS recorded FROM wxpay.orders WHERE out_trade_no = 'o1';
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"limit_pay": "no_debit"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"notify_url": "https://a.example/n?q=1"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"attach": "emoji 🎉"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '[]');
SELECT wxpay_unifiedorder('no-such-merchant', 'o1', 1, 'Shop-Goods', '1.2.3.4');
SELECT wxpay_unifiedorder('10000200', 'o1', 1, 'Shop-Goods', '1.2.3.4');
\set VERBOSITY default
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"time_expire": "20250101120000"}');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'JSAPI');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods 😀', '1.2.3.4');
SELECT wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4', 'APP', '{"colour": "red"}');
SELECT count(*) AS orders_after_rejections FROM wxpay.orders;
-- A valid order does try the network; the failure names the endpoint and
-- the order is rolled back with it
DO $$
BEGIN
	PERFORM wxpay_unifiedorder('10000100', 'o1', 1, 'Shop-Goods', '1.2.3.4');
EXCEPTION WHEN SQLSTATE 'WX001' THEN
	RAISE NOTICE 'no answer, retryable (WX001): %', substring(SQLERRM FROM '^request to [^ ]+ failed');
END
$$;
SELECT count(*) AS orders_after_network_failure FROM wxpay.orders;

-- Client parameters: exactly the documented keys, signed with the merchant's type
SELECT array_agg(k ORDER BY k) AS app_keys, p ->> 'package' AS package,
       p ->> 'partnerid' AS partnerid, p ->> 'appid' AS appid,
       wxpay_verify(p, '192006250b4c09247ec02edce69f6a2d', 'MD5') AS verifies,
       (p ->> 'timestamp') ~ '^[0-9]{10}$' AS seconds, (p ->> 'noncestr') ~ '^[A-Za-z0-9]{32}$' AS nonce
  FROM (SELECT wxpay_app_params('10000100', 'wx201411101639507cbf6ffd8b0779950874') AS p) s,
       jsonb_object_keys(p) k GROUP BY p;
SELECT array_agg(k ORDER BY k) AS jsapi_keys, p ->> 'package' AS package, p ->> 'signType' AS sign_type,
       length(p ->> 'paySign') AS sign_len,
       p ->> 'paySign' = wxpay_sign(p - 'paySign', '192006250b4c09247ec02edce69f6a2d', 'HMAC-SHA256') AS verifies
  FROM (SELECT wxpay_jsapi_params('10000200', 'wx201411101639507cbf6ffd8b0779950874') AS p) s,
       jsonb_object_keys(p) k GROUP BY p;
-- The JS-SDK's wx.chooseWXPay: the same fields and signature, with the
-- signed timeStamp under "timestamp"
SELECT array_agg(k ORDER BY k) AS jssdk_keys,
       p ->> 'paySign' = wxpay_sign((p - 'paySign' - 'timestamp') || jsonb_build_object('timeStamp', p ->> 'timestamp'),
                                    '192006250b4c09247ec02edce69f6a2d', 'HMAC-SHA256') AS signed_as_timeStamp
  FROM (SELECT wxpay_jssdk_params('10000200', 'wx201411101639507cbf6ffd8b0779950874') AS p) s,
       jsonb_object_keys(p) k GROUP BY p;
SELECT (wxpay_app_params('10000200', 'wx1') ->> 'sign') ~ '^[0-9A-F]{64}$' AS app_hmac;
\set VERBOSITY sqlstate
SELECT wxpay_app_params('10000100', 'bad prepay id');
SELECT wxpay_jsapi_params('nobody', 'wx1');
\set VERBOSITY default

-- The state machine, enforced for hand-written statements too
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 'm-1', 'APP', 'Manual', 100, '1.2.3.4'),
       ('10000100', 'm-2', 'APP', 'Manual', 100, '1.2.3.4');
\set VERBOSITY sqlstate
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state)
VALUES ('10000100', 'm-3', 'APP', 'Manual', 100, '1.2.3.4', 'SUCCESS');
UPDATE wxpay.orders SET state = 'SUCCESS' WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET total_fee = 1 WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET state = 'REFUND' WHERE out_trade_no = 'm-1';
\set VERBOSITY default
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '4200000000000000000000000001', paid_at = now()
 WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET state = 'NOTPAY' WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET transaction_id = '4200000000000000000000000002' WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET paid_at = now() - interval '1 day' WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET total_fee = 1 WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET state = 'REFUND' WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET state = 'SUCCESS' WHERE out_trade_no = 'm-1';
UPDATE wxpay.orders SET state = 'CLOSED' WHERE out_trade_no = 'm-2';
UPDATE wxpay.orders SET state = 'NOTPAY' WHERE out_trade_no = 'm-2';
-- The rules on the columns of orders and refunds, for every writer: the
-- state guard keeps them under their constraint names (no CHECK is left
-- for PostgreSQL to prepare again at every statement), on new rows, and
-- on changed rows for the columns that may change.  (Rolled back: the
-- history below is of the rows above.)
BEGIN;
CREATE FUNCTION pg_temp.rule(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; con text; msg text; det text;
BEGIN
	EXECUTE stmt;
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, con = CONSTRAINT_NAME, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL;
	RETURN concat_ws(' | ', st, NULLIF(con, ''), msg, NULLIF(det, ''));
END $$;
\pset format unaligned
SELECT pg_temp.rule(format('INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip%s) VALUES (''10000100'', %s, ''1.2.3.4''%s)',
                           CASE WHEN extra IS NOT NULL THEN ', reverse_after' END, v, CASE WHEN extra IS NOT NULL THEN ', ' || extra END)) AS new_order
  FROM (VALUES ($$'r-1', 'APP', 'Rules', 1$$, NULL),
               ($$'r 2', 'APP', 'Rules', 1$$, NULL),
               ($$'r-3-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'APP', 'Rules', 1$$, NULL),
               ($$'r-4-xxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'APP', 'Rules', 1$$, NULL),
               ($$'r-5', 'CASH', 'Rules', 1$$, NULL),
               ($$'r-6', 'MICROPAY', 'Rules', 1$$, 'now()'),
               ($$'r-7', 'APP', '', 1$$, NULL),
               ($$'r-8', 'APP', repeat('支', 43), 1$$, NULL),
               ($$'r-9', 'APP', repeat('支', 42) || 'xy', 1$$, NULL),
               ($$'r-10', 'APP', 'Rules', 0$$, NULL),
               ($$'r-11', 'APP', 'Rules', -5$$, NULL),
               ($$'r-12', 'NATIVE', 'Rules', 1$$, 'now()')) t(v, extra);
SELECT pg_temp.rule(stmt) AS changed_order
  FROM (VALUES ($$UPDATE wxpay.orders SET reverse_after = now() WHERE out_trade_no = 'r-1'$$),
               ($$UPDATE wxpay.orders SET reverse_requested_at = now() WHERE out_trade_no = 'r-1'$$),
               ($$UPDATE wxpay.orders SET reverse_after = NULL WHERE out_trade_no = 'r-6'$$),
               ($$UPDATE wxpay.orders SET trade_type = 'NATIVE' WHERE out_trade_no = 'r-1'$$),
               ($$UPDATE wxpay.orders SET body = 'Other' WHERE out_trade_no = 'r-1'$$),
               ($$UPDATE wxpay.orders SET last_error = 'x' WHERE out_trade_no = 'r-1'$$)) t(stmt);
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '4200000000000000000000000009', paid_at = now()
 WHERE out_trade_no = 'r-1';
SELECT pg_temp.rule(format('INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee) VALUES (''10000100'', %s)', v)) AS new_refund
  FROM (VALUES ($$'rf 1', 'r-1', 1, 1$$),
               ($$'rf-$$ || repeat('9', 62) || $$', 'r-1', 1, 1$$),
               ($$'rf-3', 'r-1', 0, 1$$),
               ($$'rf-4', 'r-1', 1, 0$$),
               ($$'rf-5', 'r-1', 2, 1$$),
               ($$'rf-$$ || repeat('9', 61) || $$', 'r-1', 1, 1$$)) t(v);
SELECT conrelid::regclass AS "table", count(*) AS check_constraints
  FROM pg_constraint WHERE contype = 'c' AND conrelid IN ('wxpay.orders'::regclass, 'wxpay.refunds'::regclass)
 GROUP BY 1;
\pset format aligned
ROLLBACK;
-- A restore (a superuser with check_function_bodies off) writes rows in
-- later states, without history rows; still only states of the
-- vocabulary, and a paid order only with its transaction.
SET check_function_bodies = off;
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state)
VALUES ('10000100', 'm-5', 'APP', 'Manual', 100, '1.2.3.4', 'CLOSED');
DO $$
DECLARE
	con text;
	msg text;
BEGIN
	FOR i IN 1..2 LOOP
		BEGIN
			INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state)
			VALUES ('10000100', 'm-6', 'APP', 'Manual', 100, '1.2.3.4', (ARRAY['BOGUS', 'SUCCESS'])[i]);
		EXCEPTION WHEN check_violation THEN
			GET STACKED DIAGNOSTICS con = CONSTRAINT_NAME, msg = MESSAGE_TEXT;
			RAISE NOTICE '%: %', con, msg;
		END;
	END LOOP;
END
$$;
RESET check_function_bodies;
SELECT out_trade_no, state FROM wxpay.orders WHERE out_trade_no IN ('m-5', 'm-6');
SELECT out_trade_no, old_state, new_state, source, transaction_id IS NOT NULL AS has_txn
  FROM wxpay.order_events ORDER BY id;
-- History is permanent
UPDATE wxpay.order_events SET source = 'notify';
DELETE FROM wxpay.order_events;
TRUNCATE wxpay.order_events;
TRUNCATE wxpay.orders CASCADE;
DELETE FROM wxpay.orders WHERE out_trade_no = 'm-2';
-- No PUBLIC access to the tables or to the secret-reading functions
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select
  FROM pg_class c WHERE c.relnamespace = 'wxpay'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1;
SELECT proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute, prosecdef,
       proconfig
  FROM pg_proc p WHERE proname IN ('wxpay_unifiedorder', 'wxpay_app_params', 'wxpay_jsapi_params', 'wxpay_sign')
 ORDER BY 1;
-- Per-merchant roles: a role granted EXECUTE acts only for merchants that
-- allow it (directly or through membership)
CREATE ROLE regress_wxpay_shop_a;
CREATE ROLE regress_wxpay_shop_b;
CREATE ROLE regress_wxpay_clerk IN ROLE regress_wxpay_shop_a;
GRANT EXECUTE ON FUNCTION wxpay_app_params(text, text) TO regress_wxpay_shop_a, regress_wxpay_shop_b, regress_wxpay_clerk;
UPDATE wxpay.merchants SET allowed_roles = '{regress_wxpay_shop_a}' WHERE mch_id = '10000100';
SET ROLE regress_wxpay_shop_a;
SELECT count(*) AS keys FROM jsonb_object_keys(wxpay_app_params('10000100', 'wx1'));
SET ROLE regress_wxpay_clerk;
SELECT count(*) AS keys FROM jsonb_object_keys(wxpay_app_params('10000100', 'wx1'));
SET ROLE regress_wxpay_shop_b;
SELECT wxpay_app_params('10000100', 'wx1');
-- b may still act for a merchant that does not restrict roles
SELECT count(*) AS keys FROM jsonb_object_keys(wxpay_app_params('10000200', 'wx1'));
RESET ROLE;
UPDATE wxpay.merchants SET allowed_roles = NULL WHERE mch_id = '10000100';
REVOKE ALL ON FUNCTION wxpay_app_params(text, text) FROM regress_wxpay_shop_a, regress_wxpay_shop_b, regress_wxpay_clerk;
DROP ROLE regress_wxpay_clerk, regress_wxpay_shop_a, regress_wxpay_shop_b;
