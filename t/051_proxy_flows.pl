# The payment flows through the proxy, three shards: eight identical
# notifications racing through eight proxy connections change the order
# once; WeChat Pay delivering over HTTP to a notify receiver whose only
# change is its connection string (the proxy's); refunds (a retry refunds
# once, two racing refunds cannot over-refund); in-store payment; the
# shards' workers reconciling payments that were never notified; and an
# audit of every shard against the simulator.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;
use WxProxy;

my $sim = wx_sim('--notify-scale', '0.002', '--refund-delay-ms', '200');
my $layout = wx_proxy_layout(shards => 3,
	shard_conf => { 'wxpay.poll_interval' => '300ms', 'wxpay.lock_timeout' => '60s' });
my ($proxy, @shards) = ($layout->{proxy}, @{ $layout->{shards} });
my $receiver_port = PostgreSQL::Test::Cluster::get_free_port();
my $placed = wx_proxy_merchants($layout, $sim, 1, notify_url => "http://127.0.0.1:$receiver_port/notify");
my @mchs = sort keys %$placed;
my $shop = sub { $proxy->safe_psql('postgres', shift, extra_params => [ '-U', 'shop' ]) };
my $on = sub { my ($mch, $sql) = @_; wx_shard_of($layout, $mch)->safe_psql('postgres', $sql) };

# Eight identical notifications, through eight proxy connections, held
# on the order's row lock on its shard until all eight wait there.
my $m = $mchs[1];
my $shard = wx_shard_of($layout, $m);
$shop->("SELECT wxpay_unifiedorder('$m', 'race-1', 100, 'Race', '203.0.113.7')");
my $body = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => 'race-1', notify => JSON::PP::false })->{notification};
my $blocker = $shard->background_psql('postgres');
$blocker->query_safe("BEGIN; SELECT 1 FROM wxpay.orders WHERE out_trade_no = 'race-1' FOR UPDATE");
my @racers;
for my $i (1 .. 8)
{
	my $s = $proxy->background_psql('postgres', extra_params => [ '-U', 'shop' ]);
	$s->query_until(qr/go/, "\\echo go\nSELECT wxpay_handle_notify(\$body\$$body\$body\$) AS reply_$i;\n");
	push @racers, $s;
}
ok($shard->poll_query_until('postgres',
	"SELECT count(*) = 8 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%wxpay_handle_notify%'"),
	'eight notifications from eight proxy connections wait on the order on its shard');
$blocker->query_safe('COMMIT');
$blocker->quit;
my $success = grep { $_->query_safe('SELECT 1') =~ /CDATA\[SUCCESS\]/ } @racers;
$_->quit for @racers;
is($success, 8, 'all eight are answered SUCCESS');
is($shard->safe_psql('postgres', "SELECT count(*) FROM wxpay.order_events WHERE out_trade_no = 'race-1' AND new_state = 'SUCCESS'"),
	'1', 'exactly one SUCCESS transition');
is($shard->safe_psql('postgres', "SELECT string_agg(outcome || ':' || n, ',' ORDER BY outcome) FROM"
	. " (SELECT outcome, count(*) n FROM wxpay.notifications WHERE out_trade_no = 'race-1' GROUP BY outcome) s"),
	'accepted:1,duplicate:7', 'one accepted, seven duplicates');

# WeChat Pay delivering over HTTP: the notify receiver of the demo,
# given the proxy's connection string instead of a server's.
my $receiver = wx_receiver($layout->{dsn}, $receiver_port);
for my $mch (@mchs)
{
	$shop->("SELECT wxpay_unifiedorder('$mch', 'deliver-$_', 100, 'Delivered', '203.0.113.7')") for 1 .. 5;
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => "deliver-$_", notify => JSON::PP::true }) for 1 .. 5;
}
for my $mch (@mchs)
{
	ok($layout->{proxy}->poll_query_until('postgres',
		"SELECT count(*) = 5 FROM wxpay_proxy.merchant_orders('$mch') WHERE out_trade_no LIKE 'deliver-%' AND state = 'SUCCESS'"),
		"WeChat Pay's deliveries through the proxy pay $mch\'s orders on its shard");
}

