-- Signing: every vector from the API reference, verify, nonce, errors.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
\set key '192006250b4c09247ec02edce69f6a2d'
\set official '{"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000", "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}'

-- Official worked example (docs 安全规范), MD5 and HMAC-SHA256
SELECT wxpay_sign(:'official', :'key') = '9A0A8659F005D6984697E2CA0A9CF3B7' AS official_md5;
SELECT wxpay_sign(:'official', :'key', 'MD5') AS md5_explicit;
SELECT wxpay_sign(:'official', :'key', 'HMAC-SHA256') AS official_hmac;
-- Negative check: HMAC over stringA without &key= must not come out
SELECT wxpay_sign(:'official', :'key', 'HMAC-SHA256')
       <> 'F734F0E6B3509F9701F4A27CA72985EE10313DD0F96B71CAB42985D0F4F56376' AS key_suffix_in_hmac;

-- SDK vectors (wechatpy tests, mini-program paySign)
SELECT wxpay_sign('{"test1": "test1", "test2": "test2"}', :'key') AS wechatpy_md5,
       wxpay_sign('{"test1": "test1", "test2": "test2"}', :'key', 'HMAC-SHA256') AS wechatpy_hmac;
SELECT wxpay_sign('{"appId": "wxd678efh567hg6787", "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                   "package": "prepay_id=wx2017033010242291fcfe0db70013231072",
                   "signType": "MD5", "timeStamp": "1490840662"}',
                  'qazwsxedcrfvtgbyhnujmikolp111111') AS miniprogram_paysign;

-- Locally computed edge cases
SELECT wxpay_sign(:'official'::jsonb || '{"attach": ""}', :'key') AS empty_value_dropped,
       wxpay_sign(:'official'::jsonb || '{"sign": "WHATEVER"}', :'key') AS sign_ignored,
       wxpay_sign(:'official'::jsonb || '{"attach": null}', :'key') AS null_dropped;
SELECT wxpay_sign('{"appid": "wxd930ea5d5a258f4f", "body": "腾讯充值中心-QQ会员充值", "mch_id": "10000100",
                   "nonce_str": "ibuaiVcKdpRxkhJA", "out_trade_no": "20150806125346", "total_fee": "1"}', :'key') AS chinese_md5,
       wxpay_sign('{"appid": "wxd930ea5d5a258f4f", "body": "腾讯充值中心-QQ会员充值", "mch_id": "10000100",
                   "nonce_str": "ibuaiVcKdpRxkhJA", "out_trade_no": "20150806125346", "total_fee": "1"}', :'key', 'HMAC-SHA256') AS chinese_hmac;
-- A JSON number signs as its JSON text: total_fee 1 and "1" agree
SELECT wxpay_sign('{"appid": "wxd930ea5d5a258f4f", "body": "腾讯充值中心-QQ会员充值", "mch_id": "10000100",
                   "nonce_str": "ibuaiVcKdpRxkhJA", "out_trade_no": "20150806125346", "total_fee": 1}', :'key') AS number_as_text;
SELECT wxpay_sign('{"flag": true}', :'key') = wxpay_sign('{"flag": "true"}', :'key') AS boolean_as_text;
SELECT wxpay_sign('{"appid": "wxd930ea5d5a258f4f", "body": "test body", "mch_id": "10000100", "nonce_str": "ibuaiVcKdpRxkhJA"}', :'key') AS space_md5,
       wxpay_sign('{"appid": "wxd930ea5d5a258f4f", "body": "test body", "mch_id": "10000100", "nonce_str": "ibuaiVcKdpRxkhJA"}', :'key', 'HMAC-SHA256') AS space_hmac;
SELECT wxpay_sign(:'official'::jsonb || '{"sign_type": "HMAC-SHA256"}', :'key', 'HMAC-SHA256') AS sign_type_signed_hmac,
       wxpay_sign(:'official'::jsonb || '{"sign_type": "HMAC-SHA256"}', :'key', 'MD5') AS sign_type_signed_md5;
-- Second signatures (APP with Sign=WXPay, JSAPI MD5 and HMAC)
SELECT wxpay_sign('{"appid": "wxd930ea5d5a258f4f", "noncestr": "ibuaiVcKdpRxkhJA", "package": "Sign=WXPay",
                   "partnerid": "10000100", "prepayid": "wx201411101639507cbf6ffd8b0779950874",
                   "timestamp": "1412000000"}', :'key') AS app_sign;
SELECT wxpay_sign('{"appId": "wxd930ea5d5a258f4f", "nonceStr": "ibuaiVcKdpRxkhJA",
                   "package": "prepay_id=wx201411101639507cbf6ffd8b0779950874", "signType": "MD5",
                   "timeStamp": "1412000000"}', :'key') AS jsapi_md5,
       wxpay_sign('{"appId": "wxd930ea5d5a258f4f", "nonceStr": "ibuaiVcKdpRxkhJA",
                   "package": "prepay_id=wx201411101639507cbf6ffd8b0779950874", "signType": "HMAC-SHA256",
                   "timeStamp": "1412000000"}', :'key', 'HMAC-SHA256') AS jsapi_hmac;
