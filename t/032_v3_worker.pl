# The worker reconciles API v3 orders and refunds exactly as v2 ones,
# through the same endpoint descriptions (wxpay-v3-api.md §6): a payment
# whose notification was lost is found by a query, an expired order is
# closed (204), a refund is recorded before it is sent and its outcome is
# found by a refund query, for a certificate merchant and a public-key one.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $node = wx_node('v3worker', 'wxpay.poll_interval' => '300ms', 'wxpay.http_timeout' => '5s');
my $sim = wx_sim();
my $sql = sub { $node->safe_psql('postgres', shift) };

for my $mode ('certificate', 'public_key')
{
	my $m = $mode eq 'certificate' ? '1900000109' : '1900000110';
	wx_merchant_v3($node, $sim, mch_id => $m, key_mode => $mode);
	my $state_is = sub {
		my ($no, $state) = @_;
		return wx_poll_due($node, "out_trade_no = '$no'",
			"SELECT state = '$state' FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = '$no'");
	};

	# A payment whose notification never came.
	$sql->("SELECT wxpay_unifiedorder('$m', '$mode-lost', 300, 'v3 goods', '127.0.0.1', 'APP', '{}')");
	my $paid = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => "$mode-lost", notify => JSON::PP::false });
	ok($state_is->("$mode-lost", 'SUCCESS'), "$mode: the worker finds the lost payment");
	is($sql->("SELECT o.transaction_id || ' ' || e.source FROM wxpay.orders o JOIN wxpay.order_events e USING (mch_id, out_trade_no)"
		  . " WHERE mch_id = '$m' AND out_trade_no = '$mode-lost' AND e.new_state = 'SUCCESS'"),
		"$paid->{transaction_id} query", "$mode: by a v3 query, with WeChat Pay's transaction_id");

	# An expired order is closed.
	$sql->("SELECT wxpay_unifiedorder('$m', '$mode-expired', 100, 'v3 goods', '127.0.0.1', 'NATIVE', '{}')");
	$sql->("UPDATE wxpay.orders SET time_expire = now() - interval '1 minute', created_at = now() - interval '10 minutes'"
		  . " WHERE mch_id = '$m' AND out_trade_no = '$mode-expired'");
	ok($state_is->("$mode-expired", 'CLOSED'), "$mode: an expired order is closed");
	is($sql->("SELECT source FROM wxpay.order_events WHERE mch_id = '$m' AND out_trade_no = '$mode-expired' AND new_state = 'CLOSED'"),
		'close', "$mode: by the v3 close");
	is(sim_call($sim, 'GET', "/_sim/orders?mch_id=$m&out_trade_no=$mode-expired")->{state}, 'CLOSED', "$mode: closed there too");

	# A refund: recorded, accepted, and its outcome found by the worker.
	my $r = decode_json($sql->("SELECT wxpay_refund('$m', '$mode-lost', '$mode-r1', 120, '{\"refund_desc\": \"broken\"}')"));
	is($r->{status}, 'PROCESSING', "$mode: wxpay_refund returns the v3 refund object");
	is($r->{amount}{refund}, 120, "$mode: of the amount asked");
	is($sql->("SELECT state || ' ' || (refund_id = '$r->{refund_id}') FROM wxpay.refunds WHERE mch_id = '$m' AND out_refund_no = '$mode-r1'"),
		'PROCESSING true', "$mode: the refund is recorded with WeChat Pay's refund_id");
	is($sql->("SELECT state FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = '$mode-lost'"), 'REFUND',
		"$mode: the order is REFUND");
	sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $m, out_refund_no => "$mode-r1", state => 'SUCCESS' });
	ok($node->poll_query_until('postgres',
		"SELECT state = 'SUCCESS' AND success_time IS NOT NULL FROM wxpay.refunds WHERE mch_id = '$m' AND out_refund_no = '$mode-r1'"),
		"$mode: the worker's refund query finds it refunded");

	# A refund that goes ABNORMAL there is CHANGE here (v2's word for it).
	decode_json($sql->("SELECT wxpay_refund('$m', '$mode-lost', '$mode-r2', 100, '{}')"));
	sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $m, out_refund_no => "$mode-r2", state => 'CHANGE' });
	ok($node->poll_query_until('postgres',
		"SELECT state = 'CHANGE' FROM wxpay.refunds WHERE mch_id = '$m' AND out_refund_no = '$mode-r2'"),
		"$mode: an ABNORMAL refund is CHANGE");

	# A refund WeChat Pay refuses (400 PARAM_ERROR, a currency it does not
	# take): closed here, its amount free again.
	my ($state, $err) = sql_error($node, "SELECT wxpay_refund('$m', '$mode-lost', '$mode-r3', 80, '{\"refund_fee_type\": \"USD\"}')");
	is($state, 'WX000', "$mode: a refund refused with PARAM_ERROR");
	like($err, qr/err_code: PARAM_ERROR/, "$mode: with WeChat Pay's code");
	is($sql->("SELECT state FROM wxpay.refunds WHERE mch_id = '$m' AND out_refund_no = '$mode-r3'"), 'REFUNDCLOSE',
		"$mode: recorded first, closed after the refusal");
	wx_audit($node, $sim, $m, $mode);
}

done_testing();
