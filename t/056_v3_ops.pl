# What a v3 merchant's operator sees (trial-v3 #5, #10-#13): a WX007 names
# its reason (clock, unknown key, signature) with a hint that tells the fix;
# a wrong APIv3 key is named as such by the certificate download and, for
# notifications, by a rate-limited WARNING; an unknown serial has the worker
# download the certificates of that merchant only, and a download that
# changed nothing logs nothing; a refund settled by its notification drops
# the error of its lost first answer; an authentic report of a paid order
# with another amount is an anomaly, not a duplicate.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--notify-scale', '0.002');
my $node = wx_node('v3ops', 'wxpay.poll_interval' => '1s');
my $port = PostgreSQL::Test::Cluster::get_free_port();
wx_receiver($node, $port);
my $sql = sub { $node->safe_psql('postgres', shift) };
my ($a, $b, $p) = ('1900000551', '1900000552', '1900000553');

wx_merchant_v3($node, $sim, mch_id => $a, appid => 'wx0000000000000551', key_mode => 'certificate', keys => 0);
wx_merchant_v3($node, $sim, mch_id => $b, appid => 'wx0000000000000552', key_mode => 'certificate', keys => 0);
wx_merchant_v3($node, $sim, mch_id => $p, appid => 'wx0000000000000553', key_mode => 'public_key',
	notify_url => "http://127.0.0.1:$port/v3/notify/$p");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM wxpay.cert_downloads WHERE mch_id IN ('$a', '$b') AND status = 'ok'"),
	'the certificate merchants have had their first download');

# The handler as a web tier calls it: "status|reply".
sub handle
{
	my ($mch_id, $headers, $body) = @_;
	return $node->safe_psql('postgres', 'SELECT status FROM ' . wx_notify_v3_call($mch_id, $headers, $body));
}

# The log written since offset.
sub log_since { return slurp_file($node->logfile, shift) }

$sql->("SELECT wxpay_unifiedorder('$a', 'a-1', 100, 'ops', '203.0.113.7', 'APP', '{}')");

# #10: each reason of a WX007 with its own message and hint.
sim_call($sim, 'POST', '/_sim/v3/faults', { mode => 'skew', skew_s => 400 });
my ($state, $err) = sql_error($node, "SELECT wxpay_orderquery('$a', 'a-1')");
is($state, 'WX007', 'a skewed answer is untrusted');
like($err, qr/answered with a Wechatpay-Timestamp more than 300 s from our clock/, 'named as a clock matter');
like($err, qr/HINT:.*clock.*NTP/s, 'with a hint to check the clock');
sim_call($sim, 'POST', '/_sim/v3/faults', { mode => 'badsign' });
($state, $err) = sql_error($node, "SELECT wxpay_orderquery('$a', 'a-1')");
like($err, qr/WX007:.*answered with a signature that does not verify/, 'a bad signature is named so');
like($err, qr/HINT:.*api_base.*ca_pem/s, 'with a hint to check api_base and ca_pem');
my $keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $a, action => 'add_public_key' });
my ($pub) = grep { $_->{kind} eq 'public_key' } @{ $keys->{wechatpay_keys} };
# (forced: our request names the certificate, which WeChat Pay honours
# during a migration; this merchant it has already switched)
sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $a, action => 'sign_with', sign_with => 'public_key', force => 1 });
($state, $err) = sql_error($node, "SELECT wxpay_orderquery('$a', 'a-1')");
like($err, qr/WX007:.*answered signed by an unknown key: Wechatpay-Serial $pub->{serial}/,
	'an unknown public-key id is named as an unknown key');
like($err, qr/HINT:.*pub_key\.pem.*wxpay\.wechatpay_keys/s, 'with a hint to insert pub_key.pem');
sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $a, action => 'sign_with', sign_with => 'certificate' });
is(decode_json($sql->("SELECT wxpay_orderquery('$a', 'a-1')"))->{trade_state}, 'NOTPAY', 'and the next answer verifies');

# #13: an unknown certificate serial in a notification to merchant a (a
# stranger's: answered 401) has the worker download a's certificates, not
# b's; and a download that changed nothing logs no line.
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '1 minute'");
my $before = $sql->("SELECT checked_at FROM wxpay.cert_downloads WHERE mch_id = '$b'");
my $log_at = -s $node->logfile;
my $forged = sim_call($sim, 'POST', '/_sim/notification', { mch_id => $a, out_trade_no => 'a-1' });
$forged->{headers}{'Wechatpay-Serial'} = '7132D72A7E5F1C2B3A4D5E6F708192A3B4C5D6E7';
is(handle($a, $forged->{headers}, $forged->{body}), '401', 'a notification naming an unknown serial is refused');
ok($node->poll_query_until('postgres',
	"SELECT checked_at > now() - interval '30 seconds' FROM wxpay.cert_downloads WHERE mch_id = '$a'"),
	'and the worker downloads the certificates of its merchant');
is($sql->("SELECT checked_at = '$before' FROM wxpay.cert_downloads WHERE mch_id = '$b'"), 't',
	'not those of another merchant');
unlike(log_since($log_at), qr/platform certificates of merchant $a/, 'a download that changed nothing logs nothing');

# #5 (v3): the paid order's notification again, with another amount.
$sql->("SELECT wxpay_unifiedorder('$p', 'p-1', 900, 'ops', '203.0.113.7', 'APP', '{}')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $p, out_trade_no => 'p-1' });
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'p-1'"),
	'p-1 is paid by its notification');
$log_at = -s $node->logfile;
my $other = sim_call($sim, 'POST', '/_sim/notification',
	{ mch_id => $p, out_trade_no => 'p-1', fields => { amount => { total => 1, payer_total => 1, currency => 'CNY', payer_currency => 'CNY' } } });
