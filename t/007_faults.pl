# Fault injection.  Reconciliation through a WeChat Pay that is unreachable,
# slow (past the timeout), resetting, forging signatures and appids,
# truncating and bloating answers, while the postmaster restarts and the worker is
# killed again and again; then a storm of 10,000 notifications, 8 copies
# of each, from 8 concurrent clients.  Each part ends with the same audit.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('faults', 'wxpay.poll_interval' => '1h', 'wxpay.http_timeout' => '1s',
	'wxpay.max_concurrency' => '8');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $fault = sub { sim_call($sim, 'POST', '/_sim/faults', {@_}) };

# Create orders from SQL, each through the simulator.
my $create = sub {
	my ($prefix, $n) = @_;
	$sql->("SELECT count(wxpay_unifiedorder('10000100', '$prefix-' || i, 100, 'Fault', '203.0.113.7'))"
		  . " FROM generate_series(1, $n) i");
};
# Pay orders at the simulator without notifying; returns their notification bodies.
my $pay = sub {
	my ($prefix, @ids) = @_;
	return map { $_->{notification} } sim_calls($sim, map { [ 'POST', '/_sim/pay',
		{ mch_id => '10000100', out_trade_no => "$prefix-$_", notify => JSON::PP::false } ] } @ids);
};
# orderquery requests the simulator has answered so far, faulty or not.
my $queries = sub { sim_call($sim, 'GET', '/_sim/stats')->{requests}{'/pay/orderquery'} // 0 };
# Make every pending rec- order due now, and wait until the worker has sent
# at least $n more orderquery requests.
my $rec = "out_trade_no LIKE 'rec-%'";
my $queried = sub {
	my ($n) = @_;
	my $target = $queries->() + $n;
	$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE $rec AND state = 'NOTPAY'");
	wx_poll(sub { $queries->() >= $target }, "$n orderquery requests")
	  or die "the worker did not send $n orderquery requests";
	return 1;
};

# --- Reconciliation through every fault --------------------------------
$create->('rec', 60);
$pay->('rec', grep { $_ % 2 } 1 .. 60);
$sql->("ALTER SYSTEM SET wxpay.poll_interval = '100ms'; SELECT pg_reload_conf()");
$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no LIKE 'rec-%'");

# Down: nothing listens where WeChat Pay should be.
$sql->("UPDATE wxpay.merchants SET api_base = 'https://127.0.0.1:9' WHERE mch_id = '10000100'");
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM wxpay.orders WHERE out_trade_no LIKE 'rec-%' AND last_error LIKE '%Could%connect%'"),
	'an unreachable WeChat Pay is recorded as the error');
$sql->("UPDATE wxpay.merchants SET api_base = '$sim->{base}' WHERE mch_id = '10000100'");
# Each fault until the worker has met it in 10 requests.
for my $mode (qw(reset badsign wrong_appid garbage http500 truncated oversize))
{
	$fault->(mode => $mode, count => -1);
	$queried->(10);
	$fault->(mode => 'none');
}
$fault->(mode => 'delay', delay_ms => 1500, count => 20);    # slower than wxpay.http_timeout
$queried->(8);                                               # 8 (max_concurrency) requests in flight
$node->restart;                                              # in the middle of reconciliation
for (1 .. 3)
{
	my $pid = $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
	kill 'KILL', $pid if $pid;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND pid <> " . ($pid || 0));
}
$fault->(mode => 'none');
# Kept due, so that the backoff after all those failed attempts (100 ms
# doubling: a minute or more by now) does not set the pace.
ok(wx_poll_due($node, $rec,
	"SELECT count(*) = 30 FROM wxpay.orders WHERE out_trade_no LIKE 'rec-%' AND state = 'SUCCESS'"),
	'after every fault, restart and kill, each paid order is reconciled');
is($sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no LIKE 'rec-%' AND state = 'NOTPAY'"), '30',
	'and each unpaid one is still unpaid');
ok($sql->("SELECT count(*) > 0 FROM wxpay.orders WHERE out_trade_no LIKE 'rec-%' AND query_count > 1") eq 't',
	'faults cost attempts');
wx_audit($node, $sim, '10000100', 'reconciliation');

# --- A storm of 10,000 notifications, 8 copies of each ------------------
$sql->("ALTER SYSTEM SET wxpay.poll_interval = '1h'; SELECT pg_reload_conf()");
$create->('storm', 1250);
my @bodies = $pay->('storm', 1 .. 1250);
my $copy = join '', map { my $b = $_; $b =~ s/\\/\\\\/g; "$b\n" } map { ($_) x 8 } @bodies;
$sql->('CREATE TABLE storm (id serial PRIMARY KEY, body text); CREATE SEQUENCE storm_next');
my ($ok, $err);
IPC::Run::run([ 'psql', '-X', '-q', '-h', $node->host, '-p', $node->port, '-d', 'postgres',
	'-c', "COPY storm (body) FROM STDIN" ], '<', \$copy, '2>', \$err) or die $err;
# Shuffle so copies of one notification arrive from different clients at once.
$sql->('CREATE TABLE storm_order AS SELECT row_number() OVER (ORDER BY random()) AS n, body FROM storm;'
	. ' ALTER TABLE storm_order ADD PRIMARY KEY (n)');
my $script = "$PostgreSQL::Test::Utils::tmp_check/storm.sql";
PostgreSQL::Test::Utils::append_to_file($script,
	"SELECT wxpay_handle_notify(body) FROM storm_order WHERE n = (SELECT nextval('storm_next'));\n");
my ($out);
IPC::Run::run([ 'pgbench', '-n', '-c', '8', '-j', '2', '-t', '1250', '-f', $script,
	'-h', $node->host, '-p', $node->port, 'postgres' ], '>', \$out, '2>', \$err)
  or die "pgbench failed: $err";
like($out, qr/number of transactions actually processed: 10000\/10000/, '10,000 notifications from 8 clients');
is($sql->("SELECT count(*) FROM wxpay.notifications WHERE out_trade_no LIKE 'storm-%'"), '10000',
	'every body is on record');
is($sql->("SELECT string_agg(outcome || ':' || n, ',' ORDER BY outcome) FROM (SELECT outcome, count(*) n"
	. " FROM wxpay.notifications WHERE out_trade_no LIKE 'storm-%' GROUP BY outcome) s"),
	'accepted:1250,duplicate:8750', 'each payment accepted once, every copy a duplicate');
is($sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no LIKE 'storm-%' AND state = 'SUCCESS'"), '1250',
	'every order paid');
wx_audit($node, $sim, '10000100', 'storm');

$node->stop;
done_testing();
