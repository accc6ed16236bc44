-- Daily bills without the network: files imported with wxpay_bill_import
-- (the same checks and tables as a download), typed rows, versions,
-- refusals, reconciliation either side of Beijing midnight, and the
-- download functions' own argument checks.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
SET timezone = 'UTC';
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base)
VALUES ('1900000109', 'wx1', '192006250b4c09247ec02edce69f6a2d', 'http://127.0.0.1:9');

-- A trade bill as WeChat Pay writes it: BOM, CRLF, back-ticks, "n.0" count.
CREATE FUNCTION pay_row(t text, txn text, no text, fee text) RETURNS text LANGUAGE sql AS $$
	SELECT '`' || t || ',`wx1,`1900000109,`0,`,`' || txn || ',`' || no || ',`oU,`APP,`SUCCESS,`CMC,`CNY,`' || fee
		|| ',`0.00,`0,`0,`0.00,`0.00,`,`,`商品,`,`0.00600,`0.60%,`' || fee || ',`0.00,`' $$;
CREATE FUNCTION refund_row(t text, txn text, no text, refund_no text, fee text) RETURNS text LANGUAGE sql AS $$
	SELECT '`' || t || ',`wx1,`1900000109,`0,`,`' || txn || ',`' || no || ',`oU,`APP,`REFUND,`CMC,`CNY,`0.00,`0.00,`5001,`'
		|| refund_no || ',`' || fee || ',`0.00,`ORIGINAL,`SUCCESS,`商品,`,`0.00000,`0.60%,`0.00,`' || fee || ',`' $$;
CREATE FUNCTION bill(rows text[], summary text) RETURNS bytea LANGUAGE sql AS $$
	SELECT convert_to(U&'\FEFF' || '交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注'
		|| E'\r\n' || array_to_string(rows, E'\r\n') || E'\r\n'
		|| '总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额' || E'\r\n' || summary || E'\r\n', 'UTF8') $$;

-- Orders paid at 23:59:59 and 00:00:01 Beijing time (the same UTC day),
-- and one refunded in part.
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)
VALUES ('1900000109', 'late', 'APP', 'Goods', 100, '1.2.3.4'), ('1900000109', 'early', 'APP', 'Goods', 100, '1.2.3.4');
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = 'T-' || out_trade_no,
	   paid_at = CASE out_trade_no WHEN 'late' THEN timestamptz '2026-11-29 23:59:59+08' ELSE '2026-11-30 00:00:01+08' END;
SELECT out_trade_no, paid_at FROM wxpay.orders ORDER BY 1;

SELECT wxpay_bill_import('1900000109', '2026-11-30', 'ALL',
	bill(ARRAY[pay_row('2026-11-30 00:00:01', 'T-early', 'early', '1.00')], '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'))
	- 'sha1' AS imported;
SELECT kind, trade_time, transaction_id, out_trade_no, settlement_fee, total_fee, service_fee, refund_id, out_refund_no, rate
  FROM wxpay.bill_rows;
-- The same file again: nothing new, and the rows of the version there.
SELECT wxpay_bill_import('1900000109', '2026-11-30', 'ALL',
	bill(ARRAY[pay_row('2026-11-30 00:00:01', 'T-early', 'early', '1.00')], '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'))
	- 'sha1' AS again;
-- Counts and ids are numbers, as in wxpay_bill_summary.
SELECT jsonb_typeof(x -> 'rows') AS rows, jsonb_typeof(x -> 'bill_id') AS bill_id, jsonb_typeof(x -> 'version') AS version,
	   jsonb_typeof(x -> 'byte_size') AS byte_size
  FROM wxpay_bill_import('1900000109', '2026-11-30', 'ALL',
	bill(ARRAY[pay_row('2026-11-30 00:00:01', 'T-early', 'early', '1.00')], '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00')) x;
-- Stored whole, byte for byte.
SELECT convert_to(wxpay.bill_text(b), 'UTF8') = bill(ARRAY[pay_row('2026-11-30 00:00:01', 'T-early', 'early', '1.00')],
		'`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00') AS whole, byte_size, summary, discrepancies
  FROM wxpay.bills b;
