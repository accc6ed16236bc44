# Crashes in the middle of in-store payments.  The worker killed inside the
# window of several unsettled orders: after the restart every one is
# settled (nothing left USERPAYING), the same here as at WeChat Pay, and
# nothing was charged twice or sent twice.  The process sending a micropay
# killed while WeChat Pay takes the money: the order was committed before
# the request, and the worker finds the payment.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('micropay_crash', 'wxpay.poll_interval' => '1h', 'wxpay.micropay_interval' => '500ms',
	'wxpay.micropay_window' => '5s');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $code = sub { my ($scenario, $n) = @_; sprintf('13%s%d1234567890123', $scenario, $n // 0) };
my $there = sub { sim_call($sim, 'GET', "/_sim/orders?mch_id=10000100&out_trade_no=$_[0]") };
my $worker_pid = sub { $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'") };

# Unsettled orders of every kind, each queried at least once, then the kill.
my %scenarios = ('c-forever' => [ '02', 0 ], 'c-late' => [ '01', 3 ], 'c-bank' => [ '05', 5 ],
	'c-race' => [ '06', 0 ], 'c-recall' => [ '07', 2 ]);
for my $no (sort keys %scenarios)
{
	$sql->("SELECT wxpay_micropay('10000100', '$no', 100, 'Till', '203.0.113.7', '" . $code->(@{ $scenarios{$no} }) . "')");
}
ok($node->poll_query_until('postgres', "SELECT bool_and(query_count >= 1) FROM wxpay.orders WHERE out_trade_no LIKE 'c-%'"),
	'the worker is inside the window of every order');
my $pid = $worker_pid->();
kill 'KILL', $pid;
ok(wx_poll_through_crash($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"
	  . " AND pid <> $pid"), 'the worker is killed in the middle of the window, and comes back');
ok($node->poll_query_until('postgres', "SELECT bool_and(NOT wxpay.order_state_pending(state)) FROM wxpay.orders"
	  . " WHERE out_trade_no LIKE 'c-%'"), 'every order is settled after the restart: nothing left USERPAYING');
for my $no (sort keys %scenarios)
{
	my $t = $there->($no);
	my $here = $sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = '$no'");
	is($here, $t->{state}, "$no: $here here and at WeChat Pay");
	is($t->{micropay_calls}, 1, "$no: sent once");
	ok(!($here eq 'SUCCESS' && $t->{reversed_paid}), "$no: not both kept as paid and reversed");
}
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'c-forever'"), 'REVOKED',
	'the order the payer never confirmed is reversed');
is($sql->("SELECT count(*) FROM wxpay.order_events WHERE out_trade_no LIKE 'c-%' AND new_state = 'SUCCESS'"),
	$sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no LIKE 'c-%' AND state = 'SUCCESS'"),
	'every paid order was paid once');

# The micropay's own process killed while WeChat Pay takes the money (the
# answer is slow): the order was committed first, and the worker finds it.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'delay', delay_ms => 5000, count => 1, path => '/pay/micropay' });
my $till = $node->background_psql('postgres', on_error_stop => 0);
$till->query_until(qr/sent/, "\\echo sent\nSELECT wxpay_micropay('10000100', 'c-killed', 100, 'Till', '203.0.113.7', '"
	  . $code->('00') . "');\n");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay micropay'"
	  . " AND query = 'wxpay: waiting for WeChat Pay'"), 'a micropay in flight in its own process');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'c-killed'"), 'NOTPAY', 'its order is on record already');
$pid = $worker_pid->();
kill 'KILL', $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay micropay'");
eval { $till->quit };
ok(wx_poll_through_crash($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"
	  . " AND pid <> $pid"), 'the server restarts after the kill');
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'c-killed'"),
	'the worker finds the payment WeChat Pay took');
is($sql->("SELECT string_agg(new_state || ':' || source, ' ' ORDER BY id) FROM wxpay.order_events"
	  . " WHERE out_trade_no = 'c-killed'"), 'NOTPAY:micropay SUCCESS:query', 'recorded, then paid by the query');
is($there->('c-killed')->{micropay_calls}, 1, 'sent once, charged once');

wx_audit($node, $sim, '10000100', 'crash');
$node->stop;
done_testing();
