-- Refunds without the network: req_info decryption (the wechatpy vector
-- and the short local one), refund notifications, the refund state
-- machine, and the local checks of wxpay_refund.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
-- A notification handled: the reply's return_code, and what was recorded.
CREATE FUNCTION pg_temp.refund_notify(body text) RETURNS TABLE (reply text, outcome text, reason text)
LANGUAGE plpgsql AS $$
BEGIN
	reply := wxpay_from_xml(wxpay_handle_refund_notify(body)) ->> 'return_code';
	SELECT n.outcome, n.reason INTO outcome, reason FROM wxpay.notifications n ORDER BY n.id DESC LIMIT 1;
	RETURN NEXT;
END
$$;
\set wechatpy_req_info '51A27s9LxbaEv52nBOrqa0FCs3HVIM31Wc3BpNqSCP5MQlS8HL1Vl7mZ21043B7PZy7adtOZGtZv44lGl0U8JXlVFL4Ltxsw6+pACjZBB0Qi1LUDjFlP2IyTxYX4eC57kxnCphDdIyRkU67kOWW/HN/efggTUlaPJkoL5kVe9Y1MZF55IHR4lwGI7WtVLtxATX1tkAVZF+/ri0WlPXo9+GkqeB2/id6Ozw09Tqp8C/TKbmKBpRhTCRU2TzfQoLa6fjbgETFHJ795aEMyUZPQYbbsz6U9Rj9lUzEh8+Oc8KYTXa9zVk+nnFr82+yjffb3d36ylTe0y/VmYf90rf9cbiJQdM00zZ8Qa99SlMTs2wjOO4Mi4Btlg1PebsLF8TkqbSZkRJDGs61UunUB8Km1b/VeBxXuv4D3H7DiVZ9Fj7lq2j07zFDpxxlhhen7kZvMWWO3lrfFpA9c4eFOqfF9SxcU9nBmHfDD1g/dsrMl6+a71xQHJ/gn80fZOefUBv92ggqutsuJ4gd4OqkmO0XUs8e4XQyLpra+LvpmahsU5lBIZuQcMq3FHrqe8hXTfp3+3qym2wGfvPI75jx41VZwmBQy9izB1Id+A5lUeXC5QJy+ryDu/dWkhB+aMjkElaI/Epmcc/IEPaI73W6Hc58hNednOM536rPnn+GDc98PdGszpLTjmaZSu8dtqwPaym66yRqFQowzFoBbooik57iHUFBCeWya7XcXYL9WKhRF3uIZM+Kfv9/Zs2pF+w9/EJpltuzPpT1GP2VTMSHz45zwphFlS2lX8wHyZ+k9n2dptzQqpOCPedt5iQAmAe1oNQMxNdPDH9g68x9UzWD1kfK/dPO+3NPAh0XG+io4x15fIknNf7JLjpAuWicMMzCdwC4hhqeYOzQ+pC9f2xJXi5YViNKIZY69oO8eoHYRitLZrHLgx3oB2zimmqX6BI+DMklKAzAqqgGmbFxcVTvxZB6cMCx+H7TTWXnjAG+6A3SrCcxg0l5+UB93pkAYR7SVJ+VaZoiBqlqnZvb7IM17n9XaaFntlzvbbFCIa7OnOQb5Lvw='

-- Decryption vectors
SELECT wxpay_refund_decrypt('WBzGpzQuNpcFxIlFjUUD9Cu8k64/SIERgxT2leZdH4LL2pb+JPMCit+b2zIy2yIkHKW7OavuV/ysmp419fOa//sNqQ8QZ/QqGG7L7Ft26zOJT8KKGtIQhQk/aqUrb9asj3LpNFyDkPu7x8bcK2r8Fg==',
                            '192006250b4c09247ec02edce69f6a2d') AS local_vector;
SELECT jsonb_pretty(wxpay_refund_decrypt(:'wechatpy_req_info', 'OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk')) AS wechatpy_vector;
-- The same base64 wrapped at 76 columns, as MIME encoders write it
SELECT wxpay_refund_decrypt(regexp_replace(:'wechatpy_req_info', '(.{76})', E'\\1\r\n', 'g'), 'OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk')
     = wxpay_refund_decrypt(:'wechatpy_req_info', 'OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk') AS wrapped_base64_same;
\set VERBOSITY sqlstate
SELECT wxpay_refund_decrypt(:'wechatpy_req_info', '192006250b4c09247ec02edce69f6a2d');
SELECT wxpay_refund_decrypt('not base64', 'OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk');
\set VERBOSITY default
SELECT wxpay_refund_decrypt(:'wechatpy_req_info', '192006250b4c09247ec02edce69f6a2d');