-- Names sort bytewise (upper case first), not in jsonb's length-first key order
SELECT wxpay_sign('{"b": "1", "B": "2", "aa": "3"}', 'K') = upper(md5('B=2&aa=3&b=1&key=K')) AS bytewise_order;
SELECT wxpay_sign('{}', 'K') = upper(md5('key=K')) AS no_params;

-- Verify: with and without sign_type, HMAC inferred from length
SELECT wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}', :'key') AS md5_inferred,
       wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}', :'key', 'MD5') AS md5_explicit,
       wxpay_verify(:'official'::jsonb || '{"sign": "9a0a8659f005d6984697e2ca0a9cf3b7"}', :'key') AS lower_hex,
       wxpay_verify(:'official'::jsonb || '{"sign": "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"}', :'key') AS hmac_inferred,
       wxpay_verify(:'official'::jsonb || '{"sign": "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"}', :'key', 'HMAC-SHA256') AS hmac_explicit;
SELECT wxpay_verify(:'official'::jsonb || '{"sign_type": "HMAC-SHA256", "sign": "2C9DF1156522C0B2B03B4DBF3BCA5CACB602CBD5CA0F9E112458CF3E9855303B"}', :'key') AS by_sign_type_field;
-- Failures are false, not errors
SELECT wxpay_verify(:'official', :'key') AS no_sign,
       wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659F005D6984697E2CA0A9CF3B8"}', :'key') AS wrong_digit,
       wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659"}', :'key') AS too_short,
       wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}', 'otherkey') AS wrong_key,
       wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}', :'key', 'HMAC-SHA256') AS md5_sign_as_hmac,
       wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659F005D6984697E2CA0A9CF3B7", "sign_type": "SHA1"}', :'key') AS unknown_sign_type_field,
       wxpay_verify(:'official'::jsonb || '{"sign": "9A0A8659F005D6984697E2CA0A9CF3B7", "total_fee": "1"}', :'key') AS added_field,
       wxpay_verify('{"body": "test", "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}', :'key') AS removed_fields;
-- Dropping sign_type before verifying would break this one: it is signed
SELECT wxpay_verify(:'official'::jsonb || '{"sign_type": "MD5", "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}', :'key') AS sign_type_not_dropped;
SELECT wxpay_verify(NULL, :'key') IS NULL AS null_params, wxpay_verify('{}', NULL) IS NULL AS null_key;

-- Nonce: alphabet, length, randomness
SELECT length(wxpay_nonce()) AS default_len, length(wxpay_nonce(1)) AS len1, length(wxpay_nonce(32)) AS len32;
SELECT bool_and(n ~ '^[A-Za-z0-9]{32}$') AS alphabet, count(DISTINCT n) AS distinct_of_1000
  FROM (SELECT wxpay_nonce() AS n FROM generate_series(1, 1000)) s;
-- Every character of the alphabet shows up, none beyond it
SELECT count(DISTINCT c) AS distinct_chars
  FROM (SELECT regexp_split_to_table(string_agg(wxpay_nonce(), ''), '') AS c FROM generate_series(1, 200)) s;

-- Errors, each with its SQLSTATE
\set VERBOSITY sqlstate
SELECT wxpay_sign('{"a": {"b": 1}}', :'key');
SELECT wxpay_sign('{"a": [1, 2]}', :'key');
SELECT wxpay_sign('[1, 2]', :'key');
SELECT wxpay_sign(:'official', :'key', 'SHA1');
SELECT wxpay_sign(:'official', :'key', 'md5');
SELECT wxpay_sign(:'official', '');
SELECT wxpay_verify(:'official', :'key', 'SHA256');
SELECT wxpay_nonce(0);
SELECT wxpay_nonce(33);
\set VERBOSITY default
SELECT wxpay_sign('{"detail": {"goods": []}}', :'key');
SELECT wxpay_nonce(-1);
-- The key never appears in an error
SELECT wxpay_sign(:'official', 'secret-key-123', 'SHA1');
-- A wide object: past 32 keys jsonb stores every 32nd entry as an offset
-- rather than a length (the walk in params.c must follow both), with
-- numbers, booleans, nulls and empty strings among long values, and a
-- canonical string several times the 1024-byte staging buffer.  The
-- reference is the canonical string built in SQL.
WITH o AS (
  SELECT jsonb_object_agg(k, v) AS p
    FROM (SELECT 'f' || lpad(i::text, 2, '0') AS k,
                 CASE i % 5 WHEN 0 THEN to_jsonb(i * 1.5) WHEN 1 THEN to_jsonb(i % 2 = 0)
                            WHEN 2 THEN 'null'::jsonb WHEN 3 THEN to_jsonb(''::text)
                            ELSE to_jsonb(repeat(chr(65 + i % 26), 100 + 5 * i)) END AS v
            FROM generate_series(1, 70) AS i) s),
r AS (
  SELECT p, (SELECT string_agg(k || '=' || v, '&' ORDER BY k COLLATE "C")
               FROM jsonb_each_text(p) AS e(k, v) WHERE v <> '') || '&key=' || :'key' AS canon
    FROM o)
SELECT (SELECT count(*) FROM jsonb_object_keys(p)) AS keys, octet_length(canon) > 3 * 1024 AS several_stages,
       wxpay_sign(p, :'key') = upper(md5(canon)) AS wide_md5,
       wxpay_verify(p || jsonb_build_object('sign', upper(md5(canon))), :'key') AS wide_verified
  FROM r;
