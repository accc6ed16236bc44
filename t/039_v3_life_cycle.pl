# The whole API v3 life cycle against the simulator (issue 18, done when),
# for a merchant that verifies with platform certificates and one with the
# WeChat Pay public key: prepay of every type, JSAPI client parameters
# verified with the merchant's public key, a notification that pays after a
# probe, one after a skewed attempt, a lost notification found by the
# worker, an order closed at expiry, a refund settled by its notification
# and one by the worker's refund query; then, for the certificate
# merchant, a certificate rotation (the worker fetches the new one when its
# serial first arrives) and a migration to the public key, each followed
# by a payment.  Ends with the audit against WeChat Pay's truth.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--notify-scale', '0.002');
my $node = wx_node('v3life', 'wxpay.poll_interval' => '1h');
my $port = PostgreSQL::Test::Cluster::get_free_port();
wx_receiver($node, $port);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $dir = tempdir(CLEANUP => 1);

# Every delivery attempt's HTTP status, once none is in flight.
sub delivered
{
	my ($what, $no) = @_;
	return join(',', map { $_->{http_status} } @{ sim_deliveries($sim, "$what=$no") });
}

# Whether openssl verifies a base64 signature over message with the
# public key of a certificate.
sub verifies
{
	my ($cert, $message, $b64) = @_;
	my %file = map { $_ => "$dir/$_" } qw(cert pub msg sig);
	for ([ cert => $cert ], [ msg => $message ], [ sig => decode_base64($b64) ])
	{
		open(my $f, '>', $file{ $_->[0] }) or die;
		binmode $f;
		print $f $_->[1];
		close $f;
	}
	system("openssl x509 -in $file{cert} -pubkey -noout > $file{pub}") == 0 or die;
	return `openssl dgst -sha256 -verify $file{pub} -signature $file{sig} $file{msg} 2>&1` =~ /^Verified OK/;
}

my $i = 0;
for my $mode (qw(certificate public_key))
{
	my $mch = '19000002' . sprintf('%02d', ++$i);
	my $m = wx_merchant_v3($node, $sim, mch_id => $mch, appid => "wx00000000000002$i", key_mode => $mode,
		notify_url => "http://127.0.0.1:$port/v3/notify/$mch");
	my $state = sub {
		my ($table, $key, $no) = @_;
		return $sql->("SELECT state FROM wxpay.$table WHERE mch_id = '$mch' AND $key = '$no'");
	};
	my $by = sub {
		my ($no, $new_state) = @_;
		return $sql->("SELECT string_agg(source, ',') FROM wxpay.order_events WHERE mch_id = '$mch'"
			  . " AND out_trade_no = '$no' AND new_state = '$new_state'");
	};

	# Prepay of every type.
	my %prepay;
	for ([ JSAPI => '{"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}' ], [ APP => '{}' ], [ NATIVE => '{}' ],
		[ MWEB => '{"scene_info": {"h5_info": {"type": "Wap"}}}' ])
	{
		my ($type, $extra) = @$_;
		$prepay{$type} = decode_json($sql->("SELECT wxpay_unifiedorder('$mch', '$mode-$type', 100, 'Life', '203.0.113.7',"
			  . " '$type', '$extra')"));
	}
	like($prepay{JSAPI}{prepay_id}, qr/^wx/, "$mode: JSAPI prepay_id");
	like($prepay{APP}{prepay_id}, qr/^wx/, "$mode: APP prepay_id");
	like($prepay{NATIVE}{code_url}, qr{^weixin://}, "$mode: Native code_url");
	like($prepay{MWEB}{mweb_url}, qr{^https://}, "$mode: H5 url");

	# The client's parameters, signed with the merchant's key.
	my $js = decode_json($sql->("SELECT wxpay_jsapi_params('$mch', '$prepay{JSAPI}{prepay_id}')"));
	ok(verifies($m->{cert_pem}, join('', map { "$_\n" } @$js{qw(appId timeStamp nonceStr package)}), $js->{paySign}),
		"$mode: the JSAPI paySign verifies with the merchant's public key");

	# Notifications: a probe, then the genuine retry; a skewed attempt, then
	# the genuine retry.
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => "$mode-JSAPI", probes => 1 });
	is(delivered(out_trade_no => "$mode-JSAPI"), '401,204', "$mode: a probe is answered 401, the genuine retry 204");
	is($by->("$mode-JSAPI", 'SUCCESS'), 'notify', "$mode: which paid the JSAPI order");
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => "$mode-APP", skew_s => -400 });
	is(delivered(out_trade_no => "$mode-APP"), '401,204', "$mode: a skewed timestamp is answered 401, the genuine retry 204");
	is($by->("$mode-APP", 'SUCCESS'), 'notify', "$mode: which paid the APP order");

	# A lost notification, found by the worker; an expired order, closed.
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => "$mode-NATIVE", notify => JSON::PP::false });
	ok(wx_poll_due($node, "out_trade_no = '$mode-NATIVE'",
		"SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = '$mode-NATIVE'"), "$mode: the worker finds the lost payment");
	is($by->("$mode-NATIVE", 'SUCCESS'), 'query', "$mode: by its query");
	$sql->("UPDATE wxpay.orders SET time_expire = now() - interval '1 minute', created_at = now() - interval '10 minutes'"
		  . " WHERE out_trade_no = '$mode-MWEB'");
	ok(wx_poll_due($node, "out_trade_no = '$mode-MWEB'",
		"SELECT state = 'CLOSED' FROM wxpay.orders WHERE out_trade_no = '$mode-MWEB'"), "$mode: the expired order is closed");
	is($by->("$mode-MWEB", 'CLOSED'), 'close', "$mode: by the worker's close");

	# A refund settled by its notification, one by the refund query.
	$sql->("SELECT wxpay_refund('$mch', '$mode-JSAPI', '$mode-r1', 40)");
	sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $mch, out_refund_no => "$mode-r1", state => 'SUCCESS',
		notify => JSON::PP::true });
	ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = '$mode-r1'"),
		"$mode: REFUND.SUCCESS settles the refund");
	is($sql->("SELECT source FROM wxpay.refund_events WHERE out_refund_no = '$mode-r1' AND new_state = 'SUCCESS'"), 'notify',
		"$mode: as the notification");
	is(delivered(out_refund_no => "$mode-r1"), '204', "$mode: delivered once");
	$sql->("SELECT wxpay_refund('$mch', '$mode-APP', '$mode-r2', 30)");
	sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => $mch, out_refund_no => "$mode-r2", state => 'SUCCESS' });
	$sql->("UPDATE wxpay.refunds SET next_query_at = now() WHERE out_refund_no = '$mode-r2'");
	ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = '$mode-r2'"),
		"$mode: the worker's refund query settles the other");
	is($sql->("SELECT source FROM wxpay.refund_events WHERE out_refund_no = '$mode-r2' AND new_state = 'SUCCESS'"), 'query',
		"$mode: as the query");
	wx_audit($node, $sim, $mch, $mode);
}

