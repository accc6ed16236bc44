# API v3 amounts are JSON integers (wxpay-v3-api.md §5.3, §5.4, §6.4): a
# genuinely signed notification whose amount.total (or another amount) is a
# string "100" is recorded and refused with a failure reply, never raised,
# and pays nothing; a signed answer with string amounts is a protocol error
# (untrusted, WX007), for a query as for a refund, whose refund then stays
# PROCESSING for the worker's query (its outcome at WeChat Pay is unknown).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('v3amounts', 'wxpay.poll_interval' => '1h');
my $sql = sub { $node->safe_psql('postgres', shift) };
my $m = '1900005401';
wx_merchant_v3($node, $sim, mch_id => $m, key_mode => 'certificate');

# A notification of a paid order, its resource's fields overridden.
sub notification
{
	my ($no, $fields) = @_;
	$sql->("SELECT wxpay_unifiedorder('$m', '$no', 100, 'Amounts', '203.0.113.7')");
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => $no, notify => JSON::PP::false });
	my $n = sim_call($sim, 'POST', '/_sim/notification', { mch_id => $m, out_trade_no => $no, fields => $fields });
	return $sql->("SELECT status || '|' || coalesce(reply, '') FROM " . wx_notify_v3_call($m, $n->{headers}, $n->{body}));
}

my %cases = (
	'total' => { amount => { total => '100', payer_total => 100, currency => 'CNY', payer_currency => 'CNY' } },
	'payer_total' => { amount => { total => 100, payer_total => '100', currency => 'CNY', payer_currency => 'CNY' } },
	'fraction' => { amount => { total => 100.5, payer_total => 100, currency => 'CNY', payer_currency => 'CNY' } },
	'promotion' => { promotion_detail => [ { coupon_id => 'c1', amount => '1' } ] });
for my $case (sort keys %cases)
{
	like(notification("n-$case", $cases{$case}), qr/^400\|.*FAIL/, "$case: a string or fraction amount is answered 400 FAIL");
	is($sql->("SELECT outcome || '|' || verified || '|' || (reason LIKE '%breaks the protocol: % is not a JSON integer')"
		  . " FROM wxpay.notifications WHERE out_trade_no = 'n-$case'"), 'rejected|true|true',
		"$case: recorded, verified, refused for the type");
	is($sql->("SELECT state FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = 'n-$case'"), 'NOTPAY',
		"$case: and nothing paid");
}
is(notification('n-genuine', {}), '204|', 'the same notification with integer amounts pays');

# Answers: a query and a refund answered with amounts as strings.
sim_call($sim, 'POST', '/_sim/v3/faults', { mode => 'string_amount', path => "/v3/pay/transactions/out-trade-no/n-total" });
my ($state, $err) = sql_error($node, "SELECT wxpay_orderquery('$m', 'n-total')");
is($state, 'WX007', 'a query answer with a string amount.total is untrusted');
like($err, qr/breaks the protocol: total is not a JSON integer/, 'saying which member');
is($sql->("SELECT state FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = 'n-total'"), 'NOTPAY', 'nothing applied');
is(decode_json($sql->("SELECT wxpay_orderquery('$m', 'n-total')"))->{trade_state}, 'SUCCESS', 'the next answer is read');

sim_call($sim, 'POST', '/_sim/v3/faults', { mode => 'string_amount', path => '/v3/refund/domestic/refunds' });
($state, $err) = sql_error($node, "SELECT wxpay_refund('$m', 'n-genuine', 'r-string', 10, '{}')");
is($state, 'WX007', 'a refund answer with string amounts is untrusted');
is($sql->("SELECT state || '|' || (refund_id IS NULL) FROM wxpay.refunds WHERE out_refund_no = 'r-string'"), 'PROCESSING|true',
	'the refund stays PROCESSING, nothing read from the answer');

done_testing();
