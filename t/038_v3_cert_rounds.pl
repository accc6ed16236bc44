# The worker's platform certificate downloads over many rounds with
# several API v3 merchants at once (issue 18: a worker died of signal 11
# "storing platform certificates" in a benchmark run with several v3
# merchants): certificate merchants that download, public-key merchants
# answered 404 RESOURCE_NOT_EXISTS, a merchant in a migration (both
# kinds of key), rotations, unknown serials that ask for a download at
# once, merchant rows that change while a download is on the wire, and
# rounds in which every merchant is due together.  Through all of it the
# worker is never restarted: the same process, no "terminated by signal"
# in the postmaster's log.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $node = wx_node('v3rounds', 'wxpay.poll_interval' => '100ms');
my $sim = wx_sim('--latency-ms', '20');
my $sql = sub { $node->safe_psql('postgres', shift) };
my $worker = sub {
	$sql->("SELECT pid || ' ' || backend_start FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
};
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"), 'the worker runs');
my $started = $worker->();

# Certificate merchants that download everything, one that has its key,
# public-key merchants without certificates (404), one with both kinds.
my @cert = map { "19000381$_" } 0 .. 3;
my @pub = map { "19000382$_" } 0 .. 2;
my $both = '1900038300';
wx_merchant_v3($node, $sim, mch_id => $_, key_mode => 'certificate', keys => 0) for @cert[0 .. 2];
wx_merchant_v3($node, $sim, mch_id => $cert[3], key_mode => 'certificate');
wx_merchant_v3($node, $sim, mch_id => $_, key_mode => 'public_key', keys => 0) for @pub;
wx_merchant_v3($node, $sim, mch_id => $both, key_mode => 'both');
$sql->("SELECT wxpay_unifiedorder('$cert[3]', 'r-0', 100, 'v3 goods', '127.0.0.1', 'APP', '{}')");
my $n = @cert + @pub + 1;
ok($node->poll_query_until('postgres', "SELECT count(*) = $n FROM wxpay.cert_downloads"),
	'every merchant with something to download has had its first download');
is($sql->("SELECT string_agg(status, ',' ORDER BY mch_id) FROM wxpay.cert_downloads"),
	'ok,ok,ok,ok,none,none,none,ok', 'certificates downloaded, 404 recorded as none');

my $rounds = 40;
my $errors = 0;
for my $round (1 .. $rounds)
{
	# WeChat Pay rotates a certificate; the next answer names an unknown
	# serial, which asks the worker for the certificates at once.
	my $m = $cert[ $round % @cert ];
	my $rotated = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'rotate' });
	if ($m eq $cert[3])
	{
		my ($state) = sql_error($node, "SELECT wxpay_orderquery('$m', 'r-0')");
		$errors++ unless $state eq 'WX007';
	}
	# Rows change while downloads are on the wire: a merchant's APIv3 key
	# goes wrong and comes back, a public-key merchant loses its record.
	$sql->("UPDATE wxpay.merchant_v3 SET apiv3_key = repeat('x', 32) WHERE mch_id = '$cert[1]'") if $round % 3 == 0;
	$sql->("UPDATE wxpay.merchant_v3 SET apiv3_key = '$TEST_APIV3_KEY' WHERE mch_id = '$cert[1]'") if $round % 3 == 1;
	$sql->("DELETE FROM wxpay.cert_downloads WHERE mch_id = '$pub[ $round % @pub ]'");
	# Every merchant due in the same round, and a notification naming an
	# unknown certificate serial asks for the downloads at once.
	$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '25 hours'");
	$sql->("SELECT status FROM wxpay_handle_notify_v3('$both', jsonb_build_object('Wechatpay-Serial',"
		  . " upper(md5('$round')), 'Wechatpay-Timestamp', extract(epoch FROM now())::int8::text,"
		  . " 'Wechatpay-Nonce', 'n', 'Wechatpay-Signature', 'c2ln'), '{\"event_type\": \"TRANSACTION.SUCCESS\"}')");
	$errors++ unless $node->poll_query_until('postgres',
		"SELECT count(*) = $n AND bool_and(checked_at > now() - interval '1 hour') FROM wxpay.cert_downloads");
	$errors++ unless $m ne $cert[3] || $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM wxpay.wechatpay_keys WHERE mch_id = '$m' AND serial = '$rotated->{signing}'");
	last if $worker->() ne $started;
}
is($errors, 0, "$rounds rounds of rotations, refreshes and unknown serials went as expected");

# The benchmark's crash came in the worker's first round after minutes
# asleep (poll_interval 1h there) while DDL ran: the invalidation queue
# overflows for a sleeping worker, the catch-up signal wakes it, its first
# transaction resets every cache, and its downloads run in that round.
# Here: the worker asleep, every merchant due, a few thousand catalog
# changes, and the downloads of the round they wake the worker into.
$sql->("ALTER SYSTEM SET wxpay.poll_interval = '1h'; SELECT pg_reload_conf()");
for my $wake (1 .. 5)
{
	# Asleep, and past the 10 s a look waits for when nobody asked.
	$errors++ unless $node->poll_query_until('postgres', "SELECT state = 'idle' AND query LIKE 'wxpay: idle%'"
		  . " AND (SELECT max(checked_at) < now() - interval '11 s' FROM wxpay.cert_downloads)"
		  . " FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
	$sql->("DELETE FROM wxpay.cert_downloads");
	$sql->("DO \$\$ BEGIN FOR i IN 1 .. 1500 LOOP CREATE TABLE sinval_churn (a int, b text); DROP TABLE sinval_churn;"
		  . " END LOOP; END \$\$");
	$errors++ unless $node->poll_query_until('postgres', "SELECT count(*) = $n FROM wxpay.cert_downloads");
	last if $worker->() ne $started;
}
is($errors, 0, 'a worker woken by the invalidation queue after a long sleep downloads in that round, five times');
is($worker->(), $started, 'the worker was never restarted');
unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no process died of a signal');
is(decode_json($sql->("SELECT wxpay_orderquery('$cert[3]', 'r-0')"))->{trade_state}, 'NOTPAY',
	'the rotated certificates verify');
is($sql->("SELECT count(*) FROM wxpay.wechatpay_keys WHERE mch_id = '$cert[0]'"),
	1 + scalar(grep { $_ % @cert == 0 } 1 .. $rounds), 'every rotated certificate was downloaded');

done_testing();
