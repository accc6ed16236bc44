/* wxpay--1.0.sql: pg_wxpay install script */

\echo Use "CREATE EXTENSION wxpay" to load this file. \quit

DO $$
BEGIN
	IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
		RAISE EXCEPTION 'wxpay requires a UTF8 database, not %',
			pg_catalog.getdatabaseencoding()
			USING ERRCODE = '55000',
			HINT = 'WeChat Pay signs UTF-8 bytes; create the database with ENCODING ''UTF8''.';
	END IF;
END
$$;

-- Tables live in a fixed schema, like pg_cron's cron.job; functions go to
-- the schema given to CREATE EXTENSION.
CREATE SCHEMA wxpay;
REVOKE ALL ON SCHEMA wxpay FROM PUBLIC;
COMMENT ON SCHEMA wxpay IS 'pg_wxpay: merchants, orders, notifications, refunds and their history';

----------------------------------------------------------------------
-- Signing and XML: pure functions over jsonb parameter objects
----------------------------------------------------------------------

CREATE FUNCTION @extschema@.wxpay_sign(params jsonb, key text, sign_type text DEFAULT 'MD5')
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_sign'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_sign(jsonb, text, text) IS
'WeChat Pay v2 signature of a flat parameter object: MD5 or HMAC-SHA256, upper-case hex';

CREATE FUNCTION @extschema@.wxpay_verify(params jsonb, key text, sign_type text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'wxpay_verify'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_verify(jsonb, text, text) IS
'whether params->>''sign'' is the signature of params; algorithm from the argument, sign_type or the sign''s length';

CREATE FUNCTION @extschema@.wxpay_nonce(len integer DEFAULT 32)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_nonce'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_nonce(integer) IS
'random [A-Za-z0-9] string from pg_strong_random, for nonce_str';

CREATE FUNCTION @extschema@.wxpay_to_xml(params jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_to_xml'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_to_xml(jsonb) IS
'<xml> document of a flat parameter object, values in CDATA';

CREATE FUNCTION @extschema@.wxpay_from_xml(body text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_from_xml'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_from_xml(text) IS
'flat object of the root element''s children; refuses DOCTYPE, entities and bodies over 1 MB';
