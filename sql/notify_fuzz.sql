-- Nothing an outsider sends raises, is lost, or pays an order: thousands
-- of malformed bodies (multi-byte names, lengths around every limit) and
-- random mutations of genuine payment and refund notifications.  Every
-- call must answer without an ERROR and leave exactly one row.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
\set key '192006250b4c09247ec02edce69f6a2d'
\set wechatpy_req_info '51A27s9LxbaEv52nBOrqa0FCs3HVIM31Wc3BpNqSCP5MQlS8HL1Vl7mZ21043B7PZy7adtOZGtZv44lGl0U8JXlVFL4Ltxsw6+pACjZBB0Qi1LUDjFlP2IyTxYX4eC57kxnCphDdIyRkU67kOWW/HN/efggTUlaPJkoL5kVe9Y1MZF55IHR4lwGI7WtVLtxATX1tkAVZF+/ri0WlPXo9+GkqeB2/id6Ozw09Tqp8C/TKbmKBpRhTCRU2TzfQoLa6fjbgETFHJ795aEMyUZPQYbbsz6U9Rj9lUzEh8+Oc8KYTXa9zVk+nnFr82+yjffb3d36ylTe0y/VmYf90rf9cbiJQdM00zZ8Qa99SlMTs2wjOO4Mi4Btlg1PebsLF8TkqbSZkRJDGs61UunUB8Km1b/VeBxXuv4D3H7DiVZ9Fj7lq2j07zFDpxxlhhen7kZvMWWO3lrfFpA9c4eFOqfF9SxcU9nBmHfDD1g/dsrMl6+a71xQHJ/gn80fZOefUBv92ggqutsuJ4gd4OqkmO0XUs8e4XQyLpra+LvpmahsU5lBIZuQcMq3FHrqe8hXTfp3+3qym2wGfvPI75jx41VZwmBQy9izB1Id+A5lUeXC5QJy+ryDu/dWkhB+aMjkElaI/Epmcc/IEPaI73W6Hc58hNednOM536rPnn+GDc98PdGszpLTjmaZSu8dtqwPaym66yRqFQowzFoBbooik57iHUFBCeWya7XcXYL9WKhRF3uIZM+Kfv9/Zs2pF+w9/EJpltuzPpT1GP2VTMSHz45zwphFlS2lX8wHyZ+k9n2dptzQqpOCPedt5iQAmAe1oNQMxNdPDH9g68x9UzWD1kfK/dPO+3NPAh0XG+io4x15fIknNf7JLjpAuWicMMzCdwC4hhqeYOzQ+pC9f2xJXi5YViNKIZY69oO8eoHYRitLZrHLgx3oB2zimmqX6BI+DMklKAzAqqgGmbFxcVTvxZB6cMCx+H7TTWXnjAG+6A3SrCcxg0l5+UB93pkAYR7SVJ+VaZoiBqlqnZvb7IM17n9XaaFntlzvbbFCIa7OnOQb5Lvw='
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, api_base)
VALUES ('10000100', 'wxd930ea5d5a258f4f', :'key', 'https://shop.example.com/wxpay/notify', 'http://127.0.0.1:9');
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
SELECT '10000100', 'fz-' || i, 'APP', 'Fuzz', 100, '1.2.3.4' FROM generate_series(1, 20) i;
SELECT setseed(0.42);

-- The number of cases: regress.fuzz_scale (default 1) scales them down
-- for slow runs, such as the one under valgrind.
CREATE FUNCTION pg_temp.cases(n int) RETURNS int LANGUAGE sql AS $$
	SELECT greatest(1, (n * coalesce(current_setting('regress.fuzz_scale', true), '1')::numeric)::int) $$;

-- Calls a handler on each body; counts errors and rows recorded.
CREATE FUNCTION pg_temp.feed(kind text, bodies text[], OUT errors int, OUT one_row_each boolean)
LANGUAGE plpgsql AS $$
DECLARE
	b text;
	before bigint := (SELECT count(*) FROM wxpay.notifications);
	reply text;
