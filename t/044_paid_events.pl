# Paid events: no NOTIFY in the paying transaction; the worker publishes
# each SUCCESS once into wxpay.paid_events and rings wxpay_order_paid with
# only a seq.  Consumers read their own merchants' payments back, each
# exactly once, in an order that never skips a late commit, and nothing
# is lost across a killed worker or an immediate server restart.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('paid', 'wxpay.poll_interval' => '1h');
my $sql = sub { $node->safe_psql('postgres', shift) };
wx_merchant($node, $sim, mch_id => $_) for qw(m-a m-b);
$sql->(<<'SQL');
CREATE ROLE shop_a LOGIN; CREATE ROLE shop_b LOGIN; CREATE ROLE stranger LOGIN;
UPDATE wxpay.merchants SET allowed_roles = '{shop_a}' WHERE mch_id = 'm-a';
UPDATE wxpay.merchants SET allowed_roles = '{shop_b}' WHERE mch_id = 'm-b';
GRANT EXECUTE ON FUNCTION wxpay_paid_events_next(text, integer) TO shop_a, shop_b;
SQL
my $as = sub { my ($role, $q) = @_; $node->safe_psql('postgres', $q, extra_params => [ '-U', $role ]) };
my $take = sub {
	my ($role, $consumer) = @_;
	my @got;
	while (my $rows = $as->($role, "SELECT string_agg(out_trade_no, ',' ORDER BY seq) FROM wxpay_paid_events_next('$consumer', 7)"))
	{
		push @got, split /,/, $rows;
	}
	return \@got;
};
$as->($_, "SELECT count(*) FROM wxpay_paid_events_next('fulfil')") for qw(shop_a shop_b);

my $pay = sub {
	my ($mch, $no) = @_;
	$sql->("SELECT wxpay_unifiedorder('$mch', '$no', 100, 'Paid', '203.0.113.7')");
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => $no, notify => JSON::PP::false });
	return sim_call($sim, 'POST', '/_sim/notification', { mch_id => $mch, out_trade_no => $no })->{body};
};
my $notify = sub { $sql->("SELECT wxpay_handle_notify(\$b\$$_[0]\$b\$)") };
my $published = sub { "SELECT count(*) = $_[0] FROM wxpay.paid_events p JOIN wxpay.order_events e ON e.id = p.event_id" };

# A listener hears the doorbell; a stranger with no grant hears only a number.
my $listener = $node->background_psql('postgres', extra_params => [ '-U', 'stranger' ]);
$listener->query_safe('LISTEN wxpay_order_paid');
$notify->($pay->('m-a', "a-$_")) for 1 .. 20;
$notify->($pay->('m-b', "b-$_")) for 1 .. 12;
ok($node->poll_query_until('postgres', $published->(32)), 'every payment is published');
my $heard = $listener->query_safe('SELECT 1');
like($heard, qr/"wxpay_order_paid" with payload "\d+"/, 'the doorbell rang, its payload a seq');
my $worker = $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
my %senders = map { $_ => 1 } $heard =~ /received from server process with PID (\d+)/g;
is(join(',', keys %senders), $worker, 'rung by the worker only: no paying transaction sent a NOTIFY');
unlike($heard, qr/m-a|m-b|a-1\b|"total_fee"/, 'the stranger learns nothing about the payments');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM wxpay_paid_events_next('x')", extra_params => [ '-U', 'stranger' ]);
like($err, qr/permission denied for function wxpay_paid_events_next/, 'and cannot read them');
$listener->quit;
is(join(',', @{ $take->('shop_a', 'fulfil') }), join(',', map { "a-$_" } 1 .. 20), 'shop_a reads exactly its 20 payments, in order');
is(join(',', @{ $take->('shop_b', 'fulfil') }), join(',', map { "b-$_" } 1 .. 12), 'shop_b its 12, under the same consumer name');
is(scalar @{ $take->('shop_a', 'fulfil') }, 0, 'each once');

# A payment that commits late (its transaction is older) is not skipped.
my $late = $pay->('m-a', 'late');
my $early = $pay->('m-a', 'early');
my $slow = $node->background_psql('postgres');
$slow->query_safe("BEGIN; SELECT wxpay_handle_notify(\$b\$$late\$b\$)");
$notify->($early);
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM wxpay.orders WHERE out_trade_no = 'early' AND state = 'SUCCESS'"),
	'a later transaction pays first');
$slow->query_safe('COMMIT');
$slow->quit;
ok($node->poll_query_until('postgres', $published->(34)), 'both are published once the older one commits');
is(join(',', sort @{ $take->('shop_a', 'fulfil') }), 'early,late', 'and the consumer gets both');

# A killed worker (the server resets every backend) and an immediate
# restart lose nothing: whatever was paid is published, and WeChat Pay's
# retries of the notifications cut off are applied and published too.
my @bodies = map { $pay->('m-b', "k-$_") } 1 .. 40;
my $burst = $node->background_psql('postgres', on_error_stop => 0);
$burst->query_until(qr/go/, "\\echo go\n" . join('', map { "SELECT wxpay_handle_notify(\$b\$$_\$b\$);\n" } @bodies));
ok($node->poll_query_until('postgres', "SELECT count(*) >= 10 FROM wxpay.orders WHERE out_trade_no LIKE 'k-%' AND state = 'SUCCESS'"),
	'a burst of payments is under way');
kill 'KILL', $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
eval { $burst->quit };
ok(wx_poll_through_crash($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"),
	'the server recovers from the killed worker');
$notify->($_) for @bodies;	# WeChat Pay notifies again until it hears SUCCESS
ok($node->poll_query_until('postgres', $published->(74)), 'every payment of the burst is published, once');
$notify->($pay->('m-b', 'r-1'));
$node->stop('immediate');
$node->start;
ok($node->poll_query_until('postgres', $published->(75)), 'and the one before an immediate restart too');
is(join(',', @{ $take->('shop_b', 'fulfil') }), join(',', (map { "k-$_" } 1 .. 40), 'r-1'), 'shop_b reads all 41, once, in order');
is($sql->("SELECT count(*) FROM (SELECT event_id FROM wxpay.paid_events GROUP BY event_id HAVING count(*) > 1) d"), '0',
	'no event is published twice');
is($sql->("SELECT count(*) FROM wxpay.order_events e WHERE new_state = 'SUCCESS'"
	  . " AND NOT EXISTS (SELECT FROM wxpay.paid_events p WHERE p.event_id = e.id)"), '0', 'none is missing');

# Paying commits wake the worker to publish their events, not for a round
# of queries (notifications come by the thousand a second): an order made
# due without waking the worker (its trigger off, as a replica's would be)
# is left to the worker's schedule while the payment is published at once.
ok($node->poll_query_until('postgres',
	"SELECT query LIKE 'wxpay: idle%' FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"),
	'the worker sleeps until its next round');
$pay->('m-a', 'due-1');
$sql->("SET session_replication_role = replica;"
	. " UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no = 'due-1'");
$notify->($pay->('m-a', 'paid-now'));
ok($node->poll_query_until('postgres', $published->(76)), 'a payment is published at once');
is($sql->("SELECT query_count FROM wxpay.orders WHERE out_trade_no = 'due-1'"), '0',
	'without a round of queries');

done_testing();