# The certificate merchant: WeChat Pay rotates its certificate.  The first
# deliveries by the new one are refused; its serial asks the worker to
# download the certificates; then a re-sent notification pays.
my $mch = '1900000201';
$sql->("SELECT wxpay_unifiedorder('$mch', 'rotated-1', 100, 'Life', '203.0.113.7')");
$sql->("SELECT wxpay_unifiedorder('$mch', 'migrated-1', 100, 'Life', '203.0.113.7')");
my $keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'rotate' });
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'rotated-1' });
ok($node->poll_query_until('postgres', "SELECT source = 'download' FROM wxpay.wechatpay_keys WHERE serial = '$keys->{signing}'"),
	'rotation: the worker downloads the new certificate, asked by its serial');
my $resent = sim_call($sim, 'POST', '/_sim/notification', { mch_id => $mch, out_trade_no => 'rotated-1' });
is($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $resent->{headers}, $resent->{body})), '204',
	'rotation: a notification by the new certificate pays');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'rotated-1'"), 'SUCCESS', 'rotation: the order is paid');

# Migration to the public key: the DBA adds it from the merchant platform;
# WeChat Pay switches its callbacks over.
my $old = sim_call($sim, 'POST', '/_sim/notification', { mch_id => $mch, out_trade_no => 'rotated-1' });
$keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'add_public_key' });
wx_v3_keys($node, $mch, [ grep { $_->{kind} eq 'public_key' } @{ $keys->{wechatpay_keys} } ]);
$keys = sim_call($sim, 'POST', '/_sim/v3/keys', { mch_id => $mch, action => 'sign_with', sign_with => 'public_key' });
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'migrated-1' });
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'migrated-1'"),
	'migration: a notification signed by the public key pays');
is($sql->("SELECT headers ->> 'Wechatpay-Serial' FROM wxpay.notifications WHERE out_trade_no = 'migrated-1' AND outcome = 'accepted'"),
	$keys->{signing}, 'migration: verified under its PUB_KEY_ID_');
is($sql->('SELECT status FROM ' . wx_notify_v3_call($mch, $old->{headers}, $old->{body})), '204',
	'migration: one signed by the certificate still verifies during the overlap');
wx_audit($node, $sim, $mch, 'after rotation and migration');

$node->stop;
done_testing();
