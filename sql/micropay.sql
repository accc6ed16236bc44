-- In-store payments without the network: wxpay_micropay's local checks,
-- the order it records (and commits) before anything is sent, what it
-- keeps of the payer's code, retries, wxpay_reverse's local checks, and
-- wxpay_micropay_wait.  api_base is a closed loopback port: every request
-- fails at once, an outcome the till is told is UNKNOWN.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base, cert_pem, key_pem)
VALUES ('10000100', 'wxd930ea5d5a258f4f', '192006250b4c09247ec02edce69f6a2d', 'http://127.0.0.1:9',
		'-----BEGIN CERTIFICATE-----', '-----BEGIN PRIVATE KEY-----'),
	   ('10000200', 'wx2000000000000000', '8934e7d15453e97507ef794cf7b0519d', 'http://127.0.0.1:9', NULL, NULL);
\set code '134567890123456789'

-- Local validation: nothing is recorded, and the code is never quoted.
\set VERBOSITY default
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', '13456789012345678');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', '164567890123456789');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', '094567890123456789');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', '13456789012345678x');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', ' 134567890123456789');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', NULL);
SELECT wxpay_micropay('10000100', 'mp-v', 0, 'Till', '203.0.113.7', :'code');
SELECT wxpay_micropay('10000100', 'mp v', 100, 'Till', '203.0.113.7', :'code');
SELECT wxpay_micropay('10000100', 'mp-v', 100, repeat('x', 129), '203.0.113.7', :'code');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.300', :'code');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', :'code', '{"notify_url": "https://x.example/n"}');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', :'code', '{"limit_pay": "credit"}');
SELECT wxpay_micropay('10000100', 'mp-v', 100, 'Till', '203.0.113.7', :'code', '{"device_info": "till 1"}');
SELECT wxpay_micropay('99999999', 'mp-v', 100, 'Till', '203.0.113.7', :'code');
-- Without a client certificate nothing starts: an unpaid order could not be reversed.
SELECT wxpay_micropay('10000200', 'mp-v', 100, 'Till', '203.0.113.7', :'code');
SELECT count(*) AS recorded FROM wxpay.orders;

-- A call that reaches the network.  No answer: the outcome is unknown, and
-- the order is recorded for the worker to query at once.
SELECT r ->> 'state' AS state, r ->> 'out_trade_no' AS out_trade_no, r ->> 'total_fee' AS total_fee,
	   r ->> 'reason' LIKE '%/pay/micropay%' AS reason_names_the_endpoint
  FROM wxpay_micropay('10000100', 'mp-1', 100, 'Till', '203.0.113.7', :'code',
					  '{"device_info": "T1", "attach": "lane 3"}') r;
SELECT trade_type, state, total_fee, attach, next_query_at <= now() AS query_now,
	   reverse_after - created_at AS window, reverse_requested_at, last_error IS NOT NULL AS has_error
  FROM wxpay.orders WHERE out_trade_no = 'mp-1';
SELECT new_state, source FROM wxpay.order_events WHERE out_trade_no = 'mp-1' ORDER BY id;
-- What the order keeps of the payer's code: an HMAC under the API key, not the code.
SELECT params - 'auth_code_hmac' AS params,
	   params ->> 'auth_code_hmac' = wxpay_sign(jsonb_build_object('auth_code', :'code', 'mch_id', '10000100',
			'out_trade_no', 'mp-1'), '192006250b4c09247ec02edce69f6a2d', 'HMAC-SHA256') AS hmac_of_the_code,
	   strpos(o::text, :'code') AS code_in_row,
	   (SELECT count(*) FROM wxpay.order_events e WHERE strpos(e::text, :'code') > 0) AS code_in_events
  FROM wxpay.orders o WHERE out_trade_no = 'mp-1';

-- A retry must repeat the request, the code included; then it is sent again.
SELECT wxpay_micropay('10000100', 'mp-1', 100, 'Till', '203.0.113.7', '134567890123456780',
					  '{"device_info": "T1", "attach": "lane 3"}');
SELECT wxpay_micropay('10000100', 'mp-1', 101, 'Till', '203.0.113.7', :'code',
					  '{"device_info": "T1", "attach": "lane 3"}');