-- The 23:59:59 payment is the day before's, and nothing is amiss on either day.
SELECT wxpay_bill_import('1900000109', '2026-11-29', 'ALL',
	bill(ARRAY[pay_row('2026-11-29 23:59:59', 'T-late', 'late', '1.00')], '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'))
	->> 'discrepancies' AS discrepancies_29th;
SELECT count(*) AS discrepancies FROM wxpay.bill_discrepancies;
-- A bill that puts the 23:59:59 payment on the next day (a UTC cut): the
-- 00:00:01 one is then missing from it.
SELECT wxpay_bill_import('1900000109', '2026-11-30', 'ALL',
	bill(ARRAY[pay_row('2026-11-30 23:59:59', 'T-late', 'late', '1.00'), pay_row('2026-11-30 10:00:00', 'T-x', 'stranger', '2.50'),
			   refund_row('2026-11-30 11:00:00', 'T-early', 'early', 'R-unknown', '0.30')],
		 '`3.0,`3.50,`0.30,`0.0,`0.01200,`3.50,`0.30')) - 'sha1' AS new_version;
SELECT bill_date, version, changed FROM wxpay.bills ORDER BY bill_id;
SELECT bill_date, kind, out_trade_no, out_refund_no, bill_fee, local_fee, local_state
  FROM wxpay.bill_discrepancies ORDER BY bill_date, kind;
SELECT wxpay_bill_summary('1900000109', '2026-11-30') - 'fetched_at' - 'bill_id' AS summary;
-- The first version's file again (a stale copy): that version, unchanged,
-- and the newest stays the day's bill; an unchanged answer counts the
-- day's open cases as they are now.
SELECT wxpay_bill_import('1900000109', '2026-11-30', 'ALL',
	bill(ARRAY[pay_row('2026-11-30 00:00:01', 'T-early', 'early', '1.00')], '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'))
	- 'sha1' - 'bill_id' AS stale_copy;
SELECT bill_date, version FROM wxpay.current_bills WHERE bill_date = '2026-11-30';

-- A day's ALL bill and its SUCCESS and REFUND bills tell the same cases
-- twice: each is listed once, from the newest bill that covers it (ALL on
-- a tie), with the bill_type it comes from; the summary counts the day.
CREATE FUNCTION typed_bill(header text, summary_header text, rows text[], summary text) RETURNS bytea LANGUAGE sql AS $$
	SELECT convert_to(header || E'\r\n' || array_to_string(rows, E'\r\n') || E'\r\n' || summary_header || E'\r\n'
		|| summary || E'\r\n', 'UTF8') $$;
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'ALL',
	bill(ARRAY[pay_row('2026-11-26 10:00:00', 'T-26', 'stranger-26', '2.00'),
			   refund_row('2026-11-26 11:00:00', 'T-early', 'early', 'R-26', '0.40')],
		 '`2.0,`2.00,`0.40,`0.0,`0.00600,`2.00,`0.40')) ->> 'discrepancies' AS all_26;
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'SUCCESS', typed_bill(
	'交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注',
	'总交易单数,应结订单总金额,手续费总金额,订单总金额',
	ARRAY['`2026-11-26 10:00:00,`wx1,`1900000109,`0,`,`T-26,`stranger-26,`oU,`APP,`SUCCESS,`CMC,`CNY,`2.00,`0.00,`商品,`,`0.00600,`0.60%,`2.00,`'],
	'`1.0,`2.00,`0.00600,`2.00')) ->> 'outcome' AS success_26;
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'REFUND', typed_bill(
	'交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注',
	'总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额',
	ARRAY['`2026-11-26 11:00:00,`wx1,`1900000109,`0,`,`T-early,`early,`oU,`APP,`REFUND,`CMC,`CNY,`0.00,`0.00,`2026-11-26 11:00:00,`2026-11-26 11:00:05,`5001,`R-26,`0.40,`0.00,`ORIGINAL,`SUCCESS,`商品,`,`0.00000,`0.60%,`0.00,`0.40,`'],
	'`1.0,`0.00,`0.40,`0.0,`0.00000,`0.00,`0.40')) ->> 'outcome' AS refund_26;
