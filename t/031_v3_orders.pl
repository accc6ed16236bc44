# API v3 orders through the same SQL functions as v2 (wxpay-v3-api.md §6),
# for a merchant that verifies with platform certificates and one with the
# WeChat Pay public key: prepay of every trade type (with the JSAPI and APP
# client signatures verified by the merchant's certificate), the RFC 3339
# time_expire, queries by out_trade_no and by transaction id, close (204),
# ORDER_PAID, ORDER_NOT_EXIST; every answer is judged by its
# Wechatpay-Serial, and a probe signature, a wrong one or a skewed
# timestamp is refused as untrusted while the genuine answer after it is
# accepted.  The simulator checks our Authorization header on every call.
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

# The worker stays out of the way: these calls are the SQL functions'.
my $node = wx_node('v3orders', 'wxpay.poll_interval' => '1h');
my $sim = wx_sim();
my $sql = sub { $node->safe_psql('postgres', shift) };
my $json = sub { decode_json($sql->(shift)) };

my $dir = tempdir(CLEANUP => 1);

# Whether openssl verifies b64 over message with the public key of cert_pem.
sub verifies
{
	my ($cert_pem, $message, $b64) = @_;
	my %file = (cert => "$dir/cert.pem", msg => "$dir/msg", sig => "$dir/sig");
	for ([ cert => $cert_pem ], [ msg => $message ], [ sig => decode_base64($b64) ])
	{
		open(my $f, '>', $file{ $_->[0] }) or die;
		binmode $f;
		print $f $_->[1];
		close $f;
	}
	system("openssl x509 -in $file{cert} -pubkey -noout > $dir/pub.pem") == 0 or die;
	return `openssl dgst -sha256 -verify $dir/pub.pem -signature $file{sig} $file{msg} 2>&1` =~ /^Verified OK/;
}

my %merchants = (
	certificate => wx_merchant_v3($node, $sim, mch_id => '1900000109', key_mode => 'certificate'),
	public_key => wx_merchant_v3($node, $sim, mch_id => '1900000110', key_mode => 'public_key'));

