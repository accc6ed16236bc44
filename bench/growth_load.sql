-- Bench section 6 only: finished orders, their history and their
-- notifications, loaded in bulk so that 1 and 10 million fit in minutes.
-- Never use this outside a throwaway benchmark cluster.
--
-- Orders :first .. :last of merchant :mch.  Nine in ten are paid (SUCCESS,
-- with the notification that paid them), one in ten expired unpaid
-- (CLOSED).  Each row is what the extension itself leaves behind, written
-- directly: session_replication_role = replica turns off the triggers
-- (the state machine, the history, the append-only guards) and the foreign
-- key checks for this session, so the rows are built here to satisfy them:
--   * every order starts with a NOTPAY event (source unifiedorder) and
--     has one event per later state, the last one equal to its state;
--   * SUCCESS orders have transaction_id and paid_at, one accepted,
--     verified pay notification, and their SUCCESS event published as a
--     paid event (events without xid, as written before 1.1);
--   * no pending order is made: the worker has nothing new to claim.
-- bench.py compares the rows one order made this way has in every wxpay
-- table with those of an order made by the extension itself, so a schema
-- that starts keeping something else per order stops the benchmark.
-- Times spread back from now, one second per order, as a shop's would.
SET session_replication_role = replica;
SET synchronous_commit = off;

CREATE TEMP TABLE growth_batch AS
SELECT i, 'G' || i AS otn, i % 10 <> 0 AS paid,
       now() - (:last - i) * interval '1 second' - interval '1 hour' AS t,
       '4200' || lpad(i::text, 24, '0') AS txn
  FROM generate_series(:first, :last) AS i;

INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, params,
                          prepay_id, prepay_at, state, transaction_id, paid_at, payer, time_expire,
                          next_query_at, query_count, created_at, updated_at)
SELECT :'mch', otn, 'APP', 'Bench Shop-Item', 100 + i % 900, '203.0.113.7', '{}',
       'wx' || lpad(i::text, 30, '0'), t,
       CASE WHEN paid THEN 'SUCCESS' ELSE 'CLOSED' END,
       CASE WHEN paid THEN txn END, CASE WHEN paid THEN t + interval '20 seconds' END,
       CASE WHEN paid THEN jsonb_build_object('openid', 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', 'bank_type', 'CMC',
                                              'cash_fee', (100 + i % 900)::text) END,
       t + interval '2 hours', t + interval '2 hours', CASE WHEN paid THEN 0 ELSE 1 END, t,
       t + CASE WHEN paid THEN interval '20 seconds' ELSE interval '2 hours' END
  FROM growth_batch;

WITH events AS (
INSERT INTO wxpay.order_events (mch_id, out_trade_no, old_state, new_state, source, transaction_id,
                                db_user, created_at)
SELECT :'mch', otn, NULL, 'NOTPAY', 'unifiedorder', NULL, session_user, t FROM growth_batch
UNION ALL
SELECT :'mch', otn, 'NOTPAY', CASE WHEN paid THEN 'SUCCESS' ELSE 'CLOSED' END,
       CASE WHEN paid THEN 'notify' ELSE 'query' END, CASE WHEN paid THEN txn END, session_user,
       t + CASE WHEN paid THEN interval '20 seconds' ELSE interval '2 hours' END
  FROM growth_batch
 ORDER BY 8
RETURNING id, mch_id, new_state, created_at)
-- Each payment was published by the worker as a paid event.
INSERT INTO wxpay.paid_events (event_id, mch_id, published_at)
SELECT id, mch_id, created_at + interval '10 milliseconds' FROM events WHERE new_state = 'SUCCESS' ORDER BY id;

INSERT INTO wxpay.notifications (kind, received_at, body, mch_id, out_trade_no, transaction_id, outcome,
                                 verified)
SELECT 'pay', t + interval '20 seconds',
       format('<xml><appid><![CDATA[%s]]></appid><bank_type><![CDATA[CMC]]></bank_type>'
              '<cash_fee><![CDATA[%s]]></cash_fee><fee_type><![CDATA[CNY]]></fee_type>'
              '<is_subscribe><![CDATA[N]]></is_subscribe><mch_id><![CDATA[%s]]></mch_id>'
              '<nonce_str><![CDATA[%s]]></nonce_str><openid><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></openid>'
              '<out_trade_no><![CDATA[%s]]></out_trade_no><result_code><![CDATA[SUCCESS]]></result_code>'
              '<return_code><![CDATA[SUCCESS]]></return_code><sign><![CDATA[%s]]></sign>'
              '<time_end><![CDATA[%s]]></time_end><total_fee>%s</total_fee>'
              '<trade_type><![CDATA[APP]]></trade_type><transaction_id><![CDATA[%s]]></transaction_id></xml>',
              :'appid', 100 + i % 900, :'mch', md5(otn), otn, upper(md5(txn)),
              to_char(t AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS'), 100 + i % 900, txn),
       :'mch', otn, txn, 'accepted', true
  FROM growth_batch WHERE paid
 ORDER BY t;
DROP TABLE growth_batch;