SELECT wxpay_micropay('10000100', 'mp-1', 100, 'Till', '203.0.113.7', :'code') ->> 'state' AS without_extra;
UPDATE wxpay.orders SET reverse_after = now() - interval '1 hour' WHERE out_trade_no = 'mp-1';
SELECT wxpay_micropay('10000100', 'mp-1', 100, 'Till', '203.0.113.7', :'code',
					  '{"device_info": "T1", "attach": "lane 3"}') ->> 'state' AS identical_retry;
SELECT reverse_after > now() AS window_restarted FROM wxpay.orders WHERE out_trade_no = 'mp-1';
-- An APP order's number is not a micropay's.
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('10000100', 'app-1', 'APP', 'App', 100, '203.0.113.7');
SELECT wxpay_micropay('10000100', 'app-1', 100, 'App', '203.0.113.7', :'code');

-- The record survives the caller's ROLLBACK: it was committed before the request.
BEGIN;
SELECT wxpay_micropay('10000100', 'mp-rolled-back', 100, 'Till', '203.0.113.7', :'code') ->> 'state' AS state;
ROLLBACK;
SELECT state, trade_type FROM wxpay.orders WHERE out_trade_no = 'mp-rolled-back';

-- A paid micropay order: a retry returns it paid without sending anything.
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '4200000000000000000000000001', paid_at = now()
 WHERE out_trade_no = 'mp-rolled-back';
SELECT r - 'reason' AS retry_of_paid
  FROM wxpay_micropay('10000100', 'mp-rolled-back', 100, 'Till', '203.0.113.7', :'code') r;

-- wxpay_reverse: local checks, then a reverse that does not go through yet
-- (the worker repeats it) and blocks further payment attempts.
SELECT wxpay_reverse('10000100', 'nowhere');
SELECT wxpay_reverse('10000100', 'bad no');
SELECT wxpay_reverse('10000100', 'app-1');
SELECT wxpay_reverse('10000100', 'mp-rolled-back');
SELECT wxpay_reverse('10000200', 'mp-1');
SELECT r ->> 'state' AS state, r ? 'reason' AS has_reason FROM wxpay_reverse('10000100', 'mp-1') r;
SELECT state, reverse_requested_at IS NOT NULL AS reverse_requested, reverse_count,
	   last_error LIKE '%/secapi/pay/reverse%' AS error_names_reverse
  FROM wxpay.orders WHERE out_trade_no = 'mp-1';
SELECT out_trade_no, next_action FROM wxpay.worker_status WHERE out_trade_no LIKE 'mp-%' ORDER BY 1;
SELECT wxpay_micropay('10000100', 'mp-1', 100, 'Till', '203.0.113.7', :'code',
					  '{"device_info": "T1", "attach": "lane 3"}');
-- A reversed or closed order needs no reverse.
UPDATE wxpay.orders SET state = 'REVOKED' WHERE out_trade_no = 'mp-1';
SELECT wxpay_reverse('10000100', 'mp-1') ->> 'state' AS already;

-- The schedule's rule: only micropay orders have a window.
\set VERBOSITY terse
UPDATE wxpay.orders SET reverse_after = now() WHERE out_trade_no = 'app-1';
\set VERBOSITY default

-- wxpay_micropay_wait: a settled order returns at once, a pending one at
-- the timeout with its state.
SELECT wxpay_micropay_wait('10000100', 'mp-rolled-back', '10 seconds') - 'last_error' AS settled;
SELECT clock_timestamp() AS before \gset
SELECT r ->> 'state' AS state, r ->> 'settled' AS settled
  FROM wxpay_micropay_wait('10000100', 'app-1', '300 milliseconds') r;
SELECT clock_timestamp() - :'before'::timestamptz >= interval '300 milliseconds' AS waited_the_timeout;
SELECT wxpay_micropay_wait('10000100', 'app-1', '-1 second');
SELECT wxpay_micropay_wait('10000100', 'app-1', NULL);
SELECT wxpay_micropay_wait('10000100', 'nowhere', '1 second');
SELECT wxpay_micropay_wait('99999999', 'app-1', '1 second');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT wxpay_micropay_wait('10000100', 'app-1', '1 second');
ROLLBACK;
SET statement_timeout = '200ms';
SELECT wxpay_micropay_wait('10000100', 'app-1', '1 hour');
RESET statement_timeout;

-- No PUBLIC access; definer's rights with a pinned search_path.
SELECT proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute, prosecdef, proconfig
  FROM pg_proc p WHERE proname IN ('wxpay_micropay', 'wxpay_reverse', 'wxpay_micropay_wait') ORDER BY 1;