SELECT kind, count(*) FROM wxpay.bill_discrepancies WHERE bill_date = '2026-11-26' GROUP BY kind ORDER BY kind;
SELECT d.bill_type, d.kind, d.out_trade_no, d.out_refund_no, d.bill_fee, d.local_fee, b.bill_type = d.bill_type AS of_its_bill
  FROM wxpay.bill_discrepancies d JOIN wxpay.bills b USING (bill_id) WHERE d.bill_date = '2026-11-26' ORDER BY d.kind;
SELECT s ->> 'bill_type' AS bill_type, s -> 'discrepancies' AS discrepancies, s -> 'by_kind' AS by_kind
  FROM wxpay_bill_summary('1900000109', '2026-11-26') s;
-- The header tells a trade bill's type: each of the 26th's files given as
-- another bill_type is refused (22023), and nothing is stored.
\set VERBOSITY default
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'ALL', convert_to(wxpay.bill_text(b), 'UTF8'))
  FROM wxpay.bills b WHERE bill_date = '2026-11-26' AND bill_type = 'REFUND';
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'ALL', convert_to(wxpay.bill_text(b), 'UTF8'))
  FROM wxpay.bills b WHERE bill_date = '2026-11-26' AND bill_type = 'SUCCESS';
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'REFUND', convert_to(wxpay.bill_text(b), 'UTF8'))
  FROM wxpay.bills b WHERE bill_date = '2026-11-26' AND bill_type = 'ALL';
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'SUCCESS', convert_to(wxpay.bill_text(b), 'UTF8'))
  FROM wxpay.bills b WHERE bill_date = '2026-11-26' AND bill_type = 'REFUND';
-- A row of the other kind in a header of the right type: a payment in a REFUND bill.
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'REFUND', convert_to(replace(wxpay.bill_text(b), '`REFUND,', '`SUCCESS,'), 'UTF8'))
  FROM wxpay.bills b WHERE bill_date = '2026-11-26' AND bill_type = 'REFUND';
\set VERBOSITY sqlstate
SELECT wxpay_bill_import('1900000109', '2026-11-26', 'ALL', convert_to(wxpay.bill_text(b), 'UTF8'))
  FROM wxpay.bills b WHERE bill_date = '2026-11-26' AND bill_type = 'REFUND';
\set VERBOSITY default
SELECT bill_type, count(*) FROM wxpay.bills WHERE bill_date = '2026-11-26' GROUP BY bill_type ORDER BY bill_type;
DROP FUNCTION typed_bill(text, text, text[], text);

-- A refund sent 0.1 s before Beijing midnight is accepted (and dated by
-- WeChat Pay) after it: not in its own day's bill, but in the next day's.
-- Until that bill is in, the 24th lacks it; then it is the 25th's, on
-- both sides, and neither day has a refund case.
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee, created_at)
VALUES ('1900000109', 'R-mid', 'early', 10, 100, '2026-11-24 23:59:59.9+08');
UPDATE wxpay.refunds SET state = 'SUCCESS', refund_id = '5002' WHERE out_refund_no = 'R-mid';
SELECT wxpay_bill_import('1900000109', '2026-11-24', 'ALL', bill(ARRAY[pay_row('2026-11-24 10:00:00', 'T-early', 'early', '1.00')],
	'`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00')) ->> 'discrepancies' AS the_24th_alone;
SELECT bill_date, kind, out_refund_no, bill_fee, local_fee FROM wxpay.bill_discrepancies
 WHERE bill_date IN ('2026-11-24', '2026-11-25') AND kind LIKE 'refund%' ORDER BY 1, 2;
