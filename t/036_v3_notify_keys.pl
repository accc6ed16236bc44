# API v3 notifications delivered over HTTP, and WeChat Pay's keys changing
# under them (wxpay-v3-api.md §3.3, §3.7, §5.5): the simulator's probes and
# a skewed attempt are answered 401 and its genuine retry 204, after which
# it stops; a platform-certificate rotation (the new certificate fetched by
# the worker when its serial first arrives) and a migration from
# certificate to public key mid-test, during which notifications signed by
# either key verify, and after which a dropped certificate no longer does.
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
my $node = wx_node('v3keys', 'wxpay.poll_interval' => '1h');
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $mch = '1900000001';
my $m = wx_merchant_v3($node, $sim, mch_id => $mch, key_mode => 'certificate',
	notify_url => "http://127.0.0.1:$port/v3/notify/$mch");
wx_receiver($node, $port);
my $sql = sub { $node->safe_psql('postgres', shift) };

sub order
{
	my ($no) = @_;
	$sql->("SELECT wxpay_unifiedorder('$mch', '$no', 100, 'Keys', '203.0.113.7')");
}

# Every delivery attempt of an order's notification, once none is in flight.
sub deliveries
{
	my ($no) = @_;
	return sim_deliveries($sim, "out_trade_no=$no");
}

sub paid_here
{
	my ($no) = @_;
	return $node->poll_query_until('postgres',
		"SELECT state = 'SUCCESS' FROM wxpay.orders WHERE mch_id = '$mch' AND out_trade_no = '$no'");
}

# The orders first: a v3 prepay's answer is verified by the same keys.
order($_) for qw(deliver-1 old-cert new-cert-1 mig-cert mig-pub after-1 expired-1);

# Two probes, then an attempt with a clock 400 s ahead, then the genuine one.
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'deliver-1', probes => 2, skew_s => 400 });
ok(paid_here('deliver-1'), 'the delivered notification pays the order');
my $d = deliveries('deliver-1');
is(join(',', map { $_->{http_status} } @$d), '401,401,401,204',
	'two probes and the skewed attempt were answered 401, the genuine retry 204, and delivery stopped');
# (An unverified v3 body is not decrypted: which order it names is unknown.)
is($sql->("SELECT string_agg(outcome || ':' || verified, ',' ORDER BY id) FROM wxpay.notifications"),
	'rejected:false,rejected:false,rejected:false,accepted:true', 'each attempt is on record');
like($sql->("SELECT string_agg(reason, ' / ' ORDER BY id) FROM wxpay.notifications WHERE NOT verified"),
	qr{probe.*probe.*more than 300 s}, 'as two probes and a skewed timestamp');

# Rotation: the new certificate signs; the first notification by it is
# refused, and its unknown serial asks the worker to download the
# certificates at once, so a re-sent one pays.
my $old = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'old-cert',
	notify => JSON::PP::false });
my $keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'rotate' });
isnt($keys->{signing}, $old->{headers}{'Wechatpay-Serial'}, 'the simulator rotated its platform certificate');
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'new-cert-1' });
ok($node->poll_query_until('postgres', "SELECT source = 'download' FROM wxpay.wechatpay_keys WHERE serial = '$keys->{signing}'"),
	'the worker, asked by the unknown serial, downloads the new certificate');
ok($sql->("SELECT count(*) FROM wxpay.notifications WHERE headers ->> 'Wechatpay-Serial' = '$keys->{signing}'"
	  . " AND reason LIKE '%names no key%'") >= 1, 'after the first deliveries were refused for that serial');
my $resent = sim_call($sim, 'POST', '/_sim/notification', { mch_id => $mch, out_trade_no => 'new-cert-1' });
is($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $resent->{headers}, $resent->{body})), '204',
	'a re-sent notification by the new certificate is accepted');
ok(paid_here('new-cert-1'), 'and pays');
is($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $old->{headers}, $old->{notification})), '204',
	'a notification signed by the old certificate still verifies');

# Migration: the merchant applies for the public key; WeChat Pay switches
# callbacks over gradually, so both kinds arrive for days.
my $by_cert = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'mig-cert',
	notify => JSON::PP::false });
$keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'add_public_key' });
wx_v3_keys($node, $mch, $keys->{wechatpay_keys});
$keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'sign_with', sign_with => 'public_key' });
like($keys->{signing}, qr/^PUB_KEY_ID_\d+$/, 'the simulator now signs with the public key');
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'mig-pub' });
ok(paid_here('mig-pub'), 'a notification signed by the public key pays during the migration');
is($sql->("SELECT headers ->> 'Wechatpay-Serial' FROM wxpay.notifications WHERE out_trade_no = 'mig-pub' AND outcome = 'accepted'"),
	$keys->{signing}, 'verified under its PUB_KEY_ID_');
is($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $by_cert->{headers}, $by_cert->{notification})), '204',
	'and one signed by the certificate still pays during the overlap');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'mig-cert'"), 'SUCCESS', 'its order is paid');

# After the migration the DBA drops the certificates: only the public key verifies.
my $late = sim_call($sim, 'POST', '/_sim/notification', { mch_id => $mch, out_trade_no => 'mig-cert' });
sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'drop_certificates' });
$sql->("DELETE FROM wxpay.wechatpay_keys WHERE mch_id = '$mch' AND kind = 'certificate'");
like($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $old->{headers}, $old->{notification})), qr/^401$/,
	'a certificate-signed notification is refused once the certificates are gone');
is($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $late->{headers}, $late->{body})), '204',
	'a public-key-signed one is still accepted (a duplicate here)');
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'after-1' });
ok(paid_here('after-1'), 'and new payments are notified and paid');

# An expired certificate verifies nothing.
$keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'rotate' });
wx_v3_keys($node, $mch, $keys->{wechatpay_keys});
$sql->("UPDATE wxpay.wechatpay_keys SET expires_at = now() - interval '1 second' WHERE mch_id = '$mch' AND serial = '$keys->{signing}'");
my $exp = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'expired-1', notify => JSON::PP::false });
is($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $exp->{headers}, $exp->{notification})), '401',
	'a certificate past its expires_at verifies nothing');

wx_audit($node, $sim, $mch, 'keys');
$node->stop;
done_testing();
