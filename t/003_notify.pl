# Payment notifications end to end: LISTEN gets one event per payment,
# eight identical notifications at the same moment change the order once,
# and the simulator's retry schedule ends once SUCCESS is replied.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--notify-scale', '0.002');
my $node = wx_node('notify', 'wxpay.poll_interval' => '1h');
my $receiver_port = PostgreSQL::Test::Cluster::get_free_port();
wx_merchant($node, $sim, notify_url => "http://127.0.0.1:$receiver_port/notify");
my $sql = sub { $node->safe_psql('postgres', shift) };

# A signed notification for an order, built by the simulator.
my $notification = sub {
	my ($out_trade_no) = @_;
	return sim_call($sim, 'POST', '/_sim/notification',
		{ mch_id => '10000100', out_trade_no => $out_trade_no })->{body};
};

# LISTEN rings once a payment is published; the details are read back
# with wxpay_paid_events_next, exactly once, however often it is notified.
$sql->("SELECT wxpay_unifiedorder('10000100', 'listen-1', 100, 'Listen', '203.0.113.7')");
is($sql->("SELECT count(*) FROM wxpay_paid_events_next('shop')"), '0', 'a new consumer starts after the newest event');
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN wxpay_order_paid');
my $body = $notification->('listen-1');
$sql->("SELECT wxpay_handle_notify(\$body\$$body\$body\$)") for 1 .. 3;
my $heard = '';
wx_poll(sub {
	$heard .= $listener->query_safe('SELECT 1');
	return $heard =~ /Asynchronous notification "wxpay_order_paid"/;
}, 'the wxpay_order_paid doorbell');
my $count = () = $heard =~ /Asynchronous notification "wxpay_order_paid"/g;
is($count, 1, 'the doorbell rings once for one payment, however often it is notified');
like($heard, qr/"wxpay_order_paid" with payload "\d+"/, 'its payload is only the newest seq');
unlike($heard, qr/listen-1|10000100/, 'and says nothing about the payment');
is($sql->("SELECT out_trade_no || ' ' || total_fee || ' ' || (transaction_id IS NOT NULL) FROM wxpay_paid_events_next('shop')"),
	'listen-1 100 true', 'the consumer reads the payment back');
is($sql->("SELECT count(*) FROM wxpay_paid_events_next('shop')"), '0', 'once');
$listener->quit;

# Eight identical notifications released at the same moment.
$sql->("SELECT wxpay_unifiedorder('10000100', 'race-1', 100, 'Race', '203.0.113.7')");
$body = $notification->('race-1');
my $blocker = $node->background_psql('postgres');
$blocker->query_safe("BEGIN; SELECT 1 FROM wxpay.orders WHERE out_trade_no = 'race-1' FOR UPDATE");
my @racers;
for my $i (1 .. 8)
{
	my $s = $node->background_psql('postgres');
	$s->query_until(qr/go/, "\\echo go\nSELECT wxpay_handle_notify(\$body\$$body\$body\$) AS reply_$i;\n");
	push @racers, $s;
}
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 8 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%wxpay_handle_notify%'"),
	'eight notifications are waiting on the order at once');
$blocker->query_safe('COMMIT');
$blocker->quit;
my $success = 0;
for my $s (@racers)
{
	my $reply = $s->query_safe('SELECT 1');
	$success++ if $reply =~ /<return_code><!\[CDATA\[SUCCESS\]\]><\/return_code>/;
	$s->quit;
}
is($success, 8, 'all eight are answered SUCCESS');
is($sql->("SELECT count(*) FROM wxpay.order_events WHERE out_trade_no = 'race-1' AND new_state = 'SUCCESS'"),
	'1', 'exactly one SUCCESS transition');
is($sql->("SELECT string_agg(outcome || ':' || n, ',' ORDER BY outcome) FROM"
	. " (SELECT outcome, count(*) n FROM wxpay.notifications WHERE out_trade_no = 'race-1' GROUP BY outcome) s"),
	'accepted:1,duplicate:7', 'one accepted, seven recorded as duplicates');

# Delivery over HTTP: the receiver is down for the first attempts, so the
# simulator retries on its schedule and stops once SUCCESS comes back.
$sql->("SELECT wxpay_unifiedorder('10000100', 'deliver-1', 100, 'Deliver', '203.0.113.7')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'deliver-1', notify => JSON::PP::true });
wx_poll(sub { @{ sim_call($sim, 'GET', '/_sim/deliveries?out_trade_no=deliver-1') } >= 3 }, 'three deliveries of deliver-1');
my $receiver = wx_receiver($node, $receiver_port);
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'deliver-1'"),
	'a delivered notification pays the order');
# Delivery ends at the first success: wait until no delivery is in flight.
my $deliveries = sim_deliveries($sim, 'out_trade_no=deliver-1');
ok(@$deliveries >= 4, 'the first attempts failed and were retried (' . scalar(@$deliveries) . ' attempts)');
ok(!$deliveries->[0]{success}, 'the first attempt failed');
ok($deliveries->[-1]{success}, 'the last attempt succeeded');
is(scalar(grep { $_->{success} } @$deliveries), 1, 'no attempt after the successful one');

# A notification whose amount was forged at the source is refused on delivery.
$sql->("SELECT wxpay_unifiedorder('10000100', 'forged-1', 100, 'Forged', '203.0.113.7')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'forged-1', notify => JSON::PP::true, total_fee => 1 });
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM wxpay.notifications WHERE out_trade_no = 'forged-1' AND outcome = 'rejected'"),
	'a notification with another amount is rejected');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'forged-1'"), 'NOTPAY', 'and the order stays unpaid');

# A backend keeps the merchants it loaded and forgets them when another
# session changes one: its next notification is judged with the new key.
my $judge = $node->background_psql('postgres');
my $judged = sub {
	my ($out_trade_no) = @_;
	my $b = $notification->($out_trade_no);
	$judge->query_safe("SELECT wxpay_handle_notify(\$body\$$b\$body\$)");
	return $sql->("SELECT outcome || ' ' || coalesce(reason, '') FROM wxpay.notifications"
		. " WHERE out_trade_no = '$out_trade_no' ORDER BY id DESC LIMIT 1");
};
$sql->("SELECT wxpay_unifiedorder('10000100', 'cache-$_', 100, 'Cache', '203.0.113.7')") for 1 .. 2;
is($judged->('cache-1'), 'accepted ', 'a session judges with the merchant it loaded');
my $key = $sql->("SELECT api_key FROM wxpay.merchants WHERE mch_id = '10000100'");
$sql->("UPDATE wxpay.merchants SET api_key = repeat('x', 32) WHERE mch_id = '10000100'");
is($judged->('cache-2'), 'rejected signature does not verify', "another session's new key counts at once");
$sql->("UPDATE wxpay.merchants SET api_key = '$key' WHERE mch_id = '10000100'");
is($judged->('cache-2'), 'accepted ', 'and so does the key put back');
$judge->quit;

$receiver->signal('TERM');
$receiver->finish;
$node->stop;
done_testing();