SELECT wxpay_bill_import('1900000109', '2026-11-25', 'ALL', bill(ARRAY[replace(refund_row('2026-11-25 00:00:03', 'T-early', 'early', 'R-mid', '0.10'), '`5001,', '`5002,')],
	'`1.0,`0.00,`0.10,`0.0,`0.00000,`0.00,`0.10')) ->> 'discrepancies' AS the_25th;
SELECT bill_date, kind, out_refund_no, bill_fee, local_fee FROM wxpay.bill_discrepancies
 WHERE bill_date IN ('2026-11-24', '2026-11-25') AND kind LIKE 'refund%' ORDER BY 1, 2;

\set VERBOSITY default
-- Refused whole, nothing stored: a summary that does not add up, a row
-- with more fields than its header, another merchant's row, garbage gzip.
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL',
	bill(ARRAY[pay_row('2026-11-28 10:00:00', 'T-1', 'a', '1.00')], '`1.0,`1.00,`0.00,`0.0,`0.01600,`1.00,`0.00'));
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL',
	bill(ARRAY[pay_row('2026-11-28 10:00:00', 'T-1', 'a', '1.00'), replace(pay_row('2026-11-28 10:00:00', 'T-2', 'b', '1.00'), '商品', '商品,大号')],
		 '`2.0,`2.00,`0.00,`0.0,`0.01200,`2.00,`0.00'));
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL',
	bill(ARRAY[replace(pay_row('2026-11-28 10:00:00', 'T-1', 'a', '1.00'), '1900000109', '1900000110')],
		 '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'));
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL', '\x1f8b0800000000000003ffff'::bytea);
-- An empty file (no line to name), a row with a field too few.
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL', '');
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL',
	bill(ARRAY[regexp_replace(pay_row('2026-11-28 10:00:00', 'T-1', 'a', '1.00'), ',`$', '')],
		 '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'));
-- A file is the bill of one Beijing day: under another bill_date (the
-- 30th's file given as the 28th's, a file with rows of two days, a fund
-- flow by its 记账时间) it is refused, naming the days its rows are of.
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL',
	bill(ARRAY[pay_row('2026-11-30 00:00:01', 'T-early', 'early', '1.00')], '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'));
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'ALL',
	bill(ARRAY[pay_row('2026-11-28 10:00:00', 'T-1', 'a', '1.00'), pay_row('2026-11-29 00:00:00', 'T-2', 'b', '1.00'),
			   pay_row('2026-11-29 10:00:00', 'T-3', 'c', '1.00')],
		 '`3.0,`3.00,`0.00,`0.0,`0.01800,`3.00,`0.00'));
SELECT wxpay_bill_import('1900000109', '2026-11-28', 'Basic', convert_to(
	E'记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号\n'
	|| E'`2026-11-30 00:00:01,`T-early,`F1,`交易,`交易,`收入,`1.00,`1.00,`system,`,`T-early\n'
	|| E'资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\n`1.0,`1.0,`1.00,`0.0,`0.00\n', 'UTF8'));
SELECT count(*) AS bills, (SELECT count(*) FROM wxpay.bill_rows) AS rows FROM wxpay.bills;

-- Fund flow: its own rows, amounts in fen, 备注 unescaped.
SELECT wxpay_bill_import('1900000109', '2026-11-30', 'Basic', convert_to(
	E'记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号\n'
	|| E'`2026-11-30 00:00:01,`T-early,`F1,`交易,`交易,`收入,`1.00,`1.00,`system,`,`T-early\n'
	|| E'`2026-11-30 11:00:00,`5001,`F2,`退款,`退款,`支出,`0.30,`0.70,`system,`退款\\n原路退回,`5001\n'
	|| E'资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\n`2.0,`1.0,`1.00,`1.0,`0.30\n', 'UTF8')) ->> 'rows' AS fund_rows;
SELECT kind, booked_at, flow_id, direction, amount, balance, remark FROM wxpay.fund_flow_rows ORDER BY line_no;

