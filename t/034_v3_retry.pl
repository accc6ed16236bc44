# Retry safety of API v3 (wxpay-v3-api.md §6.6): answers that leave the
# outcome unknown (500 SYSTEM_ERROR, 429, an answer lost after WeChat Pay
# processed the request) are WX001 and retried with identical parameters;
# a refund whose answer was lost stays PROCESSING, is never closed, and the
# worker's refund query settles it; a refund refused unprocessed is sent
# again identically by the retry and accepted once; 202 USER_PAYING on a
# close is WX006.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $node = wx_node('v3retry', 'wxpay.poll_interval' => '300ms');
my $sim = wx_sim();
my $sql = sub { $node->safe_psql('postgres', shift) };
my $m = '1900000109';
wx_merchant_v3($node, $sim, mch_id => $m);
my $fault = sub {
	my ($mode, $path) = @_;
	sim_call($sim, 'POST', '/_sim/v3/faults', { mode => $mode, path => $path });
};

# Prepay refused unprocessed (500): outcome unknown, the identical retry works.
$fault->('http500', '/v3/pay/transactions/app');
my ($state, $err) = sql_error($node, "SELECT wxpay_unifiedorder('$m', 'retry-1', 500, 'v3 goods', '127.0.0.1', 'APP', '{}')");
is($state, 'WX001', 'a 500 SYSTEM_ERROR: outcome unknown');
like($err, qr/HTTP 500 SYSTEM_ERROR.*retry with identical parameters/s, 'with the retry advice');
like(decode_json($sql->("SELECT wxpay_unifiedorder('$m', 'retry-1', 500, 'v3 goods', '127.0.0.1', 'APP', '{}')"))->{prepay_id},
	qr/^wx/, 'the identical retry gets its prepay_id');

# Rate-limited (429): WX001 too, and nothing is recorded twice by the retry.
$fault->('http429', '/v3/pay/transactions/native');
($state, $err) = sql_error($node, "SELECT wxpay_unifiedorder('$m', 'retry-2', 100, 'v3 goods', '127.0.0.1', 'NATIVE', '{}')");
is($state, 'WX001', 'a 429 FREQUENCY_LIMITED: retry later');
like(decode_json($sql->("SELECT wxpay_unifiedorder('$m', 'retry-2', 100, 'v3 goods', '127.0.0.1', 'NATIVE', '{}')"))->{code_url},
	qr{^weixin://}, 'the retry works');

# Paid; a refund whose answer is lost after WeChat Pay made it.
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => 'retry-1', notify => JSON::PP::false });
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'retry-1'"),
	'the worker finds the payment');
$fault->('lost', '/v3/refund/domestic/refunds');
($state, $err) = sql_error($node, "SELECT wxpay_refund('$m', 'retry-1', 'rr-lost', 200, '{}')");
is($state, 'WX001', 'a refund whose answer is lost: outcome unknown');
is($sql->("SELECT state || ' ' || (last_error LIKE '%HTTP 500 SYSTEM_ERROR%') FROM wxpay.refunds WHERE out_refund_no = 'rr-lost'"),
	'PROCESSING true', 'the refund stays PROCESSING, never closed, the reason kept');
is(sim_call($sim, 'GET', "/_sim/orders?mch_id=$m&out_trade_no=retry-1")->{state}, 'REFUND', 'WeChat Pay did refund');
sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $m, out_refund_no => 'rr-lost', state => 'SUCCESS' });
ok($node->poll_query_until('postgres',
	"SELECT state = 'SUCCESS' AND refund_id IS NOT NULL FROM wxpay.refunds WHERE out_refund_no = 'rr-lost'"),
	'the worker\'s refund query settles it, with its refund_id');

# A refund refused before processing: the retry sends it again, once.
$fault->('http500', '/v3/refund/domestic/refunds');
($state) = sql_error($node, "SELECT wxpay_refund('$m', 'retry-1', 'rr-again', 100, '{}')");
is($state, 'WX001', 'a refund refused unprocessed: outcome unknown to us');
my $r = decode_json($sql->("SELECT wxpay_refund('$m', 'retry-1', 'rr-again', 100, '{}')"));
is($r->{out_refund_no}, 'rr-again', 'the identical retry is accepted');
is($sql->("SELECT count(*) || ' ' || min(state) FROM wxpay.refunds WHERE out_refund_no = 'rr-again'"), '1 PROCESSING',
	'one refund, recorded once');
($state, $err) = sql_error($node, "SELECT wxpay_refund('$m', 'retry-1', 'rr-again', 101, '{}')");
is($state, '22023', 'a "retry" with another amount is refused here, before anything is sent');

# 202 USER_PAYING on a close.
$sql->("SELECT wxpay_unifiedorder('$m', 'paying-1', 100, 'v3 goods', '127.0.0.1', 'APP', '{}')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => 'paying-1', trade_state => 'USERPAYING' });
($state, $err) = sql_error($node, "SELECT wxpay_closeorder('$m', 'paying-1')");
is($state, 'WX006', 'closing while the payer pays: 202 USER_PAYING');
like($err, qr/err_code: USER_PAYING/, 'with the code');
isnt($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'paying-1'"), 'CLOSED', 'and the order is not closed');

wx_audit($node, $sim, $m, 'v3 retry');
done_testing();
