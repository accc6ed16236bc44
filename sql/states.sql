-- One state vocabulary: the C lists equal the SQL definitions, the
-- definitions agree with the state machines, and every scan the worker
-- makes for due work uses an index on tables of realistic size.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;

-- C and SQL say the same.
WITH v AS (SELECT wxpay.state_vocabulary() v),
	 o AS (SELECT s FROM unnest(wxpay.order_states()) WITH ORDINALITY u(s, n) ORDER BY n),
	 r AS (SELECT s FROM unnest(wxpay.refund_states()) WITH ORDINALITY u(s, n) ORDER BY n)
SELECT (SELECT jsonb_agg(s) FROM o) = v -> 'order_states' AS order_states,
	   (SELECT jsonb_agg(s) FROM o WHERE wxpay.order_state_pending(s)) = v -> 'order_pending' AS order_pending,
	   (SELECT jsonb_agg(s) FROM o WHERE wxpay.order_state_paid(s)) = v -> 'order_paid' AS order_paid,
	   (SELECT jsonb_agg(s) FROM r) = v -> 'refund_states' AS refund_states,
	   (SELECT jsonb_agg(s) FROM r WHERE wxpay.refund_state_final(s)) = v -> 'refund_final' AS refund_final
  FROM v;

-- The vocabulary as a table a DBA can read.
SELECT s AS state, wxpay.order_state_pending(s) AS pending, wxpay.order_state_paid(s) AS paid,
	   wxpay.order_state_final(s) AS final
  FROM unnest(wxpay.order_states()) s;
SELECT s AS state, wxpay.refund_state_pending(s) AS pending, wxpay.refund_state_final(s) AS final,
	   wxpay.refund_state_counts(s) AS counts
  FROM unnest(wxpay.refund_states()) s;

-- The state machine agrees: a final state allows no transition, a pending
-- one can still be paid and closed.  Every pair is tried on a real row.
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url)
VALUES ('states-m', 'wxstates', '192006250b4c09247ec02edce69f6a2d', 'https://shop.example.com/n');
CREATE TEMP TABLE moves (from_state text, to_state text, allowed boolean);
DO $$
DECLARE
	f text;
	t text;
	n int := 0;
BEGIN
	FOREACH f IN ARRAY wxpay.order_states() LOOP
		FOREACH t IN ARRAY wxpay.order_states() LOOP
			CONTINUE WHEN f = t;
			n := n + 1;
			INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
			VALUES ('states-m', 'mv-' || n, 'APP', 'x', 1, '203.0.113.7');
			-- Bring the order to f along allowed moves.
			IF wxpay.order_state_paid(f) THEN
				UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = n::text, paid_at = now()
				 WHERE out_trade_no = 'mv-' || n;
			END IF;
			UPDATE wxpay.orders SET state = f WHERE out_trade_no = 'mv-' || n AND state <> f;
			BEGIN
				UPDATE wxpay.orders SET state = t,
					   transaction_id = COALESCE(transaction_id, n::text), paid_at = COALESCE(paid_at, now())
				 WHERE out_trade_no = 'mv-' || n;
				INSERT INTO moves VALUES (f, t, true);
			EXCEPTION WHEN check_violation THEN
				INSERT INTO moves VALUES (f, t, false);
			END;
		END LOOP;
	END LOOP;
END
$$;
SELECT from_state, string_agg(to_state, ' ' ORDER BY to_state) FILTER (WHERE allowed) AS allowed_moves
  FROM moves GROUP BY from_state ORDER BY from_state;
SELECT count(*) AS final_states_with_moves FROM moves WHERE allowed AND wxpay.order_state_final(from_state);
SELECT count(*) AS pending_states_that_cannot_be_paid_or_closed FROM moves
 WHERE wxpay.order_state_pending(from_state) AND to_state IN ('SUCCESS', 'CLOSED') AND NOT allowed;
SELECT count(*) AS nonfinal_states_without_moves
  FROM unnest(wxpay.order_states()) s
 WHERE NOT wxpay.order_state_final(s) AND NOT EXISTS (SELECT FROM moves WHERE from_state = s AND allowed);

-- Realistic size: 20,000 settled orders and refunds, a few pending ones,
-- loaded directly (the state-machine triggers are not under test here).
ALTER TABLE wxpay.orders DISABLE TRIGGER USER;
ALTER TABLE wxpay.refunds DISABLE TRIGGER USER;
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip,
						  state, transaction_id, paid_at)
SELECT 'states-m', 'big-' || i, 'APP', 'x', 100, '203.0.113.7',
	   CASE WHEN i > 50 THEN 'SUCCESS' ELSE 'NOTPAY' END,
	   CASE WHEN i > 50 THEN 't' || i END, CASE WHEN i > 50 THEN now() END
  FROM generate_series(1, 20000) i;
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee, state)
SELECT 'states-m', 'rf-' || i, 'big-' || i, 10, 100, CASE WHEN i > 100 THEN 'SUCCESS' ELSE 'PROCESSING' END
  FROM generate_series(51, 20000) i;
ALTER TABLE wxpay.orders ENABLE TRIGGER USER;
ALTER TABLE wxpay.refunds ENABLE TRIGGER USER;
ANALYZE wxpay.orders, wxpay.refunds;
SELECT count(*) FILTER (WHERE wxpay.order_state_pending(state)) AS pending_orders, count(*) AS orders
  FROM wxpay.orders WHERE mch_id = 'states-m';

-- Each of the worker's scans, EXPLAINed as it runs: no sequential scan.
CREATE FUNCTION pg_temp.plan_of(name text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	q record;
	line text;
BEGIN
	SELECT * INTO q FROM wxpay.worker_queries() w WHERE w.name = plan_of.name;
	EXECUTE format('PREPARE %I%s AS %s', q.name, CASE WHEN q.argtypes <> '' THEN '(' || q.argtypes || ')' ELSE '' END, q.query);
	FOR line IN EXECUTE format('EXPLAIN (COSTS OFF) EXECUTE %I%s', q.name,
							   CASE WHEN q.argtypes <> '' THEN '(1000, 70)' ELSE '' END) LOOP
		RETURN NEXT line;
	END LOOP;
	EXECUTE format('DEALLOCATE %I', q.name);
END
$$;
-- (The paid-events statements read order_events, which this file leaves
-- nearly empty; bench section 6 shows their plans at a million orders.)
SELECT w.name, count(*) FILTER (WHERE p LIKE '%Seq Scan%') AS seq_scans,
	   count(*) FILTER (WHERE p ~ 'Index (Only )?Scan using (orders|refunds)_pending_idx') AS pending_index_scans
  FROM wxpay.worker_queries() w, pg_temp.plan_of(w.name) p
 WHERE w.name NOT LIKE 'paid_events%'
 GROUP BY w.name ORDER BY w.name;
-- The claims find the rows they locked again by ctid: no join, which the
-- planner could turn into a scan of the whole table as it grows (a hash
-- join over a sequential scan of orders did, at 100,000 orders: bench
-- section 6).
SELECT w.name, count(*) FILTER (WHERE p ~ 'Tid Scan on (orders|refunds)') AS tid_scans,
	   count(*) FILTER (WHERE p ~ '(Hash|Merge) Join|Nested Loop') AS joins
  FROM wxpay.worker_queries() w, pg_temp.plan_of(w.name) p
 WHERE w.name LIKE 'claim%' GROUP BY w.name ORDER BY w.name;