-- The download functions check their arguments before asking.
\set VERBOSITY sqlstate
SELECT wxpay_downloadbill('1900000109', '2026-11-30', 'EVERYTHING');
SELECT wxpay_downloadbill('1900000109', current_date + 2);
SELECT wxpay_downloadbill('1900000109', current_date - 100);
SELECT wxpay_downloadfundflow('1900000109', current_date - 1);
SELECT wxpay_downloadfundflow('1900000109', current_date - 1, 'basic');
-- A day not over yet in Beijing time has no complete bill: today (Beijing)
-- is refused by every way in, as backfill refuses it, so a partial bill
-- never makes the worker count its day as done.  One rule for all
-- (wxpay.bill_check_date): three months back is the first day WeChat Pay
-- keeps.
SELECT wxpay_downloadbill('1900000109', (now() AT TIME ZONE 'Asia/Shanghai')::date);
SELECT wxpay_downloadfundflow('1900000109', (now() AT TIME ZONE 'Asia/Shanghai')::date);
SELECT wxpay_bill_import('1900000109', (now() AT TIME ZONE 'Asia/Shanghai')::date, 'ALL',
	bill(ARRAY[pay_row(to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD') || ' 00:00:01', 'T-today', 'today', '1.00')],
		 '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00'));
SELECT * FROM wxpay_bill_backfill('1900000109', (now() AT TIME ZONE 'Asia/Shanghai')::date - 1,
								  (now() AT TIME ZONE 'Asia/Shanghai')::date);
SELECT wxpay.bill_check_date((now() AT TIME ZONE 'Asia/Shanghai')::date - 1, true)
	   = to_char((now() AT TIME ZONE 'Asia/Shanghai')::date - 1, 'YYYYMMDD') AS yesterday_has_a_bill,
	   wxpay.bill_check_date(((now() AT TIME ZONE 'Asia/Shanghai')::date - interval '3 months')::date, true) IS NOT NULL
	   AS three_months_back_has_one;
SELECT wxpay.bill_check_date(((now() AT TIME ZONE 'Asia/Shanghai')::date - interval '3 months')::date - 1, true);
\set VERBOSITY default

SELECT wxpay_downloadfundflow('1900000109', current_date - 1, 'basic');
SELECT wxpay_downloadbill('1900000109', current_date - 1, 'EVERYTHING');
-- An unknown merchant is the same error from every bill function, as from
-- the orders functions: not an empty answer, not one failure per day.
SELECT wxpay_bill_summary('1999999999', '2026-11-30');
SELECT * FROM wxpay_bill_recheck('1999999999', '2026-11-30');
SELECT * FROM wxpay_bill_backfill('1999999999', (now() AT TIME ZONE 'Asia/Shanghai')::date - 2,
								  (now() AT TIME ZONE 'Asia/Shanghai')::date - 1);
SELECT wxpay_downloadbill('1999999999', (now() AT TIME ZONE 'Asia/Shanghai')::date - 1);
SELECT wxpay_bill_import('1999999999', '2026-11-30', 'ALL', '');
SELECT wxpay_orderquery('1999999999', 'x');

-- Nothing of it is PUBLIC's.
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select
  FROM pg_class c WHERE c.relnamespace = 'wxpay'::regnamespace AND c.relkind IN ('r', 'v')
   AND c.relname ~ '^(bill|fund_flow|current_bills)' ORDER BY 1;
SELECT p.oid::regprocedure, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p WHERE p.proname ~ '^(wxpay_bill|wxpay_download|bill_)' ORDER BY p.proname;

-- bills_enabled is a merchant column like the others: checked by the
-- trigger, which never shows the row (its API key), and in merchant_info.
\set VERBOSITY default
UPDATE wxpay.merchants SET bills_enabled = NULL WHERE mch_id = '1900000109';
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base, bills_enabled)
VALUES ('1900000110', 'wx2', 'b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2', 'http://127.0.0.1:9', NULL);
INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base)
VALUES ('1900000110', 'wx2', 'b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2', 'http://127.0.0.1:9');
UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '1900000110';
SELECT mch_id, bills_enabled FROM wxpay.merchant_info ORDER BY 1;

