# PAYERROR (the bank refused a payment) is pending, not final: the payer
# may still pay the same prepay_id.  The worker claims such orders like any
# unpaid one, finds a later payment, and closes them once expired.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('payerror', 'wxpay.poll_interval' => '200ms');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $state_is = sub {
	my ($no, $state) = @_;
	$node->poll_query_until('postgres', "SELECT state = '$state' FROM wxpay.orders WHERE out_trade_no = '$no'");
};
my $pay = sub {
	my ($no, $state) = @_;
	sim_call($sim, 'POST', '/_sim/pay',
		{ mch_id => '10000100', out_trade_no => $no, trade_state => $state, notify => JSON::PP::false });
};

# A failed payment is recorded, and the order stays followed.
$sql->("SELECT wxpay_unifiedorder('10000100', 'pe-1', 100, 'PAYERROR', '203.0.113.7')");
$pay->('pe-1', 'PAYERROR');
ok($state_is->('pe-1', 'PAYERROR'), 'the worker records PAYERROR');
is($sql->("SELECT count(*) FROM wxpay.worker_status WHERE out_trade_no = 'pe-1'"), '1',
	'a PAYERROR order is in worker_status');
my $count = $sql->("SELECT query_count FROM wxpay.orders WHERE out_trade_no = 'pe-1'");
ok($node->poll_query_until('postgres', "SELECT query_count > $count FROM wxpay.orders WHERE out_trade_no = 'pe-1'"),
	'and is queried again');

# The payer tries again and pays: the worker finds it.
$pay->('pe-1', 'SUCCESS');
ok($state_is->('pe-1', 'SUCCESS'), 'a later payment of a PAYERROR order is applied');
is($sql->("SELECT string_agg(coalesce(old_state, '-') || '>' || new_state || ':' || source, ' ' ORDER BY id)"
	. " FROM wxpay.order_events WHERE out_trade_no = 'pe-1'"),
	'->NOTPAY:unifiedorder NOTPAY>PAYERROR:query PAYERROR>SUCCESS:query', 'with its history');

# An expired PAYERROR order is closed.
$sql->("SELECT wxpay_unifiedorder('10000100', 'pe-2', 100, 'PAYERROR', '203.0.113.7')");
$pay->('pe-2', 'PAYERROR');
ok($state_is->('pe-2', 'PAYERROR'), 'a second order fails to pay');
$sql->("UPDATE wxpay.orders SET time_expire = now() - interval '1 minute', created_at = now() - interval '10 minutes'"
	. " WHERE out_trade_no = 'pe-2'");
sim_call($sim, 'POST', '/_sim/backdate', { mch_id => '10000100', out_trade_no => 'pe-2', seconds => 600 });
ok($state_is->('pe-2', 'CLOSED'), 'an expired PAYERROR order is closed by the worker');
is(sim_call($sim, 'GET', '/_sim/orders?mch_id=10000100&out_trade_no=pe-2')->{state}, 'CLOSED',
	'at WeChat Pay too');

$node->stop;
done_testing();
