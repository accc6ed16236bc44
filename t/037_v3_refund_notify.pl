# API v3 refund notifications (wxpay-v3-api.md §5.4): REFUND.SUCCESS,
# REFUND.ABNORMAL and REFUND.CLOSED, delivered by the simulator to the
# merchant's v3 notify URL, move the refund themselves (they are signed and
# authenticated, unlike v2's): SUCCESS, CHANGE and REFUNDCLOSE, source
# notify, once; the delivery stops at the first 204.  For both key modes.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--notify-scale', '0.002');
my $node = wx_node('v3refunds', 'wxpay.poll_interval' => '1h');
my $port = PostgreSQL::Test::Cluster::get_free_port();
wx_receiver($node, $port);
my $sql = sub { $node->safe_psql('postgres', shift) };

my %kinds = (SUCCESS => [ 'SUCCESS', 'REFUND.SUCCESS' ], CHANGE => [ 'CHANGE', 'REFUND.ABNORMAL' ],
	REFUNDCLOSE => [ 'REFUNDCLOSE', 'REFUND.CLOSED' ]);
my $i = 0;
for my $mode (qw(certificate public_key))
{
	my $mch = '190000000' . ++$i;
	wx_merchant_v3($node, $sim, mch_id => $mch, appid => "wx000000000000000$i", key_mode => $mode,
		notify_url => "http://127.0.0.1:$port/v3/notify/$mch");
	my $order = "refunded-$mode";
	$sql->("SELECT wxpay_unifiedorder('$mch', '$order', 100, 'Refunded', '203.0.113.7')");
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => $order });
	ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = '$order'"),
		"$mode: the order is paid by its v3 notification");
	for my $state (sort keys %kinds)
	{
		my $no = "r-$mode-$state";
		$sql->("SELECT wxpay_refund('$mch', '$order', '$no', 10)");
		is($sql->("SELECT state FROM wxpay.refunds WHERE out_refund_no = '$no'"), 'PROCESSING', "$mode $state: the refund is accepted");
		sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $mch, out_refund_no => $no, state => $state,
			notify => JSON::PP::true });
		ok($node->poll_query_until('postgres',
			"SELECT state = '$kinds{$state}[0]' FROM wxpay.refunds WHERE out_refund_no = '$no'"),
			"$mode $state: $kinds{$state}[1] moves the refund to $kinds{$state}[0]");
		is($sql->("SELECT string_agg(new_state || ':' || source, ',' ORDER BY id) FROM wxpay.refund_events WHERE out_refund_no = '$no'"),
			"PROCESSING:refund,$kinds{$state}[0]:notify", "$mode $state: once, by the notification");
		is($sql->("SELECT kind || ' ' || outcome || ' ' || verified || ' ' || (resource ->> 'refund_status')"
			  . " FROM wxpay.notifications WHERE out_refund_no = '$no'"),
			"refund accepted true " . { SUCCESS => 'SUCCESS', CHANGE => 'ABNORMAL', REFUNDCLOSE => 'CLOSED' }->{$state},
			"$mode $state: recorded as an accepted, verified refund notification");
		my $d = sim_deliveries($sim, "out_refund_no=$no");
		is(join(',', map { $_->{http_status} } @$d), '204', "$mode $state: delivered once, answered 204");
	}
	is($sql->("SELECT success_time IS NOT NULL AND refund_recv_accout IS NOT NULL FROM wxpay.refunds WHERE out_refund_no = 'r-$mode-SUCCESS'"),
		't', "$mode: the successful refund keeps its time and the account it went to");
}

is($sql->("SELECT count(*) FROM wxpay.notifications WHERE outcome = 'rejected'"), '0', 'no notification was refused');
wx_audit($node, $sim, '1900000001', 'certificate');
wx_audit($node, $sim, '1900000002', 'public key');
$node->stop;
done_testing();
