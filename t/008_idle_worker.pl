# An idle worker is idle: with the extension created and nothing pending it
# sleeps (almost no CPU, a wait event in pg_stat_activity), and once an
# order exists it still queries it on schedule.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WxTest;

my $sim = wx_sim();
my $node = wx_node('idle', 'wxpay.poll_interval' => '1s');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"),
	'the worker is running');
my $pid = $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");

# utime + stime of a process, in seconds.
my $ticks = POSIX::sysconf(POSIX::_SC_CLK_TCK());
my $cpu = sub {
	my $stat = slurp_file("/proc/$pid/stat");
	$stat =~ s/^.*\)\s+//s;		# the command name may hold spaces
	my @f = split /\s+/, $stat;
	return ($f[11] + $f[12]) / $ticks;	# fields 14 and 15 of stat(5)
};

# Poll until the worker has gone to sleep $n separate times (each sleep is a
# new state_change of its idle activity); returns whether it did, and
# whether a sample showed it waiting on the Extension wait event (what a
# DBA sees in pg_stat_activity).
my $sleeps_seen = sub {
	my ($n) = @_;
	my (%sleeps, $waiting);
	my $seen = wx_poll(
		sub {
			my ($at, $event) = split /\|/,
			  $sql->("SELECT state_change, wait_event_type FROM pg_stat_activity WHERE pid = $pid"
				  . " AND query = 'wxpay: idle until the next due order'");
			$sleeps{$at} = 1 if defined $at && $at ne '';
			$waiting ||= ($event // '') eq 'Extension';
			return keys %sleeps >= $n;
		},
		"$n sleeps of the worker");
	return ($seen, $waiting);
};

# Nothing pending: over its next eight rounds (poll_interval 1 s) the
# worker uses under 5% of a core.
my ($cpu0, $t0) = ($cpu->(), time);
my ($slept, $seen_idle) = $sleeps_seen->(8);
my ($used, $wall) = ($cpu->() - $cpu0, time - $t0);
ok($slept, 'with nothing pending, the worker sleeps between its rounds');
cmp_ok($used, '<', 0.05 * $wall, sprintf('idle worker used %.2f s of CPU in %.1f s', $used, $wall));
ok($seen_idle, 'pg_stat_activity shows it waiting (Extension) and idle');
is($sql->('SELECT pid FROM pg_stat_activity WHERE backend_type = \'wxpay worker\''), $pid,
	'and it did not restart meanwhile');

# One order: it is queried about poll_interval after creation, not slept past.
$sql->("SELECT wxpay_unifiedorder('10000100', 'idle-1', 100, 'Idle', '203.0.113.7')");
ok($node->poll_query_until('postgres',
	"SELECT query_count >= 1 FROM wxpay.orders WHERE out_trade_no = 'idle-1'"),
	'a new order is queried by the worker');
my $delay = $sql->("SELECT EXTRACT(epoch FROM last_query_at - created_at) FROM wxpay.orders"
	. " WHERE out_trade_no = 'idle-1'");
cmp_ok($delay, '<', 3, "its first query came ${delay} s after creation, with poll_interval 1 s");

# Paid without a notification, it is found on the next scheduled query.
sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'idle-1', notify => JSON::PP::false });
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'idle-1'"),
	'and a payment is reconciled after the idle period');

# A due order whose row an application holds locked is retried later,
# not spun on: the worker stays under 5% of a core meanwhile.
$sql->("SELECT wxpay_unifiedorder('10000100', 'idle-2', 100, 'Idle', '203.0.113.7')");
$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no = 'idle-2'");
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT 1 FROM wxpay.orders WHERE out_trade_no = 'idle-2' FOR UPDATE;");
# Measure over the worker's next rounds: until it has gone to sleep four
# separate times with the row locked.
($cpu0, $t0) = ($cpu->(), time);
($slept) = $sleeps_seen->(4);
($used, $wall) = ($cpu->() - $cpu0, time - $t0);
ok($slept, 'with a due row locked, the worker keeps its rounds (and its sleeps)');
cmp_ok($used, '<', 0.05 * $wall, sprintf('using %.2f s of CPU in %.1f s, not spinning', $used, $wall));
$locker->query_safe('COMMIT');
$locker->quit;
ok($node->poll_query_until('postgres',
	"SELECT query_count >= 1 FROM wxpay.orders WHERE out_trade_no = 'idle-2'"),
	'the locked order is queried once it is released');

$node->stop;
done_testing();
