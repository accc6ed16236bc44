# Platform certificates (wxpay-v3-api.md §3.3-§3.5): the worker downloads
# GET /v3/certificates for a merchant that has none yet, decrypting each
# with the APIv3 key; after WeChat Pay rotates its certificate an answer
# signed by the new one is refused until the worker, asked at once by that
# unknown serial, has downloaded it, and the old one is kept; downloaded
# certificates are forgotten after their expiry, the DBA's are not; the
# 24-hour refresh; a merchant without certificates (404
# RESOURCE_NOT_EXISTS) is recorded quietly; during a migration from
# certificate to public key our requests' Wechatpay-Serial names the key we
# verify with (the certificate until we have the public key, then the
# PUB_KEY_ID_), and WeChat Pay's answers, signed with it, verify.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $node = wx_node('v3certs', 'wxpay.poll_interval' => '300ms');
my $sim = wx_sim();
my $sql = sub { $node->safe_psql('postgres', shift) };
my $m = '1900000109';

# A certificate merchant configured without any WeChat Pay key.
my $creds = wx_merchant_v3($node, $sim, mch_id => $m, key_mode => 'certificate', keys => 0);
my $first = $creds->{wechatpay_keys}[0]{serial};
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM wxpay.wechatpay_keys WHERE mch_id = '$m' AND serial = '$first' AND source = 'download'"),
	'the worker downloads the platform certificate of a merchant that has none');
is($sql->("SELECT status FROM wxpay.cert_downloads WHERE mch_id = '$m'"), 'ok', 'and records the download');
is($sql->("SELECT pem = '$creds->{wechatpay_keys}[0]{pem}' AND kind = 'certificate' AND expires_at > now() + interval '4 years'"
	  . " FROM wxpay.wechatpay_keys WHERE mch_id = '$m'"), 't', 'decrypted: the very certificate, with its expiry');
$sql->("SELECT wxpay_unifiedorder('$m', 'c-1', 100, 'v3 goods', '127.0.0.1', 'APP', '{}')");
pass('answers verify with it');

# Rotation: the new certificate signs; the first answer is refused, the
# worker is asked at once and downloads it; the old one stays.
my $rotated = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'rotate' });
my ($state, $err) = sql_error($node, "SELECT wxpay_orderquery('$m', 'c-1')");
is($state, 'WX007', 'an answer signed by the new certificate, unknown yet, is untrusted');
like($err, qr/names no key/, 'saying so');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM wxpay.wechatpay_keys WHERE mch_id = '$m' AND serial IN ('$first', '$rotated->{signing}')"),
	'the unknown serial has the worker download the new certificate, the old one kept');
is(decode_json($sql->("SELECT wxpay_orderquery('$m', 'c-1')"))->{trade_state}, 'NOTPAY', 'the retry verifies');

# Downloaded certificates go after their expiry; the DBA's stay.  (Another
# merchant's certificate stands in for one WeChat Pay no longer lists.)
my $other = wx_merchant_v3($node, $sim, mch_id => '1900000111', key_mode => 'certificate');
$sql->("INSERT INTO wxpay.wechatpay_keys (mch_id, pem, expires_at, source) VALUES"
	  . " ('$m', '$other->{wechatpay_keys}[0]{pem}', now() - interval '1 s', 'download')");
$sql->("UPDATE wxpay.wechatpay_keys SET expires_at = now() - interval '1 s', source = 'manual'"
	  . " WHERE mch_id = '1900000111'");
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '25 hours' WHERE mch_id = '$m'");
ok($node->poll_query_until('postgres',
	"SELECT checked_at > now() - interval '1 minute' FROM wxpay.cert_downloads WHERE mch_id = '$m'"),
	'the 24-hour refresh');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM wxpay.wechatpay_keys WHERE mch_id = '$m' AND serial = '$other->{wechatpay_keys}[0]{serial}'"),
	'a downloaded certificate past its expiry is forgotten');
