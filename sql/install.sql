-- Installation: UTF8 only, functions in the chosen schema, tables in wxpay.
-- Like every file, it starts without the extension, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
RESET client_min_messages;
SELECT current_database() AS regress_db \gset
CREATE DATABASE wxpay_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c wxpay_latin1
CREATE EXTENSION wxpay;
\c :regress_db
DROP DATABASE wxpay_latin1;

-- Functions follow CREATE EXTENSION's schema; the tables' schema is fixed
CREATE SCHEMA pay;
CREATE EXTENSION wxpay SCHEMA pay;
SELECT p.proname, n.nspname
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname IN ('wxpay_sign', 'wxpay_verify', 'wxpay_nonce', 'wxpay_to_xml', 'wxpay_from_xml')
 ORDER BY 1;
SELECT pay.wxpay_sign('{"a": "1"}', 'k');
DROP EXTENSION wxpay;
SELECT count(*) AS leftover_schema FROM pg_namespace WHERE nspname = 'wxpay';
DROP SCHEMA pay;

CREATE EXTENSION wxpay;
-- The wxpay schema is not open to PUBLIC
SELECT has_schema_privilege('public', 'wxpay', 'USAGE') AS public_usage;
-- Volatility and strictness as documented
SELECT proname, provolatile, proisstrict, proparallel
  FROM pg_proc WHERE proname IN ('wxpay_sign', 'wxpay_verify', 'wxpay_nonce', 'wxpay_to_xml', 'wxpay_from_xml')
 ORDER BY 1;
