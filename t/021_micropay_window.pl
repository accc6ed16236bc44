# The window of an unsettled micropay order, as the worker keeps it: a
# query every wxpay.micropay_interval, never past the window's end; a last
# query, then a reverse at once; a payment that arrives during the window
# applied and never reversed; a reverse that races a late payment (WeChat
# Pay then returns the money: both sides say REVOKED); and the defaults.
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
my $node = wx_node('micropay_window', 'wxpay.poll_interval' => '1h', 'wxpay.micropay_interval' => '500ms',
	'wxpay.micropay_window' => '4s');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $json = JSON::PP->new;
my $code = sub { my ($scenario, $n) = @_; sprintf('13%s%d1234567890123', $scenario, $n // 0) };
my $micropay = sub {
	my ($no, $scenario, $n) = @_;
	return $json->decode($sql->("SELECT wxpay_micropay('10000100', '$no', 100, 'Till', '203.0.113.7', '"
		  . $code->($scenario, $n) . "')"));
};
my $there = sub { sim_call($sim, 'GET', "/_sim/orders?mch_id=10000100&out_trade_no=$_[0]") };
my $settled = sub {
	my ($no) = @_;
	$node->poll_query_until('postgres', "SELECT NOT wxpay.order_state_pending(state) FROM wxpay.orders"
		  . " WHERE out_trade_no = '$no'");
};

is($sql->("SELECT string_agg(name || '=' || boot_val || unit, ' ' ORDER BY name) FROM pg_settings"
	  . " WHERE name IN ('wxpay.micropay_interval', 'wxpay.micropay_window')"),
	'wxpay.micropay_interval=5000ms wxpay.micropay_window=30000ms', 'defaults: every 5 s for up to 30 s');

# --- The schedule of an order whose payer never confirms.
$sql->('CREATE TABLE seen (at timestamptz DEFAULT clock_timestamp(), state text, next_query_at timestamptz,'
	  . ' query_count int, reverse_requested boolean)');
$micropay->('w-forever', '02');
# Every change of its schedule, watched until it is settled.
$sql->(q{SET statement_timeout = '60s'; DO $$
DECLARE
	last_count int := -1;
	r record;
BEGIN
	LOOP
		SELECT state, next_query_at, query_count, reverse_requested_at IS NOT NULL AS rr INTO r
		  FROM wxpay.orders WHERE out_trade_no = 'w-forever';
		IF r.query_count <> last_count THEN
			INSERT INTO seen (state, next_query_at, query_count, reverse_requested)
			VALUES (r.state, r.next_query_at, r.query_count, r.rr);
			last_count := r.query_count;
		END IF;
		EXIT WHEN r.state = 'REVOKED';
		PERFORM pg_sleep(0.02);
	END LOOP;
END $$});
ok($settled->('w-forever'), 'an order whose payer never confirms is settled');
my ($count, $window_s, $reverse_lag) = split /\|/, $sql->(
	"SELECT query_count, extract(epoch FROM reverse_after - created_at),"
	  . " extract(epoch FROM reverse_requested_at - reverse_after) FROM wxpay.orders WHERE out_trade_no = 'w-forever'");
is($window_s, '4.000000', 'its window is wxpay.micropay_window');
cmp_ok($count, '>=', 7, "queried every 500 ms through the 4 s window ($count queries)");
cmp_ok($count, '<=', 10, 'and not more often');
cmp_ok($reverse_lag, '<', 1.5, 'the reverse is decided at the window\'s end, after its last query');
is($sql->("SELECT count(*) FROM seen s JOIN wxpay.orders o ON o.out_trade_no = 'w-forever'"
	  . " WHERE s.next_query_at > o.reverse_after + interval '10 ms' AND NOT s.reverse_requested"), '0',
	'no query was scheduled past the window');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'w-forever'"), 'REVOKED', 'REVOKED here');
my $t = $there->('w-forever');
is("$t->{state} $t->{reverse_calls} " . ($t->{reversed_paid} ? 'money returned' : 'never paid'),
	'REVOKED 1 never paid', 'reversed once at WeChat Pay, nothing charged');

# --- Paid during the window: applied, never reversed.
$micropay->('w-late', '02');
ok($node->poll_query_until('postgres', "SELECT query_count >= 2 FROM wxpay.orders WHERE out_trade_no = 'w-late'"),
	'a payer confirming late: the worker has asked twice');
sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'w-late', notify => JSON::PP::false });
ok($settled->('w-late'), 'the payment made during the window');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'w-late'"), 'SUCCESS', 'is applied');
ok($node->poll_query_until('postgres', "SELECT now() > reverse_after + interval '1 second' FROM wxpay.orders"
	  . " WHERE out_trade_no = 'w-late'"), 'and once its window is over');
