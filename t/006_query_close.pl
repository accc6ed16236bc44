# wxpay_orderquery and wxpay_closeorder called from SQL, and a poisoned row
# that cannot stop the worker.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('query_close', 'wxpay.poll_interval' => '1h');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $order = sub { $sql->("SELECT wxpay_unifiedorder('10000100', '$_[0]', 100, 'Query', '203.0.113.7')") };
my $pay = sub {
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => $_[0], notify => JSON::PP::false, @_[1 .. $#_] });
};
my $state = sub { $sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = '$_[0]'") };

# orderquery: decided by trade_state, applied under the same rules.
$order->('q-1');
is($sql->("SELECT wxpay_orderquery('10000100', 'q-1') ->> 'trade_state'"), 'NOTPAY', 'an unpaid order queries as NOTPAY');
is($state->('q-1'), 'NOTPAY', 'and stays so');
$pay->('q-1');
is($sql->("SELECT wxpay_orderquery('10000100', 'q-1') ->> 'trade_state'"), 'SUCCESS', 'a paid one as SUCCESS');
is($sql->("SELECT state || '/' || source FROM wxpay.orders JOIN wxpay.order_events e USING (mch_id, out_trade_no)"
	. " WHERE out_trade_no = 'q-1' AND e.new_state = 'SUCCESS'"), 'SUCCESS/query', 'applied, with source query');

$order->('q-2');
$pay->('q-2', total_fee => 1);
my ($code, $msg) = sql_error($node, "SELECT wxpay_orderquery('10000100', 'q-2')");
like($msg, qr/total_fee 1 does not match the order's 100 fen/, 'a SUCCESS with another amount is refused');
is($state->('q-2'), 'NOTPAY', 'and not applied');

$sql->("INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)"
	. " VALUES ('10000100', 'q-unknown', 'APP', 'Local only', 1, '1.2.3.4')");
($code, $msg) = sql_error($node, "SELECT wxpay_orderquery('10000100', 'q-unknown')");
is($code, 'WX005', 'ORDERNOTEXIST is an error (WX005, not found)');
like($msg, qr/DETAIL:\s+err_code: ORDERNOTEXIST/, 'that names the err_code in the DETAIL');
# Closing an order WeChat Pay never had closes it here, for the SQL
# function as for the worker (one reading of the answer).
is($sql->("SELECT wxpay_closeorder('10000100', 'q-unknown') ->> 'err_code'"), 'ORDERNOTEXIST',
	'closeorder of an order WeChat Pay never had answers ORDERNOTEXIST');
is($state->('q-unknown'), 'CLOSED', 'and the order is CLOSED here');
($code) = sql_error($node, "SELECT wxpay_orderquery('10000100', 'q-nowhere')");
is($code, '22023', 'an order unknown here is a bad argument');

# closeorder: WeChat's five-minute rule reported as is; CLOSED once allowed.
$order->('c-1');
($code, $msg) = sql_error($node, "SELECT wxpay_closeorder('10000100', 'c-1')");
like($msg, qr/TRADE_STATE_ERROR/, 'closing a fresh order reports WeChat Pay\'s answer');
is($state->('c-1'), 'NOTPAY', 'and leaves it open');
sim_call($sim, 'POST', '/_sim/backdate', { mch_id => '10000100', out_trade_no => 'c-1', seconds => 600 });
is($sql->("SELECT wxpay_closeorder('10000100', 'c-1') ->> 'result_code'"), 'SUCCESS', 'an old enough order closes');
is($sql->("SELECT state || '/' || (SELECT source FROM wxpay.order_events WHERE out_trade_no = 'c-1' ORDER BY id DESC LIMIT 1)"
	. " FROM wxpay.orders WHERE out_trade_no = 'c-1'"), 'CLOSED/close', 'marked CLOSED by close');
is($sql->("SELECT wxpay_closeorder('10000100', 'c-1') ->> 'err_code'"), 'ORDERCLOSED', 'closing again is ORDERCLOSED, not an error');

$order->('c-2');
$pay->('c-2');
($code, $msg) = sql_error($node, "SELECT wxpay_closeorder('10000100', 'c-2')");
is($code, 'WX002', 'ORDERPAID is an error (WX002, order paid)');
like($msg, qr/err_code: ORDERPAID.*HINT:.*wxpay_orderquery records the payment/s, 'that says the order was paid and what to do');
($code) = sql_error($node, "SELECT wxpay_closeorder('10000100', 'q-1')");
is($code, '55000', 'an order paid here cannot be closed');

# A poisoned row costs only its own attempts.
$sql->(q{
	CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.out_trade_no = 'poison-1' AND NEW.state <> OLD.state THEN
			RAISE EXCEPTION 'poisoned row';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER poison BEFORE UPDATE ON wxpay.orders FOR EACH ROW EXECUTE FUNCTION poison();
});
$order->($_) for qw(poison-1 healthy-1);
$pay->($_) for qw(poison-1 healthy-1);
$sql->("ALTER SYSTEM SET wxpay.poll_interval = '200ms'; SELECT pg_reload_conf()");
$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no IN ('poison-1', 'healthy-1')");
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'healthy-1'"),
	'the worker reconciles the healthy order');
ok($node->poll_query_until('postgres',
	"SELECT query_count >= 2 AND last_error LIKE '%poisoned row%' FROM wxpay.orders WHERE out_trade_no = 'poison-1'"),
	'and keeps recording the poisoned row\'s error');
is($state->('poison-1'), 'NOTPAY', 'without applying it');
ok($node->log_contains(qr/could not apply the answer for poison-1: poisoned row/), 'with a WARNING in the log');

$node->stop;
done_testing();