-- Two shops, each allowed one merchant: every bill table and view shows
-- each only its own merchant's rows.
CREATE ROLE regress_wxpay_bills_a;
CREATE ROLE regress_wxpay_bills_b;
UPDATE wxpay.merchants SET allowed_roles = CASE mch_id WHEN '1900000109' THEN '{regress_wxpay_bills_a}'
	ELSE '{regress_wxpay_bills_b}' END::text[];
SELECT wxpay_bill_import('1900000110', '2026-11-30', 'ALL',
	bill(ARRAY[replace(pay_row('2026-11-30 09:00:00', 'T-b', 'b-only', '4.00'), '1900000109', '1900000110')],
		 '`1.0,`4.00,`0.00,`0.0,`0.00600,`4.00,`0.00')) ->> 'discrepancies' AS discrepancies_b;
INSERT INTO wxpay.bill_fetches (mch_id, bill_date, attempts, last_attempt_at, next_attempt_at, last_error)
VALUES ('1900000109', '2026-11-30', 1, now(), now(), 'Bill Creating'), ('1900000110', '2026-11-30', 1, now(), now(), 'Bill Creating');
-- README's finance role (Roles and row security), granted piece by
-- piece: the views need the tables they read.
GRANT USAGE ON SCHEMA wxpay TO regress_wxpay_bills_a, regress_wxpay_bills_b;
GRANT SELECT ON wxpay.bills, wxpay.bill_chunks, wxpay.bill_rows, wxpay.fund_flow_rows, wxpay.bill_fetches,
	wxpay.current_bills, wxpay.bill_discrepancies, wxpay.bill_status, wxpay.merchant_info
	TO regress_wxpay_bills_a, regress_wxpay_bills_b;
SET ROLE regress_wxpay_bills_a;
SELECT count(*) FROM wxpay.bill_discrepancies;
SELECT count(*) FROM wxpay.bill_status;
SELECT length(wxpay.bill_text(b)) > 0 AS whole FROM wxpay.bills b ORDER BY bill_id LIMIT 1;
RESET ROLE;
GRANT SELECT ON wxpay.orders, wxpay.refunds TO regress_wxpay_bills_a, regress_wxpay_bills_b;
GRANT EXECUTE ON FUNCTION wxpay.bill_text(wxpay.bills) TO regress_wxpay_bills_a, regress_wxpay_bills_b;
GRANT EXECUTE ON FUNCTION wxpay_bill_import(text, date, text, bytea), wxpay_bill_summary(text, date)
	TO regress_wxpay_bills_a, regress_wxpay_bills_b;
SET ROLE regress_wxpay_bills_a;
SELECT length(wxpay.bill_text(b)) > 0 AS whole FROM wxpay.bills b ORDER BY bill_id LIMIT 1;
RESET ROLE;
CREATE FUNCTION bill_visibility() RETURNS TABLE (relation text, merchants text) LANGUAGE sql AS $$
	SELECT 'bills', string_agg(DISTINCT mch_id, ',') FROM wxpay.bills
	UNION ALL SELECT 'bill_chunks', string_agg(DISTINCT b.mch_id, ',') FROM wxpay.bill_chunks c JOIN wxpay.bills b USING (bill_id)
	UNION ALL SELECT 'bill_chunks (count)', count(*)::text FROM wxpay.bill_chunks
	UNION ALL SELECT 'bill_rows (count)', count(*)::text FROM wxpay.bill_rows
	UNION ALL SELECT 'fund_flow_rows (count)', count(*)::text FROM wxpay.fund_flow_rows
	UNION ALL SELECT 'bill_fetches', string_agg(DISTINCT mch_id, ',') FROM wxpay.bill_fetches
	UNION ALL SELECT 'current_bills', string_agg(DISTINCT mch_id, ',') FROM wxpay.current_bills
	UNION ALL SELECT 'bill_discrepancies', string_agg(DISTINCT mch_id, ',') FROM wxpay.bill_discrepancies
	UNION ALL SELECT 'bill_status', string_agg(DISTINCT mch_id, ',') FROM wxpay.bill_status $$;