is($sql->("SELECT count(*) FROM wxpay.wechatpay_keys WHERE mch_id = '1900000111'"), '1', 'one the DBA put there is not');

# A merchant with no platform certificate at all, nor a key: 404
# RESOURCE_NOT_EXISTS, recorded as none, and nothing in the log.
my $log_at = -s $node->logfile;
wx_merchant_v3($node, $sim, mch_id => '1900000110', key_mode => 'public_key', keys => 0);
ok($node->poll_query_until('postgres',
	"SELECT status = 'none' FROM wxpay.cert_downloads WHERE mch_id = '1900000110'"),
	'a merchant without certificates: none');
unlike(slurp_file($node->logfile, $log_at), qr/platform certificates of merchant 1900000110/, 'quietly');
# Once it has its public key, it is not asked again.
my $pub = wx_merchant_v3($node, $sim, mch_id => '1900000112', key_mode => 'public_key');
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '25 hours'");
ok($node->poll_query_until('postgres',
	"SELECT bool_and(checked_at > now() - interval '1 minute') FROM wxpay.cert_downloads"),
	'the others are refreshed');
is($sql->("SELECT count(*) FROM wxpay.cert_downloads WHERE mch_id = '1900000112'"), '0',
	'a public-key merchant has nothing to download');

# Migration from certificate to public key (§2.5, §3.3): WeChat Pay adds
# the public key and switches its notifications to it; during the
# migration it signs an answer with the key our request's Wechatpay-Serial
# names.  Before the DBA has the public key here our requests name our
# newest certificate, and its answers verify; once the DBA adds it they
# name the PUB_KEY_ID_, and are signed with it.
my $keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'add_public_key' });
sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'sign_with', sign_with => 'public_key' });
is(decode_json($sql->("SELECT wxpay_orderquery('$m', 'c-1')"))->{trade_state}, 'NOTPAY',
	'during the migration, before we have the public key, an answer verifies');
my $seen = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'show' });
is($seen->{last_request_serial} . ' ' . $seen->{last_answer_serial}, "$rotated->{signing} $rotated->{signing}",
	'our request named our newest certificate (Wechatpay-Serial), and the answer was signed with it');
my ($public) = grep { $_->{kind} eq 'public_key' } @{ $keys->{wechatpay_keys} };
wx_v3_keys($node, $m, [$public]);
is(decode_json($sql->("SELECT wxpay_orderquery('$m', 'c-1')"))->{trade_state}, 'NOTPAY',
	'once the DBA adds the public key, the answer verifies too');
$seen = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'show' });
is($seen->{last_request_serial} . ' ' . $seen->{last_answer_serial}, "$public->{serial} $public->{serial}",
	'our request names the PUB_KEY_ID_, and the answer is signed with the public key');
sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'drop_certificates' });
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '25 hours' WHERE mch_id = '$m'");
ok($node->poll_query_until('postgres',
	"SELECT status = 'none' FROM wxpay.cert_downloads WHERE mch_id = '$m'"),
	'after it, the download finds no certificate');
is(decode_json($sql->("SELECT wxpay_orderquery('$m', 'c-1')"))->{trade_state}, 'NOTPAY', 'and the public key verifies');

# A listing of more than 16 certificates is read whole: the newest, listed
# last, is stored too (only the first 16 were read before).
my @listed = map { sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $m, action => 'rotate' })->{signing} } 1 .. 18;
my $in_listing = join(', ', map { "'$_'" } @listed);
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '25 hours' WHERE mch_id = '$m'");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 18 FROM wxpay.wechatpay_keys WHERE mch_id = '$m' AND serial IN ($in_listing)"),
	'a listing of 18 certificates is stored whole');
is($sql->("SELECT count(*) FROM wxpay.wechatpay_keys WHERE mch_id = '$m' AND serial = '$listed[-1]'"), '1',
	'the newest included');

done_testing();
