-- API v3 bills without the network (t/028_v3_bills.pl has the round trip
-- through the simulator): a v3 merchant's wxpay_downloadbill and
-- wxpay_downloadfundflow ask /v3/bill/tradebill and /v3/bill/fundflowbill
-- (a v2 merchant's the same functions ask /pay/...); the arguments are
-- checked as for v2 (sql/bills.sql).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
\set doc_key `cat test/vectors/v3/doc_merchant_key.pem`
\set zero_cert `cat test/vectors/v3/serial_leading_zero_cert.pem`
-- Nothing listens on port 9: every call fails in transfer, naming its path.
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, protocol, cert_pem, key_pem, api_base)
VALUES ('1900007291', 'wxd678efh567hg6787', '192006250b4c09247ec02edce69f6a2d',
        'https://shop.example.com/wxpay/v3/notify', 'v3', :'zero_cert', :'doc_key', 'http://127.0.0.1:9'),
       ('1900000109', 'wx1', '192006250b4c09247ec02edce69f6a2d',
        'https://shop.example.com/wxpay/notify', 'v2', :'zero_cert', :'doc_key', 'http://127.0.0.1:9');
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES ('1900007291', 'a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb');
-- The SQLSTATE and message of a call, without curl's own words.
CREATE FUNCTION outcome(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'failed: .*', 'failed: ...');
END $$;
CREATE FUNCTION yesterday() RETURNS date LANGUAGE sql AS $$ SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date - 1 $$;
SELECT m AS merchant, f AS function, outcome(format('SELECT %s(%L, %L)', f, m, yesterday()))
  FROM unnest(ARRAY['1900007291', '1900000109']) m, unnest(ARRAY['wxpay_downloadbill', 'wxpay_downloadfundflow']) f
 ORDER BY 1, 2;
-- A v3 merchant without its APIv3 key row cannot ask.
DELETE FROM wxpay.merchant_v3;
SELECT outcome(format('SELECT wxpay_downloadbill(%L, %L)', '1900007291', yesterday()));