SELECT * FROM bill_visibility();
SET ROLE regress_wxpay_bills_a;
SELECT * FROM bill_visibility();
SELECT wxpay_bill_summary('1900000110', '2026-11-30') AS others_summary;
RESET ROLE;
SET ROLE regress_wxpay_bills_b;
SELECT * FROM bill_visibility();
-- Through the function a shop imports its own bill; by hand, nobody
-- writes a bill table, whatever was granted.
SELECT wxpay_bill_import('1900000110', '2026-11-29', 'ALL',
	bill(ARRAY[replace(pay_row('2026-11-29 09:00:00', 'T-b2', 'b-two', '4.00'), '1900000109', '1900000110')],
		 '`1.0,`4.00,`0.00,`0.0,`0.00600,`4.00,`0.00')) ->> 'outcome' AS own_import;
SELECT wxpay_bill_import('1900000109', '2026-11-27', 'ALL',
	bill(ARRAY[pay_row('2026-11-27 09:00:00', 'T-a', 'a-x', '4.00')], '`1.0,`4.00,`0.00,`0.0,`0.00600,`4.00,`0.00'));
RESET ROLE;
GRANT INSERT, UPDATE, DELETE ON wxpay.bills, wxpay.bill_rows, wxpay.bill_chunks, wxpay.fund_flow_rows, wxpay.bill_fetches
	TO regress_wxpay_bills_b;
SET ROLE regress_wxpay_bills_b;
DELETE FROM wxpay.bill_rows;
UPDATE wxpay.bills SET discrepancies = 0;
DELETE FROM wxpay.bill_chunks;
INSERT INTO wxpay.fund_flow_rows SELECT * FROM wxpay.fund_flow_rows;
DELETE FROM wxpay.bill_fetches;
RESET ROLE;
SELECT count(*) AS rows_still_there FROM wxpay.bill_rows WHERE bill_id IN (SELECT bill_id FROM wxpay.bills WHERE mch_id = '1900000110');
-- The extension's owner (here a superuser) may: an archive job's DELETE.
DELETE FROM wxpay.bill_fetches WHERE mch_id = '1900000110';
DROP FUNCTION bill_visibility();
REVOKE ALL ON ALL TABLES IN SCHEMA wxpay FROM regress_wxpay_bills_a, regress_wxpay_bills_b;
REVOKE ALL ON SCHEMA wxpay FROM regress_wxpay_bills_a, regress_wxpay_bills_b;
REVOKE ALL ON FUNCTION wxpay_bill_import(text, date, text, bytea), wxpay_bill_summary(text, date), wxpay.bill_text(wxpay.bills)
	FROM regress_wxpay_bills_a, regress_wxpay_bills_b;
UPDATE wxpay.merchants SET allowed_roles = NULL;
DROP ROLE regress_wxpay_bills_a;
DROP ROLE regress_wxpay_bills_b;

-- README's archive of old days, as a superuser: rows first, then the bills
-- (their chunks go with them).
BEGIN;
DELETE FROM wxpay.bill_rows WHERE bill_id IN (SELECT bill_id FROM wxpay.bills WHERE bill_date < '2026-11-30');
DELETE FROM wxpay.fund_flow_rows WHERE bill_id IN (SELECT bill_id FROM wxpay.bills WHERE bill_date < '2026-11-30');
DELETE FROM wxpay.bills WHERE bill_date < '2026-11-30';
COMMIT;
SELECT bill_date, count(*) AS bills, sum((SELECT count(*) FROM wxpay.bill_chunks c WHERE c.bill_id = b.bill_id)) AS chunks
  FROM wxpay.bills b GROUP BY 1 ORDER BY 1;
SELECT count(*) AS orphan_rows FROM wxpay.bill_rows r WHERE NOT EXISTS (SELECT FROM wxpay.bills b WHERE b.bill_id = r.bill_id);