is(handle($p, $other->{headers}, $other->{body}), '204', 'an authentic report of another amount is answered 204');
like($sql->("SELECT outcome || '|' || reason FROM wxpay.notifications ORDER BY id DESC LIMIT 1"),
	qr/^anomaly\|the order is paid with 900 fen; WeChat Pay reports 1 fen/, 'but recorded as an anomaly');
is($sql->("SELECT source || ' ' || reported_total_fee || ' ' || order_total_fee FROM wxpay.payment_anomalies WHERE out_trade_no = 'p-1'"),
	'notify 1 900', 'listed in wxpay.payment_anomalies');
like(log_since($log_at), qr/WARNING:.*order p-1 of merchant $p is paid with 900 fen, but WeChat Pay reports 1 fen/,
	'with a WARNING');
is($sql->("SELECT state || ' ' || total_fee FROM wxpay.orders WHERE out_trade_no = 'p-1'"), 'SUCCESS 900', 'the order is untouched');
# A query answer saying so is no error either, and is recorded the same way.
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $p, out_trade_no => 'p-1', total_fee => 2, notify => JSON::PP::false });
is(decode_json($sql->("SELECT wxpay_orderquery('$p', 'p-1')"))->{trade_state}, 'SUCCESS', 'a query answer of another amount');
is($sql->("SELECT source || ' ' || reported_total_fee FROM wxpay.payment_anomalies WHERE out_trade_no = 'p-1' ORDER BY id DESC LIMIT 1"),
	'query 2', 'is an anomaly too, its source the query');
is($sql->("SELECT state || ' ' || total_fee FROM wxpay.orders WHERE out_trade_no = 'p-1'"), 'SUCCESS 900', 'the order still untouched');

# #11 (v3): a refund whose first answer was lost, settled by its notification.
sim_call($sim, 'POST', '/_sim/v3/faults', { mode => 'lost', path => '/v3/refund/domestic/refunds' });
($state) = sql_error($node, "SELECT wxpay_refund('$p', 'p-1', 'pr-1', 100)");
is($state, 'WX001', 'the refund whose answer is lost: outcome unknown');
$sql->("UPDATE wxpay.refunds SET next_query_at = now() + interval '1 hour' WHERE out_refund_no = 'pr-1'");
like($sql->("SELECT state || ' ' || last_error FROM wxpay.refunds WHERE out_refund_no = 'pr-1'"),
	qr/^PROCESSING .*outcome is unknown/, 'PROCESSING, with the error');
sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $p, out_refund_no => 'pr-1', state => 'SUCCESS', notify => JSON::PP::true });
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = 'pr-1'"),
	'its REFUND.SUCCESS notification settles it');
is($sql->("SELECT last_error IS NULL FROM wxpay.refunds WHERE out_refund_no = 'pr-1'"), 't',
	'and the error of the lost answer goes');

# #12, notifications: a verified notification whose resource does not
# decrypt (a wrong APIv3 key) is refused and logged, once per merchant in
# a while however many arrive; the key is never logged.
my $wrong = 'WRONGWRONGWRONGWRONGWRONGWRONG13';
$sql->("UPDATE wxpay.merchant_v3 SET apiv3_key = '$wrong' WHERE mch_id = '$p'");
$log_at = -s $node->logfile;
for my $no ('p-2', 'p-3')
{
	$sql->("SELECT wxpay_unifiedorder('$p', '$no', 100, 'ops', '203.0.113.7', 'APP', '{}')");
	my $n = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $p, out_trade_no => $no, notify => JSON::PP::false });
	is(handle($p, $n->{headers}, $n->{notification}), '400', "$no: a notification that does not decrypt is refused");
}
my @warned = log_since($log_at) =~ /WARNING:[^\n]*APIv3 key of merchant $p/g;
is(scalar @warned, 1, 'one WARNING names the APIv3 key, for both');
unlike(log_since($log_at), qr/$wrong/, 'the key itself is not in the log');

# #12, certificates: after a rotation the new certificate does not decrypt
# with a wrong APIv3 key; the download says so.
$sql->("UPDATE wxpay.merchant_v3 SET apiv3_key = '$wrong' WHERE mch_id = '$b'");
$sql->("SELECT wxpay_unifiedorder('$b', 'b-1', 100, 'ops', '203.0.113.7', 'APP', '{}')");
sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $b, action => 'rotate' });
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '1 minute' WHERE mch_id = '$b'");
$log_at = -s $node->logfile;
($state, $err) = sql_error($node, "SELECT wxpay_orderquery('$b', 'b-1')");
like($err, qr/WX007:.*answered signed by an unknown key/, 'the answer signed by the new certificate is untrusted');
ok($node->poll_query_until('postgres',
	"SELECT status = 'error' AND message ~ 'APIv3 key of merchant $b is wrong' FROM wxpay.cert_downloads WHERE mch_id = '$b'"),
	'the download names the wrong APIv3 key');
ok(wx_poll(sub { log_since($log_at) =~ /could not download the platform certificates of merchant $b: .*APIv3 key/ }),
	'so does the log line');
unlike(log_since($log_at), qr/$wrong/, 'without the key');

# With the right key the rotated certificate is downloaded, and that is logged.
$sql->("UPDATE wxpay.merchant_v3 SET apiv3_key = '$WxTest::TEST_APIV3_KEY' WHERE mch_id = '$b'");
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '1 minute' WHERE mch_id = '$b'");
sql_error($node, "SELECT wxpay_orderquery('$b', 'b-1')");
ok(wx_poll(sub { log_since($log_at) =~ /platform certificates of merchant $b downloaded/ }),
	'a download that adds a certificate is logged');

done_testing();
