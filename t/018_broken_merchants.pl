# One merchant's broken settings never stop the worker for the others: a
# wrong API key, a CA that cannot be read, an unreachable api_base, a
# dropped allowed role and an empty allowed_roles.  The worker keeps one
# process, reconciles every healthy merchant's lost payments, records each
# broken merchant's failure on its orders (last_error, worker_status) and
# backs those off.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('broken', 'wxpay.poll_interval' => '200ms');
my $sql = sub { $node->safe_psql('postgres', shift) };
my @merchants = qw(10000100 m-badkey m-badca m-noroute m-droprole m-noroles);
wx_merchant($node, $sim, mch_id => $_) for @merchants;
# Created in one transaction that also puts them an hour off, so the
# worker sees them only once they are broken (below).
$sql->(join('', 'BEGIN;', (map { "SELECT wxpay_unifiedorder('$_', '$_-lost', 100, 'Broken', '203.0.113.7');" } @merchants),
	"UPDATE wxpay.orders SET next_query_at = now() + interval '1 hour'; COMMIT;"));
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $_, out_trade_no => "$_-lost", notify => JSON::PP::false }) for @merchants;

# Break them while the orders are pending.
$sql->("CREATE ROLE shop_gone");
$sql->(<<'SQL');
UPDATE wxpay.merchants SET api_key = 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' WHERE mch_id = 'm-badkey';
UPDATE wxpay.merchants SET ca_pem = E'-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----' WHERE mch_id = 'm-badca';
UPDATE wxpay.merchants SET api_base = 'https://127.0.0.1:9' WHERE mch_id = 'm-noroute';
UPDATE wxpay.merchants SET allowed_roles = '{shop_gone}' WHERE mch_id = 'm-droprole';
UPDATE wxpay.merchants SET allowed_roles = '{}' WHERE mch_id = 'm-noroles';
SQL
$sql->("DROP ROLE shop_gone");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"),
	'the worker runs');
my $pid = $sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
$sql->("UPDATE wxpay.orders SET next_query_at = now()");

for my $m (qw(10000100 m-droprole m-noroles))
{
	ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = '$m-lost'"),
		"$m: its lost payment is reconciled");
}
for my $m (qw(m-badkey m-badca m-noroute))
{
	ok($node->poll_query_until('postgres',
		"SELECT last_error IS NOT NULL AND query_count >= 2 FROM wxpay.worker_status WHERE out_trade_no = '$m-lost'"),
		"$m: its failure is recorded on its order, attempt after attempt");
	is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = '$m-lost'"), 'NOTPAY', "$m: and nothing is applied");
}
like($sql->("SELECT last_error FROM wxpay.orders WHERE out_trade_no = 'm-badkey-lost'"), qr/签名错误|sign/i,
	'a wrong key reads as a signature failure');
ok($node->poll_query_until('postgres', "SELECT bool_and(next_query_at >= last_query_at + interval '800 ms')"
	  . " FROM wxpay.orders WHERE out_trade_no IN ('m-badkey-lost', 'm-badca-lost', 'm-noroute-lost')"),
	'the broken merchants\' orders are backed off, to several poll intervals');

# A new order of the healthy merchant is still served on schedule.
$sql->("SELECT wxpay_unifiedorder('10000100', 'later', 100, 'Broken', '203.0.113.7')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'later', notify => JSON::PP::false });
$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no = 'later'");
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'later'"),
	'a later payment of the healthy merchant is reconciled too');
is($sql->("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"), $pid,
	'by the same worker process all along');
my $log = slurp_file($node->logfile);
unlike($log, qr/background worker "wxpay worker" \(PID \d+\) exited/, 'the worker never exited');
unlike($log, qr/may not act for merchant/, 'and never applied allowed_roles to itself');
wx_audit($node, $sim, $_, $_) for @merchants;

done_testing();
