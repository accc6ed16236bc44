# Moving a merchant between shards (wxpay_move_merchant) while WeChat Pay
# keeps delivering its notifications through the proxy: a freeze answers
# calls WX001 and keeps notifications for replay, and waits for the calls
# already routed; every order is paid exactly once, on the new shard;
# nothing of the merchant is left on the old one; what arrived during the
# freeze is replayed; the new shard's worker takes over the pending orders;
# refunds go on; the paid events are published again on the new shard.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;
use WxProxy;

my $sim = wx_sim('--refund-delay-ms', '200');
my $layout = wx_proxy_layout(shards => 2, shard_conf => { 'wxpay.poll_interval' => '1h' });
my ($proxy, @shards) = ($layout->{proxy}, @{ $layout->{shards} });
my $px = sub { $proxy->safe_psql('postgres', shift) };
my $shop = sub { $proxy->safe_psql('postgres', shift, extra_params => [ '-U', 'shop' ]) };
my $placed = wx_proxy_merchants($layout, $sim, 1);
my ($mch) = grep { $placed->{$_} == 0 } keys %$placed;
my ($old, $new) = @shards;
my $on = sub { my ($node, $sql) = @_; $node->safe_psql('postgres', $sql) };

# Before the move: paid orders (one refunded), a consumer that has read
# them, and 30 orders whose payments are about to be notified.
for my $i (1 .. 3)
{
	$shop->("SELECT wxpay_unifiedorder('$mch', 'before-$i', 100, 'Before', '203.0.113.7')");
	my $b = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => "before-$i", notify => JSON::PP::false })->{notification};
	like($shop->("SELECT wxpay_handle_notify(\$b\$$b\$b\$)"), qr/SUCCESS/, "before-$i is paid on the old shard");
}
$shop->("SELECT wxpay_refund('$mch', 'before-1', 'before-1-r', 40)");
ok($old->poll_query_until('postgres', 'SELECT count(*) = 3 FROM wxpay.paid_events'), 'the old shard published the payments');
$shop->("SELECT count(*) FROM wxpay_paid_events_next('fulfilment')");	# the consumer starts here
$shop->("SELECT wxpay_paid_events_seek('fulfilment', 0)");
is($shop->("SELECT count(*) FROM wxpay_paid_events_next('fulfilment')"), '3', 'the consumer has read the three payments');
$shop->("SELECT wxpay_unifiedorder('$mch', 'quiet', 100, 'Paid without a notification', '203.0.113.7')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'quiet', notify => JSON::PP::false });
my @nos = map { "race-$_" } 1 .. 30;
my @bodies;
for my $no (@nos)
{
	$shop->("SELECT wxpay_unifiedorder('$mch', '$no', 100, 'Race', '203.0.113.7')");
	push @bodies, sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => $no, notify => JSON::PP::false })->{notification};
}

# A freeze: calls raise WX001, a notification is kept and answered FAIL.
$px->("CALL wxpay_proxy.freeze_merchant('$mch')");
my ($state) = sql_error($proxy, "SELECT wxpay_orderquery('$mch', 'quiet')", user => 'shop');
is($state, 'WX001', 'a frozen merchant\'s call raises WX001 (retry)');
like($shop->("SELECT wxpay_handle_notify(\$b\$$bodies[0]\$b\$)"), qr/FAIL/, 'its notification is answered FAIL');
is($px->("SELECT sqlstate || ' ' || (replayed_at IS NULL) FROM wxpay_proxy.notifications WHERE mch_id = '$mch'"), 'WX001 true',
	'and kept for replay');
$px->("SELECT wxpay_proxy.thaw_merchant('$mch')");

# The freeze waits for calls already routed: an application transaction
# that called for the merchant holds it until it ends.
my $app = $proxy->background_psql('postgres', extra_params => [ '-U', 'shop' ]);
$app->query_safe("BEGIN; SELECT wxpay_orderquery('$mch', 'before-2')");
my $freezer = $proxy->background_psql('postgres');
$freezer->query_until(qr/go/, "\\echo go\nCALL wxpay_proxy.freeze_merchant('$mch');\n");
ok($proxy->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'advisory'"
	  . " AND query LIKE 'CALL wxpay_proxy.freeze_merchant%'"), 'the freeze waits for the call in flight');
is($px->("SELECT frozen_at IS NOT NULL FROM wxpay_proxy.merchants WHERE mch_id = '$mch'"), 't', 'with the merchant already frozen');
$app->query_safe('COMMIT');
$freezer->query_safe('SELECT 1');
$freezer->quit;
$px->("SELECT wxpay_proxy.thaw_merchant('$mch')");

# WeChat Pay delivering the 30 notifications through the proxy, each
# again after a FAIL, as it does; meanwhile the merchant moves.
my $deliver = <<'PY';
import json, sys, time, psycopg2
dsn, bodies = sys.argv[1], json.load(open(sys.argv[2]))
conn = psycopg2.connect(dsn)
conn.autocommit = True
cur = conn.cursor()
left, fails, attempts = list(range(len(bodies))), 0, 0
deadline = time.time() + 120
while left and time.time() < deadline:
    for i in list(left):
        cur.execute("SELECT wxpay_handle_notify(%s)", (bodies[i],))
        attempts += 1
        if "SUCCESS" in cur.fetchone()[0]:
            left.remove(i)
        else:
            fails += 1
        time.sleep(0.01)
