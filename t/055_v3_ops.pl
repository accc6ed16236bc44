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
sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $a, action => 'sign_with', sign_with => 'public_key' });
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

done_testing();
