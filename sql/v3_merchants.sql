-- API v3 merchant configuration: the protocol column, wxpay.merchant_v3
-- (APIv3 key, certificate serial derived from cert_pem), WeChat Pay's
-- verification keys, and that no message or constraint failure shows a
-- secret.  The keys are the test vectors of test/vectors/v3.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
\set doc_key `cat test/vectors/v3/doc_merchant_key.pem`
\set doc_pub `cat test/vectors/v3/doc_merchant_pub.pem`
\set zero_cert `cat test/vectors/v3/serial_leading_zero_cert.pem`
\set java_key `cat test/vectors/v3/java_merchant_key.pem`
\set java_cert `cat test/vectors/v3/java_merchant_cert.pem`
\set wechatpay_pub `cat test/vectors/v3/doc_wechatpay_pub.pem`
\set go_cert `cat test/vectors/v3/go_notify_cert.pem`
\set small_key `cat test/vectors/v3/rsa1024_key.pem`
-- What each PEM is, and certificate serials as WeChat Pay shows them.
SELECT wxpay.pem_kind(:'doc_key') AS doc_key, wxpay.pem_kind(:'doc_pub') AS doc_pub,
       wxpay.pem_kind(:'zero_cert') AS zero_cert, wxpay.pem_kind(:'small_key') AS small_key,
       wxpay.pem_kind('garbage') AS garbage;
SELECT wxpay.pem_certificate_serial(:'zero_cert') AS leading_zero_kept,
       wxpay.pem_certificate_serial(:'java_cert') AS java,
       wxpay.pem_certificate_serial(:'doc_pub') AS not_a_certificate;
SELECT wxpay.pem_keys_match(:'doc_key', :'zero_cert') AS pair, wxpay.pem_keys_match(:'doc_key', :'java_cert') AS other,
       wxpay.pem_keys_match(:'doc_pub', :'zero_cert') AS public_as_private;