-- The wechatpy refund notification, end to end
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base)
VALUES ('12345678', 'wx4f4bc4dec97d474b', 'OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk', 'http://127.0.0.1:9');
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('12345678', '2020010418301551404339261814', 'APP', 'Refunded', 1, '1.2.3.4');
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '4200000483202001042069747825', paid_at = now()
 WHERE out_trade_no = '2020010418301551404339261814';
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee)
VALUES ('12345678', '1234', '2020010418301551404339261814', 1, 1);
CREATE FUNCTION pg_temp.refund_body(req_info text, mch_id text DEFAULT '12345678', appid text DEFAULT 'wx4f4bc4dec97d474b')
RETURNS text LANGUAGE sql AS $$
	SELECT wxpay_to_xml(jsonb_build_object('return_code', 'SUCCESS', 'appid', appid, 'mch_id', mch_id,
		'nonce_str', 'c1c237efc87ee8dfcb3f9124b63a4d94', 'req_info', req_info)) $$;

-- Rejections first: the refund stays PROCESSING
SELECT * FROM pg_temp.refund_notify('garbage');
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(:'wechatpy_req_info', '99999999'));
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(:'wechatpy_req_info', '12345678', 'wxother'));
-- Tampered ciphertext: a changed last block breaks the padding
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(overlay(:'wechatpy_req_info' placing 'AAAA' from 1061 for 4)));
-- Tampered first block: decrypts to garbage that is not XML
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(overlay(:'wechatpy_req_info' placing 'AAAA' from 1 for 4)));
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body('WBzGpzQuNpcFxIlFjUUD9Cu8k64/SIERgxT2leZdH4LL2pb+JPMCit+b2zIy2yIkHKW7OavuV/ysmp419fOa//sNqQ8QZ/QqGG7L7Ft26zOJT8KKGtIQhQk/aqUrb9asj3LpNFyDkPu7x8bcK2r8Fg=='));
-- Decrypts under the key, but names a refund this merchant does not have
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base)
VALUES ('12345679', 'wx4f4bc4dec97d474b', 'OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk', 'http://127.0.0.1:9');
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(:'wechatpy_req_info', '12345679'));
SELECT state FROM wxpay.refunds WHERE out_refund_no = '1234';

SET timezone = 'UTC';
-- The genuine one is a trigger, not proof: the refund waits for the
-- worker's refundquery (scheduled now) and does not move on its word
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(:'wechatpy_req_info'));
SELECT state, refund_id, success_time, next_query_at <= now() AS query_due FROM wxpay.refunds WHERE out_refund_no = '1234';
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(:'wechatpy_req_info'));
-- Once settled (as a refundquery answer would settle it), repeats are duplicates
UPDATE wxpay.refunds SET state = 'SUCCESS', refund_id = '50300103182020010413419046597' WHERE out_refund_no = '1234';
SELECT * FROM pg_temp.refund_notify(pg_temp.refund_body(:'wechatpy_req_info'));
SELECT kind, outcome, reason, out_refund_no, out_trade_no FROM wxpay.notifications WHERE kind = 'refund' ORDER BY id;
SELECT old_state, new_state, source, refund_id FROM wxpay.refund_events ORDER BY id;

-- The refund state machine for hand-written statements
UPDATE wxpay.refunds SET state = 'PROCESSING' WHERE out_refund_no = '1234';
UPDATE wxpay.refunds SET refund_fee = 2 WHERE out_refund_no = '1234';
UPDATE wxpay.refunds SET refund_id = 'other' WHERE out_refund_no = '1234';
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee, state)
VALUES ('12345678', '1235', '2020010418301551404339261814', 1, 1, 'SUCCESS');
DELETE FROM wxpay.refund_events;

-- Local checks of wxpay_refund, before any request
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('12345678', 'unpaid-1', 'APP', 'Unpaid', 100, '1.2.3.4');
\set VERBOSITY sqlstate
SELECT wxpay_refund('12345678', '2020010418301551404339261814', 'r-1', 0);
SELECT wxpay_refund('12345678', '2020010418301551404339261814', 'r 1', 1);
SELECT wxpay_refund('12345678', '2020010418301551404339261814', 'r-1', 1, '{"reason": "x"}');
SELECT wxpay_refund('12345678', '2020010418301551404339261814', 'r-1', 1, '{"refund_account": "MINE"}');
SELECT wxpay_refund('12345678', '2020010418301551404339261814', NULL, 1);
SELECT wxpay_refund('nobody', '2020010418301551404339261814', 'r-1', 1);
\set VERBOSITY default
SELECT wxpay_refund('12345678', '2020010418301551404339261814', 'r-1', 1);
UPDATE wxpay.merchants SET cert_pem = 'cert', key_pem = 'key' WHERE mch_id = '12345678';
SELECT wxpay_refund('12345678', 'unpaid-1', 'r-1', 1);
SELECT wxpay_refund('12345678', 'no-such-order', 'r-1', 1);
-- Already fully refunded by refund 1234: nothing is left
SELECT wxpay_refund('12345678', '2020010418301551404339261814', 'r-2', 1);
-- Refund 1234 again with other parameters
SELECT wxpay_refund('12345678', '2020010418301551404339261814', '1234', 1, '{"refund_desc": "other"}');
SELECT count(*) AS refunds FROM wxpay.refunds;