is($there->('w-late')->{reverse_calls}, 0, 'it is never reversed');

# --- A waiting till is woken by the commit that settles its order, not by
# its once-a-second look: each wait returns within moments of the payment
# being applied.
$sql->('CREATE TABLE woke (out_trade_no text, state text, at timestamptz)');
for my $i (1 .. 3)
{
	my $no = "w-wake-$i";
	$micropay->($no, '02');
	my $till = $node->background_psql('postgres');
	$till->query_until(qr/waiting/, "\\echo waiting\nINSERT INTO woke SELECT '$no', w ->> 'state', clock_timestamp()"
		  . " FROM wxpay_micropay_wait('10000100', '$no', '20s') w;\n");
	ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%INSERT INTO woke%'"
		  . " AND wait_event_type = 'Extension' AND pid <> pg_backend_pid()"), "$no: a till waits");
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => $no, notify => JSON::PP::false });
	ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM woke WHERE out_trade_no = '$no'"), "$no: its wait returns");
	$till->quit;
	my ($state, $lag) = split /\|/, $sql->("SELECT w.state, extract(epoch FROM w.at - e.created_at) FROM woke w"
		  . " JOIN wxpay.order_events e USING (out_trade_no) WHERE out_trade_no = '$no' AND e.new_state = 'SUCCESS'");
	is($state, 'SUCCESS', "$no: with SUCCESS");
	cmp_ok($lag, '<', 0.3, "$no: ${lag} s after the payment was applied");
}

# --- A reverse racing a late payment: the payer confirms just as the reverse
# arrives.  WeChat Pay reverses the paid order (the money goes back); here
# the order is REVOKED, never SUCCESS: both sides agree, nobody is charged.
$micropay->('w-race', '06');
ok($settled->('w-race'), 'the order whose payment races the reverse is settled');
$t = $there->('w-race');
ok($t->{transaction_id} && $t->{reversed_paid}, 'WeChat Pay took the payment, then reversed it: the money went back');
is("$t->{state} " . $sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'w-race'"), 'REVOKED REVOKED',
	'REVOKED there and here');
is($sql->("SELECT count(*) FROM wxpay.order_events WHERE out_trade_no = 'w-race' AND new_state = 'SUCCESS'"), '0',
	'the order was never paid here');

# --- A till's own reverse racing the worker's: both go through once.
$micropay->('w-both', '02');
ok($node->poll_query_until('postgres', "SELECT reverse_requested_at IS NOT NULL OR state = 'REVOKED'"
	  . " FROM wxpay.orders WHERE out_trade_no = 'w-both'"), 'the worker is about to reverse');
is($json->decode($sql->("SELECT wxpay_reverse('10000100', 'w-both')"))->{state}, 'REVOKED',
	'the till\'s reverse at the same time ends REVOKED too');
ok($settled->('w-both'), 'settled');
is($sql->("SELECT count(*) FROM wxpay.order_events WHERE out_trade_no = 'w-both' AND new_state = 'REVOKED'"), '1',
	'REVOKED once');

# --- A micropay that never reached WeChat Pay (the connection was reset
# before it was read): the queries find no order; a reverse inside the
# window that WeChat Pay answers ORDERNOTEXIST is not believed (the
# request might still arrive after it); once the window is over it is.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'reset', count => 1, path => '/pay/micropay' });
is($micropay->('w-lost', '00')->{state}, 'UNKNOWN', 'a micropay whose connection was reset: the outcome is unknown');
my $early = $json->decode($sql->("SELECT wxpay_reverse('10000100', 'w-lost')"));
is($early->{state}, 'NOTPAY', 'a till\'s reverse inside the window, answered ORDERNOTEXIST');
like($early->{reason}, qr/ORDERNOTEXIST/, 'is not believed yet');
ok($settled->('w-lost'), 'the order is settled after the window');
is($sql->("SELECT o.state || ' ' || (o.reverse_requested_at < o.reverse_after) || ' ' || (e.created_at >= o.reverse_after)"
	  . " FROM wxpay.orders o JOIN wxpay.order_events e USING (mch_id, out_trade_no)"
	  . " WHERE out_trade_no = 'w-lost' AND e.new_state = 'REVOKED'"), 'REVOKED true true',
	'REVOKED, by a reverse repeated until the window was over');
ok(!eval { $there->('w-lost'); 1 }, 'WeChat Pay never had it');

wx_audit($node, $sim, '10000100', 'window');
$node->stop;
done_testing();