-- A v3 merchant: apiclient_key.pem and apiclient_cert.pem, its APIv3 key;
-- the serial comes from the certificate, with its leading zero.
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, protocol, cert_pem, key_pem)
VALUES ('1900007291', 'wxd678efh567hg6787', '192006250b4c09247ec02edce69f6a2d',
        'https://shop.example.com/wxpay/v3/notify', 'v3', :'zero_cert', :'doc_key');
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key, serial_no)
VALUES ('1900007291', 'a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb', NULL);
SELECT mch_id, serial_no FROM wxpay.merchant_v3;
SELECT mch_id, protocol FROM wxpay.merchant_info;
-- Refusals name the merchant and the column, never a secret's value; no
-- "Failing row contains" detail ever shows the row.
\set VERBOSITY terse
UPDATE wxpay.merchant_v3 SET apiv3_key = 'SECRET-31-CHARACTERS-SECRET-SEC';
UPDATE wxpay.merchant_v3 SET apiv3_key = NULL;
UPDATE wxpay.merchant_v3 SET apiv3_key = 'SECRET-33-CHARACTERS-SECRET-SECRE';
UPDATE wxpay.merchant_v3 SET serial_no = '0a1b2c3d4e5f60718293a4b5c6d7e8f901234567' RETURNING serial_no;
UPDATE wxpay.merchant_v3 SET serial_no = '5F1C72E2A8931B72A2E13AF8DEE92471EB397115';
UPDATE wxpay.merchant_v3 SET serial_no = 'not hex';
UPDATE wxpay.merchants SET protocol = 'v4' WHERE mch_id = '1900007291';
UPDATE wxpay.merchants SET protocol = NULL WHERE mch_id = '1900007291';
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES (NULL, 'SECRETSECRETSECRETSECRETSECRET32');
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES ('nobody', 'SECRETSECRETSECRETSECRETSECRET32');
-- The private key must be there, usable, and belong to the certificate.
INSERT INTO wxpay.merchants (mch_id, appid, api_key, protocol)
VALUES ('1900000001', 'wx0001', '192006250b4c09247ec02edce69f6a2d', 'v3');
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key, serial_no) VALUES ('1900000001', 'SECRETSECRETSECRETSECRETSECRET32', 'AB');
UPDATE wxpay.merchants SET cert_pem = :'java_cert', key_pem = :'doc_key' WHERE mch_id = '1900000001';
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES ('1900000001', 'SECRETSECRETSECRETSECRETSECRET32');
UPDATE wxpay.merchants SET cert_pem = :'java_cert', key_pem = :'small_key' WHERE mch_id = '1900000001';
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES ('1900000001', 'SECRETSECRETSECRETSECRETSECRET32');
UPDATE wxpay.merchants SET cert_pem = :'java_cert', key_pem = :'java_key' WHERE mch_id = '1900000001';
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key, serial_no)
VALUES ('1900000001', 'SECRETSECRETSECRETSECRETSECRET32', '0A1B2C3D4E5F60718293A4B5C6D7E8F901234567');
-- A serial given is the certificate's, kept in upper case.
INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key, serial_no)
VALUES ('1900000001', 'SECRETSECRETSECRETSECRETSECRET32', '5f1c72e2a8931b72a2e13af8dee92471eb397115')
RETURNING serial_no;
-- A new key pair on wxpay.merchants is checked like the merchant_v3 row,
-- and a renewed certificate brings its serial along.
UPDATE wxpay.merchants SET key_pem = :'doc_key' WHERE mch_id = '1900000001';
UPDATE wxpay.merchants SET cert_pem = :'zero_cert' WHERE mch_id = '1900000001';
UPDATE wxpay.merchants SET cert_pem = :'zero_cert', key_pem = :'doc_key' WHERE mch_id = '1900000001';
SELECT mch_id, serial_no FROM wxpay.merchant_v3 WHERE mch_id = '1900000001';
UPDATE wxpay.merchants SET cert_pem = :'java_cert', key_pem = :'java_key' WHERE mch_id = '1900000001';
SELECT mch_id, serial_no FROM wxpay.merchant_v3 WHERE mch_id = '1900000001';
-- WeChat Pay's keys: a public key under its id, certificates by serial.
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem)
VALUES ('1900007291', 'PUB_KEY_ID_0000000000000024101100397200000006', :'wechatpay_pub')
RETURNING serial, kind, source;
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem, expires_at) VALUES ('1900007291', NULL, :'go_cert', 'infinity')
RETURNING serial, kind, effective_at, expires_at;
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem, source) VALUES ('1900007291', 'f5a0', :'zero_cert', 'download');
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem) VALUES ('1900007291', '0a1b2c3d4e5f60718293a4b5c6d7e8f901234567', :'zero_cert')
RETURNING serial, kind, effective_at, expires_at;
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem) VALUES ('1900007291', 'PUB_KEY_ID_0000000000000024101100397200000007', :'doc_pub');
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem) VALUES ('1900007291', 'D7CE59D1F522D701', :'doc_pub');
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem) VALUES ('1900007291', 'PUB_KEY_ID_12', :'doc_key');
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem) VALUES ('1900007291', 'PUB_KEY_ID_12', 'garbage');
INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem, source) VALUES ('1900007291', 'PUB_KEY_ID_12', :'doc_pub', 'web');
SELECT mch_id, serial, kind FROM wxpay.wechatpay_keys ORDER BY serial;
\set VERBOSITY default
-- API v2-only calls say which call a v3 merchant cannot make, and what to do.
SELECT wxpay_micropay('1900007291', 'mp-v3-1', 100, 'x', '192.0.2.10', '130012345678901234');
SELECT wxpay_reverse('1900007291', 'mp-v3-1');
SELECT count(*) AS recorded FROM wxpay.orders WHERE out_trade_no = 'mp-v3-1';
-- Nothing of this is PUBLIC's.
CREATE ROLE regress_wxpay_v3_nobody;
SET ROLE regress_wxpay_v3_nobody;
SELECT count(*) FROM wxpay.merchant_v3;
SELECT count(*) FROM wxpay.wechatpay_keys;
SELECT wxpay.pem_kind('x');
RESET ROLE;
DROP ROLE regress_wxpay_v3_nobody;
SELECT count(*) AS public_grants FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'wxpay'::regnamespace AND c.relname IN ('merchant_v3', 'wechatpay_keys') AND a.grantee = 0;
