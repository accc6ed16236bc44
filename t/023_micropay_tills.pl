# A hundred tills at once (pgbench, one connection each): every till
# charges a code and waits for its order with wxpay_micropay_wait.  A
# quarter pay at once, a quarter after the payer confirms, a quarter never
# (reversed), a quarter answer SYSTEMERROR with the money taken.  Every
# wait returns, every order ends as WeChat Pay has it, nothing is charged
# twice or left pending.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WxTest;

my $tills = 100;
my $sim = wx_sim();
# Each till is a connection, and each micropay call a background worker while it runs.
my $node = wx_node('micropay_tills', 'wxpay.poll_interval' => '1h', 'wxpay.micropay_interval' => '500ms',
	'wxpay.micropay_window' => '5s', 'max_connections' => $tills + 20, 'max_worker_processes' => $tills + 20);
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };

# Till n: scenario 0n % 4 (00 at once, 01 after one query, 02 never, 03 SYSTEMERROR, paid).
my $script = "$PostgreSQL::Test::Utils::tmp_check/till.sql";
open my $fh, '>', $script or die $!;
print $fh <<'SQL';
SELECT wxpay_micropay('10000100', 'till-' || :client_id, 100, 'Till', '203.0.113.7',
	'130' || (:client_id % 4) || '11234567890123') ->> 'state' AS answered;
SELECT wxpay_micropay_wait('10000100', 'till-' || :client_id, '60 seconds') ->> 'settled' AS settled \gset
\if :settled
\else
SELECT 1 / 0;  -- a wait that timed out fails the transaction
\endif
SQL
close $fh;

my $t0 = time;
my ($out, $err);
my $ok = IPC::Run::run([ 'pgbench', '-n', '-r', '-c', $tills, '-j', 4, '-t', 1, '-f', $script,
	'-h', $node->host, '-p', $node->port, 'postgres' ], '>', \$out, '2>', \$err);
my $elapsed = time - $t0;
ok($ok, 'pgbench ran the tills') or diag($err);
like($out, qr/number of transactions actually processed: $tills\/$tills/, "all $tills tills paid or gave up, each wait returned");
unlike($err, qr/ERROR/, 'no till saw an error');
diag(sprintf('%d tills in %.1f s (window 5 s), %s', $tills, $elapsed, ($out =~ /(latency average = [0-9.]+ ms)/)[0] // ''));

diag($1) while $out =~ /^\s+([0-9.]+\s+\d+\s+SELECT wxpay_micropay\S*)/mg;
diag($sql->("SELECT string_agg(format('scenario 0%s: settled %s s after it was recorded', s, d), E'\\n' ORDER BY s)"
	  . " FROM (SELECT substr(out_trade_no, 6)::int % 4 AS s, round(avg(extract(epoch FROM e.created_at - o.created_at))::numeric, 2) AS d"
	  . " FROM wxpay.orders o JOIN wxpay.order_events e USING (mch_id, out_trade_no)"
	  . " WHERE out_trade_no LIKE 'till-%' AND e.new_state IN ('SUCCESS', 'REVOKED') GROUP BY 1) t"));
is($sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no LIKE 'till-%' AND wxpay.order_state_pending(state)"),
	'0', 'no order is left pending');
is($sql->("SELECT string_agg(s, ' ' ORDER BY s) FROM (SELECT state || '=' || count(*) s FROM wxpay.orders"
	  . " WHERE out_trade_no LIKE 'till-%' GROUP BY state) c"), 'REVOKED=25 SUCCESS=75',
	'75 paid, the 25 never confirmed reversed');
is($sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no LIKE 'till-%'"
	  . " AND (substr(out_trade_no, 6)::int % 4 = 2) <> (state = 'REVOKED')"), '0', 'each as its till\'s payer did');
my $truth = sim_orders($sim, '10000100', map { "till-$_" } 0 .. $tills - 1);
my %here = map { split /\|/ } split /\n/, $sql->("SELECT out_trade_no, state FROM wxpay.orders WHERE out_trade_no LIKE 'till-%'");
my @differ = grep { $truth->{$_}{state} ne $here{$_} || $truth->{$_}{micropay_calls} != 1 || $truth->{$_}{reversed_paid} }
  sort keys %here;
is(scalar(@differ), 0, 'every order is the same at WeChat Pay, sent once, and no payment was reversed')
  or diag(explain [ @differ[0 .. ($#differ < 4 ? $#differ : 4)] ]);
wx_audit($node, $sim, '10000100', 'tills');

$node->stop;
done_testing();
