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
