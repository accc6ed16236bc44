# Nobody waits forever behind an application's lock.  The worker, whose
# order an application locks while its query is in flight, gives up on
# that row after wxpay.lock_timeout and goes on with the others; a first
# notification for a locked order is answered FAIL (WeChat Pay retries it)
# within that time, its body on record, and the retry is accepted.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WxTest;

my $sim = wx_sim();
my $node = wx_node('locks', 'wxpay.poll_interval' => '1h', 'wxpay.lock_timeout' => '1s',
	'wxpay.http_timeout' => '5s');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $order = sub {
	my ($no) = @_;
	$sql->("SELECT wxpay_unifiedorder('10000100', '$no', 100, 'Locks', '203.0.113.7')");
	return sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => $no, notify => JSON::PP::false });
};
$order->('lk-1');
$order->('lk-2');

# lk-1's query is slow; while it is in flight an application locks lk-1.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'delay', delay_ms => 1500, count => 1, path => '/pay/orderquery' });
$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no = 'lk-1'");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND query = 'wxpay: waiting for WeChat Pay'"),
	'the worker has lk-1\'s query in flight');
my $app = $node->background_psql('postgres');
$app->query_safe("BEGIN; SELECT 1 FROM wxpay.orders WHERE out_trade_no = 'lk-1' FOR UPDATE;");

# The worker gives up on lk-1 and serves lk-2 while the lock is held.
$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no = 'lk-2'");
my $t0 = time;
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'lk-2'"),
	'another order is reconciled while lk-1 stays locked');
cmp_ok(time - $t0, '<', 10, 'within seconds, not after the lock is released');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'lk-1'"), 'NOTPAY', 'lk-1 is untouched meanwhile');
ok($node->log_contains(qr/could not apply the answer for lk-1: canceling statement due to lock timeout/),
	'and the log says why');
is($sql->("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND wait_event_type = 'Lock'"),
	'0', 'the worker is not waiting on a lock');

# A first notification for the locked order: a FAIL within the bound,
# the body on record; the retry after the lock goes is accepted.
my $body = sim_call($sim, 'POST', '/_sim/notification', { mch_id => '10000100', out_trade_no => 'lk-1' })->{body};
$t0 = time;
like($sql->("SELECT wxpay_handle_notify(\$b\$$body\$b\$)"), qr/FAIL/, 'a notification for a locked order is answered FAIL');
cmp_ok(time - $t0, '<', 5, 'after about wxpay.lock_timeout, not indefinitely');
like($sql->("SELECT reason FROM wxpay.notifications ORDER BY id DESC LIMIT 1"), qr/lock timeout/,
	'its body is on record with the reason');
$app->query_safe('COMMIT');
$app->quit;
like($sql->("SELECT wxpay_handle_notify(\$b\$$body\$b\$)"), qr/SUCCESS/, 'WeChat Pay\'s retry is accepted');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'lk-1'"), 'SUCCESS', 'and pays the order');

$node->stop;
done_testing();
