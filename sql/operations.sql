-- Operations: merchant rows refused without echoing a secret.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
\set SHOW_CONTEXT never
\pset format unaligned

-- Every kind of bad merchant row: the error names the rule, the column and
-- the constraint, and never the API key or a PEM (no "Failing row contains")
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; hnt text; col text; con text;
BEGIN
	EXECUTE stmt;
	RETURN 'accepted';
EXCEPTION WHEN integrity_constraint_violation THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
		hnt = PG_EXCEPTION_HINT, col = COLUMN_NAME, con = CONSTRAINT_NAME;
	IF concat(msg, det, hnt) ~ 'SECRETSECRET|PRIVATE KEY' THEN
		RETURN 'LEAKED: ' || concat_ws(' | ', msg, det, hnt);
	END IF;
	RETURN concat_ws(' | ', st, col, con, msg, NULLIF(det, ''), NULLIF(hnt, ''));
END $$;
SELECT pg_temp.try(format('INSERT INTO wxpay.merchants (mch_id, appid, api_key%s) VALUES (%s)', cols, vals)) AS outcome
  FROM (VALUES
	('', $$NULL, 'wx1', 'SECRETSECRETSECRETSECRETSECRET42'$$),
	('', $$'m 1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42'$$),
	('', $$'m1', NULL, 'SECRETSECRETSECRETSECRETSECRET42'$$),
	('', $$'m1', 'wx/1', 'SECRETSECRETSECRETSECRETSECRET42'$$),
	('', $$'m1', 'wx1', NULL$$),
	('', $$'m1', 'wx1', 'SECRETSECRET-too-short'$$),
	('', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42 '$$),
	(', sign_type', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', 'SHA1'$$),
	(', sign_type', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', NULL$$),
	(', notify_url', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', 'https://shop.example.com/notify?x=1'$$),
	(', notify_url', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', 'ftp://shop.example.com/notify'$$),
	(', api_base', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', 'http://api.example.com'$$),
	(', api_base', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', 'https://api.mch.weixin.qq.com/'$$),
	(', api_base', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', NULL$$),
	(', key_pem', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', '-----BEGIN PRIVATE KEY-----'$$),
	(', cert_pem', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', 'CERT'$$),
	(', created_at', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', NULL$$),
	(', notify_url', $$'m1', 'wx1', 'SECRETSECRETSECRETSECRETSECRET42', 'https://shop.example.com/wxpay/notify'$$)
  ) AS t(cols, vals);
-- The same rules hold for UPDATE
SELECT pg_temp.try($$UPDATE wxpay.merchants SET notify_url = 'https://shop.example.com/notify?x=1' WHERE mch_id = 'm1'$$);
SELECT pg_temp.try($$UPDATE wxpay.merchants SET api_key = 'SECRETSECRET' WHERE mch_id = 'm1'$$);
SELECT pg_temp.try($$UPDATE wxpay.merchants SET key_pem = '-----BEGIN PRIVATE KEY-----' WHERE mch_id = 'm1'$$);
SELECT pg_temp.try($$UPDATE wxpay.merchants SET appid = NULL WHERE mch_id = 'm1'$$);
-- A duplicate is PostgreSQL's own unique violation: its detail shows only the key column
SELECT pg_temp.try(format('INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES (''m1'', ''wx1'', %L)', 'SECRETSECRETSECRETSECRETSECRET42'));
SELECT mch_id, appid, notify_url FROM wxpay.merchants;
-- No CHECK constraint is left on the table to echo a row
SELECT conname FROM pg_constraint WHERE conrelid = 'wxpay.merchants'::regclass AND contype = 'c';

-- The audit trail: an operator may be granted UPDATE on orders and refunds
-- without any right on their history, and cannot write history even when
-- granted INSERT on it
\pset format aligned
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base)
VALUES ('10000100', 'wxd930ea5d5a258f4f', '192006250b4c09247ec02edce69f6a2d', 'http://127.0.0.1:9');
CREATE ROLE regress_wxpay_operator;
GRANT USAGE ON SCHEMA wxpay TO regress_wxpay_operator;
GRANT SELECT, INSERT, UPDATE ON wxpay.orders, wxpay.refunds TO regress_wxpay_operator;
GRANT SELECT ON wxpay.order_events, wxpay.refund_events TO regress_wxpay_operator;
SET ROLE regress_wxpay_operator;
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 'a-1', 'APP', 'Goods', 100, '1.2.3.4'), ('10000100', 'a-2', 'APP', 'Goods', 100, '1.2.3.4');
UPDATE wxpay.orders SET state = 'CLOSED' WHERE out_trade_no = 'a-1';
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '4200000000000000000000000001', paid_at = now()
 WHERE out_trade_no = 'a-2';
-- Not even with check_function_bodies off, as a restore has it: that is for superusers
SET check_function_bodies = off;
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state, transaction_id, paid_at)
VALUES ('10000100', 'a-3', 'APP', 'Goods', 100, '1.2.3.4', 'SUCCESS', '4200000000000000000000000003', now());
RESET check_function_bodies;
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee)
VALUES ('10000100', 'r-1', 'a-2', 10, 100);
UPDATE wxpay.refunds SET state = 'SUCCESS', refund_id = '5030000001' WHERE out_refund_no = 'r-1';
SELECT out_trade_no, old_state, new_state, source, db_user, created_at <= clock_timestamp() AS timed
  FROM wxpay.order_events ORDER BY id;
SELECT out_refund_no, old_state, new_state, source, db_user FROM wxpay.refund_events ORDER BY id;
RESET ROLE;
-- Granted INSERT on the history, an operator still cannot write it
GRANT INSERT ON wxpay.order_events, wxpay.refund_events, wxpay.notifications TO regress_wxpay_operator;
SET ROLE regress_wxpay_operator;
INSERT INTO wxpay.order_events (mch_id, out_trade_no, old_state, new_state, source)
VALUES ('10000100', 'a-1', 'NOTPAY', 'SUCCESS', 'notify');
INSERT INTO wxpay.refund_events (mch_id, out_refund_no, old_state, new_state, source)
VALUES ('10000100', 'r-1', 'PROCESSING', 'SUCCESS', 'query');
INSERT INTO wxpay.notifications (kind, body, outcome) VALUES ('pay', '<xml/>', 'accepted');
RESET ROLE;
-- A restore (a superuser with check_function_bodies off) writes a row in
-- any state and no history for it; the same superuser otherwise cannot
SET check_function_bodies = off;
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state, transaction_id, paid_at)
VALUES ('10000100', 'a-4', 'APP', 'Goods', 100, '1.2.3.4', 'SUCCESS', '4200000000000000000000000004', now());
RESET check_function_bodies;
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state, transaction_id, paid_at)
VALUES ('10000100', 'a-5', 'APP', 'Goods', 100, '1.2.3.4', 'SUCCESS', '4200000000000000000000000005', now());
SELECT out_trade_no, state, (SELECT count(*) FROM wxpay.order_events e WHERE e.out_trade_no = o.out_trade_no) AS events
  FROM wxpay.orders o ORDER BY out_trade_no;
REVOKE ALL ON wxpay.orders, wxpay.refunds, wxpay.order_events, wxpay.refund_events, wxpay.notifications FROM regress_wxpay_operator;
REVOKE ALL ON SCHEMA wxpay FROM regress_wxpay_operator;
DROP ROLE regress_wxpay_operator;

-- Row security: two application roles, each allowed one merchant, see and
-- change only that merchant's rows, in every table and view; a merchant
-- without allowed_roles is everybody's
CREATE ROLE regress_wxpay_shop_a;
CREATE ROLE regress_wxpay_shop_b;
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base, allowed_roles) VALUES
	('m-a', 'wxa', '192006250b4c09247ec02edce69f6a2d', 'http://127.0.0.1:9', '{regress_wxpay_shop_a}'),
	('m-b', 'wxb', '192006250b4c09247ec02edce69f6a2d', 'http://127.0.0.1:9', '{regress_wxpay_shop_b}');
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
SELECT m, m || suffix, 'APP', 'Goods', 100, '1.2.3.4' FROM unnest('{m-a,m-b}'::text[]) m, unnest('{-order,-pending}'::text[]) suffix;
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '42' || md5(mch_id), paid_at = now() WHERE out_trade_no LIKE 'm-_-order';
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee)
SELECT m, m || '-refund', m || '-order', 10, 100 FROM unnest('{m-a,m-b}'::text[]) m;
INSERT INTO wxpay.notifications (kind, body, mch_id, out_trade_no, outcome)
SELECT 'pay', '<xml/>', m, m || '-order', 'accepted' FROM unnest('{m-a,m-b}'::text[]) m;
SELECT wxpay_handle_notify('not xml at all');
GRANT USAGE ON SCHEMA wxpay TO regress_wxpay_shop_a, regress_wxpay_shop_b;
GRANT SELECT, INSERT, UPDATE ON wxpay.orders, wxpay.refunds TO regress_wxpay_shop_a, regress_wxpay_shop_b;
GRANT SELECT ON wxpay.order_events, wxpay.refund_events, wxpay.notifications, wxpay.worker_status,
	wxpay.merchant_info, wxpay.unmatched_payments TO regress_wxpay_shop_a, regress_wxpay_shop_b;
CREATE FUNCTION pg_temp.visible() RETURNS TABLE (relation text, merchants text) LANGUAGE sql AS $$
	SELECT 'orders', string_agg(DISTINCT mch_id, ',') FROM wxpay.orders
	UNION ALL SELECT 'order_events', string_agg(DISTINCT mch_id, ',') FROM wxpay.order_events
	UNION ALL SELECT 'refunds', string_agg(DISTINCT mch_id, ',') FROM wxpay.refunds
	UNION ALL SELECT 'refund_events', string_agg(DISTINCT mch_id, ',') FROM wxpay.refund_events
	UNION ALL SELECT 'notifications', string_agg(DISTINCT coalesce(mch_id, '(none)'), ',') FROM wxpay.notifications
	UNION ALL SELECT 'worker_status', string_agg(DISTINCT mch_id, ',') FROM wxpay.worker_status
	UNION ALL SELECT 'merchant_info', string_agg(DISTINCT mch_id, ',') FROM wxpay.merchant_info
$$;
SELECT * FROM pg_temp.visible();
SET ROLE regress_wxpay_shop_a;
SELECT * FROM pg_temp.visible();
UPDATE wxpay.orders SET last_error = 'touched' WHERE mch_id = 'm-b';
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('m-b', 'sneaky', 'APP', 'Goods', 1, '1.2.3.4');
RESET ROLE;
SET ROLE regress_wxpay_shop_b;
SELECT * FROM pg_temp.visible();
RESET ROLE;
SELECT count(*) AS touched FROM wxpay.orders WHERE last_error = 'touched';

-- Roles are kept by OID: a dropped role's entry matches nobody, and a new
-- role created under its name inherits nothing
DROP OWNED BY regress_wxpay_shop_a;
DROP ROLE regress_wxpay_shop_a;
CREATE ROLE regress_wxpay_shop_a;
GRANT USAGE ON SCHEMA wxpay TO regress_wxpay_shop_a;
GRANT SELECT ON wxpay.orders, wxpay.merchant_info TO regress_wxpay_shop_a;
GRANT EXECUTE ON FUNCTION wxpay_app_params(text, text) TO regress_wxpay_shop_a;
SELECT mch_id, allowed_roles, allowed_role_ids[1]::text ~ '^[0-9]+$' AS dangling FROM wxpay.merchant_info WHERE mch_id = 'm-a';
SET ROLE regress_wxpay_shop_a;
SELECT count(*) AS orders_of_m_a_seen FROM wxpay.orders WHERE mch_id = 'm-a';
SELECT wxpay_app_params('m-a', 'wx1');
RESET ROLE;
-- Writing allowed_roles again resolves it again: that is a decision, not an accident
UPDATE wxpay.merchants SET notify_url = 'https://shop.example.com/n' WHERE mch_id = 'm-a';
SET ROLE regress_wxpay_shop_a;
SELECT count(*) AS orders_of_m_a_seen_after_other_update FROM wxpay.orders WHERE mch_id = 'm-a';
RESET ROLE;
UPDATE wxpay.merchants SET allowed_roles = '{regress_wxpay_shop_a}' WHERE mch_id = 'm-a';
SET ROLE regress_wxpay_shop_a;
SELECT count(*) AS orders_of_m_a_seen_after_regrant FROM wxpay.orders WHERE mch_id = 'm-a';
RESET ROLE;
-- Roles that do not exist, and the OIDs set by hand, are refused
UPDATE wxpay.merchants SET allowed_roles = '{regress_wxpay_nobody}' WHERE mch_id = 'm-a';
UPDATE wxpay.merchants SET allowed_role_oids = '{10}' WHERE mch_id = 'm-a';
-- An empty list allows nobody
UPDATE wxpay.merchants SET allowed_roles = '{}' WHERE mch_id = 'm-a';
SET ROLE regress_wxpay_shop_a;
SELECT count(*) AS orders_of_m_a_seen_with_empty_list FROM wxpay.orders WHERE mch_id = 'm-a';
RESET ROLE;
DROP OWNED BY regress_wxpay_shop_a, regress_wxpay_shop_b;
DROP ROLE regress_wxpay_shop_a, regress_wxpay_shop_b;
