# The worker reconciles pending orders with nobody calling anything: a paid
# order whose notification was lost, an expired order, a burst of faults,
# a killed worker, a server restart, and the query schedule.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('reconcile', 'wxpay.poll_interval' => '300ms', 'wxpay.http_timeout' => '2s');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $order = sub {
	my ($no) = @_;
	$sql->("SELECT wxpay_unifiedorder('10000100', '$no', 100, 'Reconcile', '203.0.113.7')");
};
my $pay = sub {
	my ($no) = @_;
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => $no, notify => JSON::PP::false });
};
my $state_is = sub {
	my ($no, $state) = @_;
	$node->poll_query_until('postgres', "SELECT state = '$state' FROM wxpay.orders WHERE out_trade_no = '$no'");
};

# A payment whose notification never arrives.
$order->('lost-1');
$pay->('lost-1');
ok($state_is->('lost-1', 'SUCCESS'), 'a paid order without notification becomes SUCCESS');
is($sql->("SELECT source FROM wxpay.order_events WHERE out_trade_no = 'lost-1' AND new_state = 'SUCCESS'"),
	'query', 'by the worker\'s query');
ok($sql->("SELECT transaction_id IS NOT NULL AND paid_at IS NOT NULL FROM wxpay.orders WHERE out_trade_no = 'lost-1'") eq 't',
	'with its transaction_id and paid_at');
ok($node->log_contains(qr/order lost-1 of merchant 10000100 reconciled to SUCCESS/), 'and a LOG line says so');

# An expired order is closed (after WeChat's five-minute minimum age).
$order->('expired-1');
$sql->("UPDATE wxpay.orders SET time_expire = now() - interval '1 minute', created_at = now() - interval '10 minutes'"
	. " WHERE out_trade_no = 'expired-1'");
sim_call($sim, 'POST', '/_sim/backdate', { mch_id => '10000100', out_trade_no => 'expired-1', seconds => 600 });
ok($state_is->('expired-1', 'CLOSED'), 'an expired order is closed');
is($sql->("SELECT source FROM wxpay.order_events WHERE out_trade_no = 'expired-1' AND new_state = 'CLOSED'"),
	'close', 'by closeorder');
is(sim_call($sim, 'GET', '/_sim/orders?mch_id=10000100&out_trade_no=expired-1')->{state}, 'CLOSED',
	'and WeChat Pay has it closed too');

# A burst of faults is ridden out; the order still gets there.
$order->('burst-1');
$pay->('burst-1');
sim_call($sim, 'POST', '/_sim/faults', { mode => $_, count => 2, path => '/pay/orderquery' })
  for qw(http500 garbage reset badsign wrong_appid);
# Ten failed attempts: the order is kept due so that the backoff after them
# (0.3 s doubling: 150 s before the eleventh) does not set the pace.
ok(wx_poll_due($node, "out_trade_no = 'burst-1'",
	"SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'burst-1'"),
	'a burst of 500s, garbage, resets and forged answers is ridden out');
ok($sql->("SELECT query_count > 1 FROM wxpay.orders WHERE out_trade_no = 'burst-1'") eq 't',
	'each fault cost an attempt');
is($sql->("SELECT count(*) FROM wxpay.order_events WHERE out_trade_no = 'burst-1' AND new_state = 'SUCCESS'"), '1',
	'and the forged answers changed nothing');

# A forged answer alone never pays an order.
$order->('forged-1');
sim_call($sim, 'POST', '/_sim/faults', { mode => 'badsign', count => -1, path => '/pay/orderquery' });
$pay->('forged-1');
ok($node->poll_query_until('postgres',
	"SELECT query_count >= 2 AND last_error LIKE '%signature%' FROM wxpay.orders WHERE out_trade_no = 'forged-1'"),
	'answers with a bad signature are recorded as errors');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'forged-1'"), 'NOTPAY', 'and never applied');
sim_call($sim, 'POST', '/_sim/faults', { mode => 'none' });
ok($state_is->('forged-1', 'SUCCESS'), 'the genuine answer then is');

# The worker killed mid-work comes back and finishes the job.
$order->('kill-1');
my $pid = $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
kill 'KILL', $pid;
$pay->('kill-1');
ok($state_is->('kill-1', 'SUCCESS'), 'after SIGKILL the worker comes back and reconciles');

# A server restart loses nothing.
$order->('restart-1');
$node->stop('fast');
$pay->('restart-1');
$node->start;
ok($state_is->('restart-1', 'SUCCESS'), 'after a restart the pending order is reconciled');

# The schedule: first query after poll_interval (300 ms here), then
# doubling intervals: due at 0.3 s, then +0.3, +0.6, +1.2 s (0.3, 0.6, 1.2,
# 2.4 s after creation).  Watched for 1.5 s: at least two queries and at
# most as many as were due by the time the count is read (three, unless
# reading it was slower than 0.9 s).
$order->('sched-1');
$node->poll_query_until('postgres',
	"SELECT now() - created_at >= interval '1.5 s' FROM wxpay.orders WHERE out_trade_no = 'sched-1'");
my ($count, $age) = split /\|/, $sql->("SELECT query_count, extract(epoch FROM clock_timestamp() - created_at)"
	. " FROM wxpay.orders WHERE out_trade_no = 'sched-1'");
my $due = grep { 0.3 * 2**$_ <= $age } 0 .. 16;
ok($count >= 2 && $count <= $due,
	sprintf("a pending order is not queried more often than the schedule says (%d in %.1f s, %d due)", $count, $age, $due));
ok($sql->("SELECT next_query_at > now() AND last_error IS NULL FROM wxpay.orders WHERE out_trade_no = 'sched-1'") eq 't',
	'and worker_status shows when it is due next');
is($sql->("SELECT count(*) FROM wxpay.worker_status WHERE out_trade_no = 'sched-1'"), '1', 'pending orders are in worker_status');

$node->stop;
done_testing();