BEGIN
	errors := 0;
	FOREACH b IN ARRAY bodies LOOP
		BEGIN
			reply := CASE kind WHEN 'pay' THEN wxpay_handle_notify(b) ELSE wxpay_handle_refund_notify(b) END;
			IF reply IS NULL OR wxpay_from_xml(reply) ->> 'return_code' NOT IN ('SUCCESS', 'FAIL') THEN
				errors := errors + 1;
			END IF;
		EXCEPTION WHEN OTHERS THEN
			errors := errors + 1;
			RAISE NOTICE 'raised: %', SQLERRM;
		END;
	END LOOP;
	one_row_each := (SELECT count(*) FROM wxpay.notifications) - before = coalesce(array_length(bodies, 1), 0);
END
$$;

-- A string of n random characters from chars.
CREATE FUNCTION pg_temp.rand_text(chars text, n int) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(substr(chars, 1 + floor(random() * length(chars))::int, 1), '')
	  FROM generate_series(1, n) $$;

-- Malformed bodies: element names of multi-byte characters at lengths
-- around the 64-byte message limit, duplicates of them, odd values.
SELECT * FROM pg_temp.feed('pay', ARRAY(
	SELECT format('<xml><%1$s>1</%1$s><%1$s>2</%1$s></xml>', pg_temp.rand_text('名字𝄞é中', n))
	  FROM generate_series(15, 40) n, generate_series(1, pg_temp.cases(8))));
SELECT * FROM pg_temp.feed('pay', ARRAY(
	SELECT format('<xml><%1$s><a>%2$s</a></%1$s></xml>', pg_temp.rand_text('名字é', n), pg_temp.rand_text('<>&"名', 5))
	  FROM generate_series(18, 26) n, generate_series(1, pg_temp.cases(10))));
SELECT * FROM pg_temp.feed('refund', ARRAY(
	SELECT format('<xml><return_code>SUCCESS</return_code><mch_id>10000100</mch_id><appid>wxd930ea5d5a258f4f</appid>'
				  '<req_info>%s</req_info><%2$s>x</%2$s><%2$s>y</%2$s></xml>',
				  pg_temp.rand_text('ABCDabcd0123+/=名', n), pg_temp.rand_text('名字', 22))
	  FROM generate_series(1, pg_temp.cases(60)) n));
-- Around the 1 MB body limit, and every shape of junk.
SELECT * FROM pg_temp.feed('pay', ARRAY[
	'<xml><a>' || repeat('x', 1048576 - 17) || '</a></xml>',
	'<xml><a>' || repeat('x', 1048576 - 16) || '</a></xml>',
	'<xml><a>' || repeat('名', 349520) || '</a></xml>',
	'', ' ', '<', '<xml>', '</xml>', '<xml><a>1</a>', '<?xml?>', '<!DOCTYPE x><xml/>',
	'<xml><attach><![CDATA[<!DOCTYPE html>]]></attach></xml>', '<xml>&lt;</xml>', '<xml><a>&bad;</a></xml>',
	'<x:xml xmlns:x="u"/>', '<xml><a b="c">1</a></xml>', E'<xml><a>\x01</a></xml>', repeat('<xml>', 1000)]);

-- Mutations of genuine bodies: flip, drop, duplicate or insert bytes.
CREATE FUNCTION pg_temp.genuine(no text) RETURNS text LANGUAGE sql AS $$
	SELECT wxpay_to_xml(f || jsonb_build_object('sign', wxpay_sign(f, '192006250b4c09247ec02edce69f6a2d')))
	  FROM (SELECT jsonb_build_object('return_code', 'SUCCESS', 'appid', 'wxd930ea5d5a258f4f', 'mch_id', '10000100',
			 'nonce_str', 'n' || no, 'result_code', 'SUCCESS', 'openid', 'o1', 'trade_type', 'APP', 'bank_type', 'CMC',
			 'total_fee', '100', 'cash_fee', '100', 'transaction_id', '42000000' || lpad(substr(no, 4), 20, '0'),
			 'out_trade_no', no, 'time_end', '20261126153045', 'attach', '名<!DOCTYPE x>') f) s $$;
