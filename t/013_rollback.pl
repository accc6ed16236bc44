# Money never moves without a durable local record: a refund is recorded
# and sent by its own process, so a caller that rolls back (explicitly, by
# a later error in the same statement, or by being cancelled) cannot lose
# it; the local tables and WeChat Pay agree afterwards.  A prepay made in a
# transaction that rolled back cannot be recorded here, but a payment of it
# is found: wxpay.unmatched_payments lists it.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--refund-delay-ms', '300000');
my $node = wx_node('rollback', 'wxpay.poll_interval' => '1h');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };

my $paid_order = sub {
	my ($no) = @_;
	$sql->("SELECT wxpay_unifiedorder('10000100', '$no', 100, 'Rollback', '203.0.113.7')");
	my $body = sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => $no,
		notify => JSON::PP::false })->{notification};
	$sql->("SELECT wxpay_handle_notify(\$b\$$body\$b\$)");
};
# Refunds at WeChat Pay against refunds here, for one order.
my $agree = sub {
	my ($no, $label) = @_;
	my @there = sort map { "$_->{out_refund_no}:$_->{refund_fee}" }
	  @{ sim_call($sim, 'GET', "/_sim/orders?mch_id=10000100&out_trade_no=$no")->{refunds} };
	my @here = sort split /\n/, $sql->("SELECT out_refund_no || ':' || refund_fee FROM wxpay.refunds"
		  . " WHERE out_trade_no = '$no' AND refund_id IS NOT NULL");
	is_deeply(\@here, \@there, "$label: the refunds here are the refunds at WeChat Pay (@there)");
};

# An explicit ROLLBACK after the refund.
$paid_order->('rb-1');
$sql->("BEGIN; SELECT wxpay_refund('10000100', 'rb-1', 'rb-1-a', 30); ROLLBACK;");
is($sql->("SELECT state || ' ' || (refund_id IS NOT NULL) FROM wxpay.refunds WHERE out_refund_no = 'rb-1-a'"),
	'PROCESSING true', 'a refund survives the caller\'s ROLLBACK, with its refund_id');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'rb-1'"), 'REFUND', 'and the order is REFUND');
$agree->('rb-1', 'explicit rollback');

# A later error in the same statement: the application stores the answer
# in a table of its own, and that insert fails.
$sql->("CREATE TABLE app_refunds (answer jsonb CHECK (answer ->> 'refund_id' IS NULL))");
my ($state) = sql_error($node, "INSERT INTO app_refunds VALUES (wxpay_refund('10000100', 'rb-1', 'rb-1-b', 20))");
is($state, '23514', 'the statement fails after the refund');
is($sql->("SELECT count(*) FROM wxpay.refunds WHERE out_refund_no = 'rb-1-b' AND refund_id IS NOT NULL"), '1',
	'and the refund is on record all the same');
$agree->('rb-1', 'statement error');

# A caller cancelled while the request is in flight: the step finishes.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'delay', delay_ms => 1500, count => 1, path => '/secapi/pay/refund' });
($state) = sql_error($node, "SET statement_timeout = '300ms'; SELECT wxpay_refund('10000100', 'rb-1', 'rb-1-c', 10)");
is($state, '57014', 'a caller cancelled mid-refund');
ok($node->poll_query_until('postgres', "SELECT refund_id IS NOT NULL FROM wxpay.refunds WHERE out_refund_no = 'rb-1-c'"),
	'still gets its refund recorded, answer included');
$agree->('rb-1', 'cancelled caller');

# Over-refunding stays impossible: 30 + 20 + 10 of 100 are taken.
($state, my $msg) = sql_error($node, "SELECT wxpay_refund('10000100', 'rb-1', 'rb-1-d', 50)");
is($state, '22023', 'a refund beyond what is left is refused locally');
like($msg, qr/60 fen are refunded or being refunded already/, 'counting the refunds of rolled-back callers');

# A refusal by WeChat Pay closes the refund here, and frees its amount.
$sql->("UPDATE wxpay.refunds SET state = 'REFUNDCLOSE' WHERE out_refund_no = 'rb-1-a'");	# WeChat still has it
($state, $msg) = sql_error($node, "SELECT wxpay_refund('10000100', 'rb-1', 'rb-1-e', 60)");
is($state, 'WX004', 'WeChat Pay refuses what it cannot refund (NOTENOUGH)');
like($sql->("SELECT state || ': ' || last_error FROM wxpay.refunds WHERE out_refund_no = 'rb-1-e'"),
	qr/^REFUNDCLOSE: WeChat Pay refused \/secapi\/pay\/refund: NOTENOUGH/, 'the refused refund is closed, with the reason');
($state) = sql_error($node, "SELECT wxpay_refund('10000100', 'rb-1', 'rb-1-e', 60)");
is($state, '55000', 'and repeating it is refused: a new attempt needs a new out_refund_no');

# refundquery asks about refunds known here, and refuses others locally.
is($sql->("SELECT wxpay_refundquery('10000100', 'rb-1-b') ->> 'out_refund_no_0'"), 'rb-1-b',
	'wxpay_refundquery returns the verified answer for a refund of ours');
($state) = sql_error($node, "SELECT wxpay_refundquery('10000100', 'rb-nowhere')");
is($state, '22023', 'and refuses a refund unknown here, like wxpay_orderquery, without asking WeChat Pay');

# A prepay made in a transaction that rolled back is found once it is paid.
my $prepay = $sql->("BEGIN; SELECT wxpay_unifiedorder('10000100', 'rb-2', 100, 'Rolled back', '203.0.113.7') ->> 'prepay_id'; ROLLBACK;");
like($prepay, qr/^wx/, 'a prepay made in a transaction that rolled back');
is($sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no = 'rb-2'"), '0', 'has no order here');
my $body = sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'rb-2', notify => JSON::PP::false })->{notification};
like($sql->("SELECT wxpay_handle_notify(\$b\$$body\$b\$)"), qr/FAIL/, 'its payment is refused (WeChat Pay retries it)');
is($sql->("SELECT out_trade_no || ' ' || total_fee || ' ' || deliveries FROM wxpay.unmatched_payments"), 'rb-2 100 1',
	'and listed in wxpay.unmatched_payments, to refund or reconcile');
(my $forged = $body) =~ s/(<sign>(?:<!\[CDATA\[)?)[0-9A-F]{8}/${1}00000000/;
isnt($forged, $body, 'a forged copy of it');
$sql->("SELECT wxpay_handle_notify(\$b\$$forged\$b\$)");
is($sql->("SELECT deliveries FROM wxpay.unmatched_payments"), '1', 'a forged copy is not counted: only authentic ones are');

$node->stop;
done_testing();
