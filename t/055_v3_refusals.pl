# API v3 refusals and what they leave behind (wxpay-v3-api.md §6.6, the
# retry-safety table; one table of codes in remote_error.c): a refund
# refused with a code that says WeChat Pay did not and will not make it is
# closed; one refused with SIGN_ERROR, NOT_ENOUGH or a code we do not know
# is never closed, not by the refusal and not by the worker's refund
# queries (404 until it exists), and the identical retry with the same
# out_refund_no makes it once.  A close at expiry answered ORDER_PAID is
# followed by a query that records the payment, never CLOSED.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $node = wx_node('v3refusals', 'wxpay.poll_interval' => '300ms');
my $sim = wx_sim();
sim_call($sim, 'POST', '/_sim/stats/reset', {});
my $sql = sub { $node->safe_psql('postgres', shift) };
my $m = '1900005501';
wx_merchant_v3($node, $sim, mch_id => $m);
$sql->("SELECT wxpay_unifiedorder('$m', 'o-1', 1000, 'v3 goods', '127.0.0.1', 'APP', '{}')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => 'o-1', notify => JSON::PP::false });
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'o-1'"),
	'an order paid');

# The next refund request is refused unprocessed with status and code.
sub refused_refund
{
	my ($no, $status, $code) = @_;
	sim_call($sim, 'POST', '/_sim/v3/faults',
		{ mode => 'refuse', status => $status, code => $code, path => '/v3/refund/domestic/refunds' });
	return sql_error($node, "SELECT wxpay_refund('$m', 'o-1', '$no', 10, '{}')");
}
my $refund_state = sub { $sql->("SELECT state FROM wxpay.refunds WHERE out_refund_no = '$_[0]'") };

# Refused for good: nothing was made, the refund is closed, its amount free.
for my $case ([ 400, 'PARAM_ERROR' ], [ 400, 'INVALID_REQUEST' ], [ 403, 'NO_AUTH' ], [ 403, 'USER_ACCOUNT_ABNORMAL' ],
	[ 403, 'RULE_LIMIT' ], [ 404, 'ORDER_NOT_EXIST' ])
{
	my ($status, $code) = @$case;
	my ($state, $err) = refused_refund("r-$code", $status, $code);
	like($err, qr/err_code: $code/, "$status $code: refused with its code ($state)");
	is($refund_state->("r-$code"), 'REFUNDCLOSE', "$status $code: nothing was made, the refund is closed");
}

# Refused, to be sent again with the same out_refund_no: never closed.
my %again = (SIGN_ERROR => 401, NOT_ENOUGH => 403, A_CODE_NOT_IN_THE_TABLE => 403);
for my $code (sort keys %again)
{
	my ($state, $err) = refused_refund("r-$code", $again{$code}, $code);
	like($err, qr/err_code: $code/, "$again{$code} $code: refused with its code ($state)");
	like($err, qr/retry with identical parameters/, "$code: with the advice to send it again");
	is($refund_state->("r-$code"), 'PROCESSING', "$code: the refund is not closed");
}
# The worker's refund queries find nothing at WeChat Pay (404) and close nothing.
ok($node->poll_query_until('postgres',
	"SELECT bool_and(query_count >= 2) FROM wxpay.refunds WHERE out_refund_no IN ('r-SIGN_ERROR', 'r-NOT_ENOUGH')"),
	'the worker queries them');
is($sql->("SELECT string_agg(DISTINCT state, ',') FROM wxpay.refunds WHERE out_refund_no LIKE 'r-%' AND out_refund_no"
	  . " IN ('r-SIGN_ERROR', 'r-NOT_ENOUGH', 'r-A_CODE_NOT_IN_THE_TABLE')"), 'PROCESSING', 'and leaves them PROCESSING');
# Once fixed, the identical request makes the refund, once.
is(decode_json($sql->("SELECT wxpay_refund('$m', 'o-1', 'r-SIGN_ERROR', 10, '{}')"))->{out_refund_no}, 'r-SIGN_ERROR',
	'the identical retry is accepted');
is(scalar(grep { $_->{out_refund_no} eq 'r-SIGN_ERROR' }
		@{ sim_call($sim, 'GET', "/_sim/orders?mch_id=$m&out_trade_no=o-1")->{refunds} }), 1, 'and WeChat Pay has it once');
sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $m, out_refund_no => 'r-SIGN_ERROR', state => 'SUCCESS' });
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = 'r-SIGN_ERROR'"),
	'the worker\'s refund query settles it');

# A close at expiry answered ORDER_PAID: a query records the payment.
$sql->("SELECT wxpay_unifiedorder('$m', 'o-paid', 100, 'v3 goods', '127.0.0.1', 'NATIVE', '{}')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => 'o-paid', notify => JSON::PP::false });
$sql->("UPDATE wxpay.orders SET time_expire = now() - interval '1 minute', created_at = now() - interval '10 minutes',"
	  . " next_query_at = now() WHERE out_trade_no = 'o-paid'");
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'o-paid'"),
	'an expired order paid at WeChat Pay ends SUCCESS');
is($sql->("SELECT string_agg(coalesce(new_state, '') || ':' || source, ',' ORDER BY id) FROM wxpay.order_events"
	  . " WHERE out_trade_no = 'o-paid' AND new_state IN ('SUCCESS', 'CLOSED')"), 'SUCCESS:query',
	'recorded by the verified query, never CLOSED');
is(sim_call($sim, 'GET', '/_sim/stats')->{requests}{'/v3/pay/transactions/out-trade-no/o-paid/close'}, 1,
	'after one close, refused there with ORDER_PAID');
my ($state, $err) = sql_error($node, "SELECT wxpay_closeorder('$m', 'o-1')");
is($state, '55000', 'a paid order is not even sent to close');

wx_audit($node, $sim, $m, 'v3 refusals');
done_testing();