# Refunds through the proxy.
my $r = $mchs[0];
my $refund_id = $shop->("SELECT wxpay_refund('$r', 'deliver-1', 'rf-a', 30) ->> 'refund_id'");
like($refund_id, qr/^\d+$/, 'a refund over mutual TLS through the proxy');
is($shop->("SELECT wxpay_refund('$r', 'deliver-1', 'rf-a', 30) ->> 'refund_id'"), $refund_id, 'a retry gets the same refund');
is(scalar @{ sim_call($sim, 'GET', "/_sim/orders?mch_id=$r&out_trade_no=deliver-1")->{refunds} }, 1, 'and WeChat Pay refunded once');
$proxy->safe_psql('postgres', 'CREATE TABLE outcome (out_refund_no text, txt text)');
my $locker = wx_shard_of($layout, $r)->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT 1 FROM wxpay.orders WHERE out_trade_no = 'deliver-1' FOR UPDATE");
my @callers;
for my $no ('rf-b', 'rf-c')
{
	my $c = $proxy->background_psql('postgres');
	$c->query_until(qr/go/, qq{\\echo go
DO \$\$ BEGIN
	PERFORM wxpay_refund('$r', 'deliver-1', '$no', 50);
	INSERT INTO outcome VALUES ('$no', 'refunded');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO outcome VALUES ('$no', SQLSTATE || ' ' || SQLERRM);
END \$\$;
});
	push @callers, $c;
	my $waiting = scalar @callers;
	ok(wx_shard_of($layout, $r)->poll_query_until('postgres', "SELECT count(*) = $waiting FROM pg_stat_activity"
		  . " WHERE backend_type = 'wxpay refund' AND wait_event_type = 'Lock'"), "refund $no of 50 (70 left) waits for the order");
}
$locker->query_safe('COMMIT');
$locker->quit;
ok($proxy->poll_query_until('postgres', 'SELECT count(*) = 2 FROM outcome'), 'both refunds finish');
is($proxy->safe_psql('postgres', "SELECT txt FROM outcome WHERE out_refund_no = 'rf-b'"), 'refunded', 'the first is made');
like($proxy->safe_psql('postgres', "SELECT txt FROM outcome WHERE out_refund_no = 'rf-c'"), qr/^22023 .*more than the 100 fen paid/,
	'the second is refused, with the shard\'s SQLSTATE and message');
$_->quit for @callers;
is($on->($r, "SELECT sum(refund_fee) FROM wxpay.refunds WHERE out_trade_no = 'deliver-1'"), '80',
	'and the refunds never add up to more than was paid');
ok(wx_shard_of($layout, $r)->poll_query_until('postgres', "SELECT bool_and(state = 'SUCCESS') FROM wxpay.refunds"),
	'the shard\'s worker settles the refunds');

# In-store payment through the proxy.
my $till = $mchs[2];
is($shop->("SELECT wxpay_micropay('$till', 'till-1', 1250, 'Store 7', '192.0.2.10', '134567890123456789') ->> 'state'"), 'SUCCESS',
	'a micropay through the proxy');
is($on->($till, "SELECT state FROM wxpay.orders WHERE out_trade_no = 'till-1'"), 'SUCCESS', 'paid on its shard');

# Payments never notified: each shard's worker finds its own.
$receiver->signal('TERM');
$receiver->finish;
for my $mch (@mchs)
{
	$shop->("SELECT wxpay_unifiedorder('$mch', 'quiet-$_', 100, 'Quiet', '203.0.113.7')") for 1 .. 3;
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => "quiet-$_", notify => JSON::PP::false }) for 1 .. 3;
}
for my $mch (@mchs)
{
	ok(wx_poll_due(wx_shard_of($layout, $mch), "mch_id = '$mch'",
		"SELECT count(*) = 3 FROM wxpay.orders WHERE out_trade_no LIKE 'quiet-%' AND state = 'SUCCESS'"),
		"the worker of $mch\'s shard reconciles its payments");
}
is($layout->{proxy}->safe_psql('postgres', q{SELECT string_agg(mch_id || ':' || orders, ' ' ORDER BY mch_id) FROM wxpay_proxy.paid_totals()}),
	join(' ', map { "$_:" . ($_ eq $m ? 9 : $_ eq $till ? 9 : 8) } @mchs), 'the paid totals of every shard');

for my $mch (@mchs)
{
	wx_audit(wx_shard_of($layout, $mch), $sim, $mch, "shard of $mch");
}
is($layout->{proxy}->safe_psql('postgres', 'SELECT count(*) FROM wxpay_proxy.notifications'), '0', 'the proxy had to keep no notification');

$_->stop for @shards, $proxy;
done_testing();