CREATE FUNCTION pg_temp.mutate(b text) RETURNS text LANGUAGE sql AS $$
	SELECT CASE floor(random() * 5)::int
		WHEN 0 THEN overlay(b PLACING pg_temp.rand_text('<>/&;!x名0 ', 1) FROM p FOR 1)
		WHEN 1 THEN overlay(b PLACING '' FROM p FOR 1 + floor(random() * 8)::int)
		WHEN 2 THEN overlay(b PLACING substr(b, p, 40) FROM p FOR 0)
		WHEN 3 THEN overlay(b PLACING pg_temp.rand_text('<>/名𝄞]]>', 3) FROM p FOR 0)
		ELSE replace(b, '100', (floor(random() * 200))::text) END
	  FROM (SELECT 1 + floor(random() * length(b))::int p) s $$;
CREATE TEMP TABLE mutated AS
SELECT 'fz-' || (1 + i % 20) AS no, pg_temp.mutate(pg_temp.genuine('fz-' || (1 + i % 20))) AS body
  FROM generate_series(1, pg_temp.cases(3000)) i;
SELECT * FROM pg_temp.feed('pay', ARRAY(SELECT body FROM mutated));
SELECT * FROM pg_temp.feed('refund', ARRAY(SELECT body FROM mutated LIMIT pg_temp.cases(500)));
-- And of a genuine refund notification (the wechatpy vector): one that
-- still decrypts to our refund only schedules a refundquery, nothing else.
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base)
VALUES ('12345678', 'wx4f4bc4dec97d474b', 'OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk', 'http://127.0.0.1:9');
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('12345678', '2020010418301551404339261814', 'APP', 'Refunded', 1, '1.2.3.4');
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '4200000512202001046458946316', paid_at = now()
 WHERE mch_id = '12345678';
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee)
VALUES ('12345678', '1234', '2020010418301551404339261814', 1, 1);
CREATE TEMP TABLE refund_bodies AS
SELECT pg_temp.mutate(wxpay_to_xml(jsonb_build_object('return_code', 'SUCCESS', 'appid', 'wx4f4bc4dec97d474b',
		'mch_id', '12345678', 'nonce_str', 'c1c237efc87ee8dfcb3f9124b63a4d94', 'req_info', :'wechatpy_req_info'))) AS body
  FROM generate_series(1, pg_temp.cases(1000));
SELECT * FROM pg_temp.feed('refund', ARRAY(SELECT body FROM refund_bodies));
SELECT state, refund_id IS NULL AS no_refund_id FROM wxpay.refunds WHERE out_refund_no = '1234';

-- Nothing was paid by a body other than a genuine one: every accepted
-- notification carries exactly the genuine fields of its order.
SELECT count(*) AS accepted_not_genuine
  FROM wxpay.notifications n
 WHERE n.kind = 'pay' AND n.outcome = 'accepted'
   AND wxpay_from_xml(n.body) - 'sign' <> wxpay_from_xml(pg_temp.genuine(n.out_trade_no)) - 'sign';
SELECT count(*) AS paid_orders_without_genuine_body
  FROM wxpay.orders o
 WHERE o.state = 'SUCCESS' AND NOT EXISTS (
	SELECT FROM wxpay.notifications n WHERE n.outcome = 'accepted' AND n.out_trade_no = o.out_trade_no);
-- Every reason stored is valid UTF-8 (convert_from checks the bytes: C
-- code can store text PostgreSQL never validated), and bodies are kept.
SELECT bool_and(convert_from(convert_to(coalesce(reason, ''), 'UTF8'), 'UTF8') IS NOT NULL) AS reasons_valid_utf8
  FROM wxpay.notifications;
SELECT count(*) AS mutated_bodies_not_kept
  FROM mutated m WHERE NOT EXISTS (SELECT FROM wxpay.notifications n WHERE n.body = m.body);
-- Now the genuine bodies: each pays its order once, repeats are duplicates.
SELECT * FROM pg_temp.feed('pay', ARRAY(SELECT pg_temp.genuine('fz-' || i) FROM generate_series(1, 20) i, generate_series(1, 2)));
SELECT state, count(*) FROM wxpay.orders WHERE out_trade_no LIKE 'fz-%' GROUP BY state;
SELECT count(*) AS payments_accepted, count(DISTINCT out_trade_no) AS orders_paid
  FROM wxpay.notifications WHERE kind = 'pay' AND outcome = 'accepted';