for my $mode (sort keys %merchants)
{
	my $m = $merchants{$mode}{mch_id};
	my $order = sub {
		my ($no, $type, $extra) = @_;
		return $json->("SELECT wxpay_unifiedorder('$m', '$no', 100, 'v3 goods', '203.0.113.7', '$type', '$extra')");
	};

	# Prepay of every trade type; the simulator only answers a request
	# whose Authorization verifies with the merchant's key.
	my $r = $order->("$mode-jsapi", 'JSAPI', '{"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}');
	like($r->{prepay_id}, qr/^wx/, "$mode: JSAPI prepay_id");
	is($sql->("SELECT prepay_id FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = '$mode-jsapi'"),
		$r->{prepay_id}, "$mode: kept on the order");
	my $sim_order = sim_call($sim, 'GET', "/_sim/orders?mch_id=$m&out_trade_no=$mode-jsapi");
	is($sim_order->{params}{payer}{openid}, 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', "$mode: payer.openid from extra.openid");
	is($sim_order->{params}{amount}{total}, 100, "$mode: amount.total is a JSON number of fen");
	is($sim_order->{params}{scene_info}{payer_client_ip}, '203.0.113.7', "$mode: spbill_create_ip is scene_info.payer_client_ip");
	is($sim_order->{params}{description}, 'v3 goods', "$mode: body is description");
	my $js = $json->("SELECT wxpay_jsapi_params('$m', '$r->{prepay_id}')");
	ok(verifies($merchants{$mode}{cert_pem}, join('', map { "$_\n" } @$js{qw(appId timeStamp nonceStr package)}), $js->{paySign}),
		"$mode: the client's paySign for this prepay verifies with apiclient_cert.pem's key");

	$r = $order->("$mode-app", 'APP', '{}');
	like($r->{prepay_id}, qr/^wx/, "$mode: APP prepay_id");
	my $app = $json->("SELECT wxpay_app_params('$m', '$r->{prepay_id}')");
	ok(verifies($merchants{$mode}{cert_pem}, join('', map { "$_\n" } @$app{qw(appid timestamp noncestr prepayid)}), $app->{sign}),
		"$mode: and the APP sign");
	$r = $order->("$mode-native", 'NATIVE', '{}');
	like($r->{code_url}, qr{^weixin://}, "$mode: Native code_url, no product_id needed");
	ok(!exists $r->{prepay_id}, "$mode: and no prepay_id");
	$r = $order->("$mode-h5", 'MWEB', '{"scene_info": {"h5_info": {"type": "Wap"}}}');
	like($r->{mweb_url}, qr{^https://wx\.tenpay\.com/}, "$mode: H5 h5_url as mweb_url");
	is($sql->("SELECT mweb_url IS NOT NULL FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = '$mode-h5'"),
		't', "$mode: kept on the order");
	$sim_order = sim_call($sim, 'GET', "/_sim/orders?mch_id=$m&out_trade_no=$mode-h5");
	is_deeply($sim_order->{params}{scene_info}, { payer_client_ip => '203.0.113.7', h5_info => { type => 'Wap' } },
		"$mode: extra.scene_info merged into scene_info");

	# time_expire in RFC 3339, recorded as the same instant, sent in GMT+8.
	$order->("$mode-expire", 'APP', '{"time_expire": "2030-01-02T03:04:05Z"}');
	is($sql->("SELECT time_expire = '2030-01-02T03:04:05Z' FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = '$mode-expire'"),
		't', "$mode: an RFC 3339 time_expire is the order's");
	is(sim_call($sim, 'GET', "/_sim/orders?mch_id=$m&out_trade_no=$mode-expire")->{params}{time_expire},
		'2030-01-02T11:04:05+08:00', "$mode: and goes out as RFC 3339 in Beijing time");
	my ($state, $err) = sql_error($node, "SELECT wxpay_unifiedorder('$m', '$mode-bad', 1, 'x', '127.0.0.1', 'APP', '{\"time_expire\": \"2030-01-02 03:04\"}')");
	is($state, '22023', "$mode: a time_expire of neither form is refused");

	# Query by out_trade_no: NOTPAY, then paid at WeChat Pay (the
	# notification lost) and applied.
	$r = $json->("SELECT wxpay_orderquery('$m', '$mode-jsapi')");
	is($r->{trade_state}, 'NOTPAY', "$mode: orderquery answers the v3 transaction object");
	is($r->{amount}{total}, 100, "$mode: as JSON");
	my $paid = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => "$mode-jsapi", notify => JSON::PP::false });
	$r = $json->("SELECT wxpay_orderquery('$m', '$mode-jsapi')");
	is($r->{trade_state}, 'SUCCESS', "$mode: paid");
	is($sql->("SELECT state || ' ' || transaction_id || ' ' || (paid_at IS NOT NULL) FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = '$mode-jsapi'"),
		"SUCCESS $paid->{transaction_id} true", "$mode: the order is SUCCESS with its transaction_id and time");
	is($sql->("SELECT source FROM wxpay.order_events WHERE mch_id = '$m' AND out_trade_no = '$mode-jsapi' AND new_state = 'SUCCESS'"),
		'query', "$mode: by the query");

	# By transaction id.
	$r = $json->("SELECT wxpay_orderquery_by_transaction_id('$m', '$paid->{transaction_id}')");
	is($r->{out_trade_no}, "$mode-jsapi", "$mode: query by transaction id names the order");
	($state) = sql_error($node, "SELECT wxpay_orderquery_by_transaction_id('$m', '42/../x')");
	is($state, '22023', "$mode: a transaction id that is not one is refused before anything is sent");
	($state, $err) = sql_error($node, "SELECT wxpay_orderquery_by_transaction_id('$m', '4200000000000000000000000000')");
	is($state, 'WX005', "$mode: an unknown transaction id: not found");
	like($err, qr/ORDER_NOT_EXIST/, "$mode: with WeChat Pay's code");

	# Close (204), ORDER_PAID.
	$r = $json->("SELECT wxpay_closeorder('$m', '$mode-app')");
	is($sql->("SELECT state FROM wxpay.orders WHERE mch_id = '$m' AND out_trade_no = '$mode-app'"), 'CLOSED',
		"$mode: closed after a 204");
	is(sim_call($sim, 'GET', "/_sim/orders?mch_id=$m&out_trade_no=$mode-app")->{state}, 'CLOSED', "$mode: there too");
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => "$mode-native", notify => JSON::PP::false });
	($state, $err) = sql_error($node, "SELECT wxpay_closeorder('$m', '$mode-native')");
	is($state, 'WX002', "$mode: closing an order paid there: ORDER_PAID");
	like($err, qr/err_code: ORDER_PAID/, "$mode: the code in the detail");

	# Answers that must not be believed, each followed by the genuine one.
	for my $fault ([ probe => qr/probe/ ], [ badsign => qr/does not verify/ ], [ skew => qr/300/, 600 ], [ skew => qr/300/, -600 ])
	{
		my ($mode_f, $why, $skew) = @$fault;
		sim_call($sim, 'POST', '/_sim/v3/faults', { mode => $mode_f, count => 1, skew_s => $skew // 0 });
		($state, $err) = sql_error($node, "SELECT wxpay_orderquery('$m', '$mode-h5')");
		is($state, 'WX007', "$mode: a $mode_f" . ($skew ? " of $skew s" : '') . " answer is untrusted");
		like($err, $why, "$mode: saying why");
		is($json->("SELECT wxpay_orderquery('$m', '$mode-h5')")->{trade_state}, 'NOTPAY', "$mode: the genuine answer next");
	}
}

# A key the merchant does not have: the public-key merchant's keys are
# gone, so nothing verifies (and nothing is believed).
$sql->("DELETE FROM wxpay.wechatpay_keys WHERE mch_id = '1900000110'");
my ($state, $err) = sql_error($node, "SELECT wxpay_orderquery('1900000110', 'public_key-h5')");
is($state, 'WX007', 'an answer signed by a key not in wechatpay_keys is untrusted');
like($err, qr/names no key of merchant 1900000110/, 'saying so');

# An expired certificate is not used.
$sql->("UPDATE wxpay.wechatpay_keys SET expires_at = now() - interval '1 s' WHERE mch_id = '1900000109'");
($state) = sql_error($node, "SELECT wxpay_orderquery('1900000109', 'certificate-h5')");
is($state, 'WX007', 'nor by an expired certificate');

# In-store payments have no v3 counterpart here: refused before anything
# is recorded.
($state, $err) = sql_error($node, "SELECT wxpay_micropay('1900000109', 'mp-1', 1, 'x', '127.0.0.1', '134567890123456789')");
is($state, '55000', 'wxpay_micropay for a v3 merchant: object_not_in_prerequisite_state');
like($err, qr/speaks API v3/, 'saying why');
is($sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no = 'mp-1'"), '0', 'nothing recorded');

# v2 merchants are unchanged beside them.
wx_merchant($node, $sim);
like($json->("SELECT wxpay_unifiedorder('10000100', 'v2-1', 1, 'x', '127.0.0.1', 'NATIVE', '{\"product_id\": \"p1\"}')")->{code_url},
	qr{^weixin://}, 'a v2 merchant still gets its v2 prepay');

done_testing();