print(json.dumps({"left": len(left), "fails": fails, "attempts": attempts}))
PY
my ($dout, $derr) = ('', '');
# (The bodies in a file: a harness feeds a scalar only when pumped.)
my $bodies_file = "$PostgreSQL::Test::Utils::tmp_check/move_bodies.json";
PostgreSQL::Test::Utils::append_to_file($bodies_file, JSON::PP->new->encode(\@bodies));
my $delivery = IPC::Run::start([ '/usr/bin/python3', '-c', $deliver, $layout->{dsn}, $bodies_file ],
	'>', \$dout, '2>', \$derr);
ok($old->poll_query_until('postgres', "SELECT count(*) >= 5 FROM wxpay.notifications WHERE out_trade_no LIKE 'race-%'"),
	'notifications are arriving at the old shard');
my $dsn = sub { my $n = shift; 'host=' . $n->host . ' port=' . $n->port . ' dbname=postgres' };
my ($mout, $merr) = ('', '');
my $moved = IPC::Run::run([ $proxy->installed_command('wxpay_move_merchant'), '--proxy', $dsn->($proxy),
	'--source', $dsn->($old), '--target', $dsn->($new), '--to', '1', $mch ], '>', \$mout, '2>', \$merr);
ok($moved, 'wxpay_move_merchant moves the merchant') or diag("$mout\n$merr");
note($mout);
$delivery->finish;
my $d = JSON::PP->new->decode($dout || '{}');
is($d->{left}, 0, "every notification was eventually answered SUCCESS ($d->{attempts} deliveries, $d->{fails} answered FAIL)")
  or diag($derr);

# Where things are now.
is($px->("SELECT shard || ' ' || moved_from || ' ' || (frozen_at IS NULL) FROM wxpay_proxy.merchants WHERE mch_id = '$mch'"),
	'1 0 true', 'the proxy routes the merchant to shard 1');
is($on->($old, "SELECT (SELECT count(*) FROM wxpay.merchants WHERE mch_id = '$mch') + (SELECT count(*) FROM wxpay.orders WHERE mch_id = '$mch')"
	  . " + (SELECT count(*) FROM wxpay.order_events WHERE mch_id = '$mch') + (SELECT count(*) FROM wxpay.notifications WHERE mch_id = '$mch')"
	  . " + (SELECT count(*) FROM wxpay.refunds WHERE mch_id = '$mch') + (SELECT count(*) FROM wxpay.paid_events WHERE mch_id = '$mch')"),
	'0', 'nothing of the merchant is left on the old shard');
is($on->($new, "SELECT count(*) FROM wxpay.orders WHERE mch_id = '$mch'"), 34, 'every order is on the new shard');
is($on->($new, "SELECT count(*) FROM wxpay.orders WHERE mch_id = '$mch' AND out_trade_no LIKE 'race-%' AND state = 'SUCCESS'"), 30,
	'every notified order is paid');
is($on->($new, "SELECT count(*) FROM (SELECT out_trade_no FROM wxpay.order_events WHERE mch_id = '$mch' AND new_state = 'SUCCESS'"
	  . " GROUP BY out_trade_no HAVING count(*) > 1) d"), '0', 'none twice');
is($on->($new, "SELECT count(*) FROM (SELECT out_trade_no FROM wxpay.notifications WHERE mch_id = '$mch' AND outcome = 'accepted'"
	  . " GROUP BY out_trade_no HAVING count(*) <> 1) d"), '0', 'each paid order has exactly one accepted notification, moved or new');
is($on->($new, "SELECT string_agg(new_state, ',' ORDER BY id) FROM wxpay.order_events WHERE out_trade_no = 'before-1'"),
	'NOTPAY,SUCCESS,REFUND', 'an order\'s history moved in its order');
is($px->("SELECT count(*) FROM wxpay_proxy.notifications WHERE mch_id = '$mch' AND replayed_at IS NULL"), '0',
	'every notification kept in the proxy was replayed');
like($px->("SELECT string_agg(DISTINCT replay_reply, ' ') FROM wxpay_proxy.notifications WHERE mch_id = '$mch'"),
	qr/^[^F]*SUCCESS[^F]*$/, 'and answered SUCCESS on the new shard');

# The new shard's worker takes over: the order paid without a
# notification is found; refunds go on.
ok($new->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'quiet'"),
	'the new shard\'s worker finds the payment that was never notified');
like($shop->("SELECT wxpay_refund('$mch', 'before-2', 'before-2-r', 30) ->> 'refund_id'"), qr/^\d+$/, 'a refund after the move');
ok($new->poll_query_until('postgres', "SELECT count(*) = 2 FROM wxpay.refunds WHERE mch_id = '$mch'"), 'on the new shard');
ok($new->poll_query_until('postgres', "SELECT count(*) = 34 FROM wxpay.paid_events WHERE mch_id = '$mch'"),
	'the new shard publishes every payment of the merchant (the moved ones under new seqs)');
is($shop->("SELECT count(*) FROM wxpay_paid_events_next('fulfilment', 1000)"), '34',
	'a consumer through the proxy reads them from the new shard: the three it had read again, none lost');
for my $node (@shards)
{
	wx_audit($node, $sim, $mch, $node->name);
}

$_->stop for @shards, $proxy;
done_testing();
