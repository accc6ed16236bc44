-- Baseline (a) of the signing benchmark: wxpay_sign written the way one
-- would write it without the extension, in PL/pgSQL with the built-in md5()
-- and pgcrypto's hmac().  Same rules as wxpay_sign for flat objects: drop
-- "sign" and empty or null values, sort names bytewise (COLLATE "C"), join
-- name=value with '&', append "&key=KEY", upper-case hex.  bench.py checks
-- that it agrees with wxpay_sign before timing either.
CREATE SCHEMA IF NOT EXISTS bench;

CREATE OR REPLACE FUNCTION bench.plpgsql_sign(params jsonb, key text, sign_type text DEFAULT 'MD5')
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
	s text;
BEGIN
	SELECT string_agg(k || '=' || v, '&' ORDER BY k COLLATE "C") INTO s
	  FROM jsonb_each_text(params) AS e(k, v)
	 WHERE k <> 'sign' AND v <> '';
	s := COALESCE(s || '&', '') || 'key=' || key;
	IF sign_type = 'MD5' THEN
		RETURN upper(md5(s));
	ELSIF sign_type = 'HMAC-SHA256' THEN
		RETURN upper(encode(hmac(convert_to(s, 'UTF8'), convert_to(key, 'UTF8'), 'sha256'), 'hex'));
	END IF;
	RAISE EXCEPTION 'invalid sign_type "%"', sign_type;
END
$$;

-- The rows every variant signs: a unifiedorder request of ten fields, as
-- strings (as WeChat Pay's documentation writes them), different per row.
-- :rows is set by bench.py.
DROP TABLE IF EXISTS bench.sign_params, bench.sign_canon;
CREATE TABLE bench.sign_params AS
SELECT i AS id, jsonb_build_object(
	'appid', 'wx8888888888888888', 'mch_id', '1900000109',
	'nonce_str', md5(i::text), 'body', 'Bench Shop-Item ' || (i % 97),
	'out_trade_no', 'B' || lpad(i::text, 12, '0'), 'total_fee', (i % 9999 + 1)::text,
	'spbill_create_ip', '203.0.113.7', 'notify_url', 'https://shop.example.com/wxpay/notify',
	'trade_type', 'APP', 'time_expire', '20261127093000') AS p
  FROM generate_series(1, :rows) AS i;

-- Baseline (b), the floor: the canonical strings, already built.
CREATE TABLE bench.sign_canon AS
SELECT id, (SELECT string_agg(k || '=' || v, '&' ORDER BY k COLLATE "C")
			  FROM jsonb_each_text(p) AS e(k, v) WHERE k <> 'sign' AND v <> '')
		   || '&key=' || :'key' AS s
  FROM bench.sign_params;

VACUUM ANALYZE bench.sign_params, bench.sign_canon;
