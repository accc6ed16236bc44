# Unified order against the simulator: the happy paths, re-entry, every
# fault the simulator injects, cancellation, TLS trust, privileges, and
# that the API key never reaches the server log.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WxTest;

my $sim = wx_sim();
# No statement logging: the merchant INSERT below carries the key.
my $node = wx_node('unifiedorder', 'wxpay.poll_interval' => '1h', log_statement => 'none',
	log_min_messages => 'debug1');
wx_merchant($node, $sim);
wx_merchant($node, $sim, mch_id => '10000200', appid => 'wx2000', sign_type => 'HMAC-SHA256');

my $sql = sub { $node->safe_psql('postgres', shift) };
my $requests = sub { sim_call($sim, 'GET', '/_sim/stats')->{requests_total} };
my $fault = sub { sim_call($sim, 'POST', '/_sim/faults', {@_}) };

# APP, MD5
my $prepay = $sql->("SELECT wxpay_unifiedorder('10000100', 'uo-1', 100, 'Shop-Goods', '203.0.113.7') ->> 'prepay_id'");
like($prepay, qr/^wx\w+$/, 'APP order returns a prepay_id');
is($sql->("SELECT prepay_id FROM wxpay.orders WHERE out_trade_no = 'uo-1'"), $prepay, 'and stores it on the order');
my $at_sim = sim_call($sim, 'GET', '/_sim/orders?mch_id=10000100&out_trade_no=uo-1');
is($at_sim->{total_fee} // $at_sim->{params}{total_fee}, 100, 'the simulator has the order with its amount');
is($sql->("SELECT wxpay_verify(wxpay_app_params('10000100', '$prepay'), '$TEST_KEY')"), 't',
	'APP params are signed with the merchant key');
is($sql->("SELECT wxpay_app_params('10000100', '$prepay') ->> 'package'"), 'Sign=WXPay', 'APP package is Sign=WXPay');

# Re-entry with identical parameters gets a prepay_id again; different ones are refused locally.
is($sql->("SELECT wxpay_unifiedorder('10000100', 'uo-1', 100, 'Shop-Goods', '203.0.113.7') ->> 'prepay_id'"),
	$prepay, 'identical re-entry returns the same prepay_id');
my $before = $requests->();
my ($state, $err) = sql_error($node, "SELECT wxpay_unifiedorder('10000100', 'uo-1', 200, 'Shop-Goods', '203.0.113.7')");
is($state, '22023', 'different parameters for the same out_trade_no are refused');
is($requests->(), $before, 'without a request');

# JSAPI (HMAC merchant), NATIVE, MWEB
my $js = $sql->("SELECT wxpay_unifiedorder('10000200', 'uo-js', 1, 'Shop-JSAPI', '203.0.113.7', 'JSAPI', '{\"openid\": \"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\"}') ->> 'prepay_id'");
like($js, qr/^wx/, 'JSAPI order with an HMAC-SHA256 merchant');
is($sql->("SELECT (p ->> 'paySign') = wxpay_sign(p - 'paySign', '$TEST_KEY', 'HMAC-SHA256') FROM wxpay_jsapi_params('10000200', '$js') p"),
	't', 'JSAPI paySign verifies with HMAC-SHA256');
like($sql->("SELECT wxpay_unifiedorder('10000100', 'uo-native', 1, 'Shop-QR', '203.0.113.7', 'NATIVE', '{\"product_id\": \"sku1\"}') ->> 'code_url'"),
	qr/^weixin:\/\//, 'NATIVE order returns a code_url');
like($sql->("SELECT wxpay_unifiedorder('10000100', 'uo-mweb', 1, 'Shop-H5', '203.0.113.7', 'MWEB', '{\"scene_info\": {\"h5_info\": {\"type\": \"Wap\", \"wap_url\": \"https://m.example.com\", \"wap_name\": \"shop\"}}}') ->> 'mweb_url'"),
	qr/^https:\/\//, 'MWEB order returns an mweb_url');

# Faults: each is a clear error with the contract's SQLSTATE (WX007: an
# answer that cannot be trusted; WX001: no answer, retry with identical
# parameters), and nothing is recorded.
my %faults = (
	badsign => [ 'WX007', qr/signature that does not verify/ ],
	wrong_appid => [ 'WX007', qr/another merchant/ ],
	garbage => [ 'WX007', qr/not valid XML/ ],
	http500 => [ 'WX001', qr/HTTP status 500/ ],
	reset => [ 'WX001', qr/failed/ ],
	truncated => [ 'WX001', qr/failed/ ],
	oversize => [ 'WX001', qr/exceeds/ ],
);
for my $mode (sort keys %faults)
{
	$fault->(mode => $mode, count => 1);
	my ($st, $msg) = sql_error($node, "SELECT wxpay_unifiedorder('10000100', 'f-$mode', 1, 'Fault', '203.0.113.7')");
	is($st, $faults{$mode}[0], "fault $mode: SQLSTATE $faults{$mode}[0]");
	like($msg, $faults{$mode}[1], "fault $mode: message says what went wrong");
	is($sql->("SELECT count(*) FROM wxpay.orders WHERE out_trade_no = 'f-$mode'"), '0', "fault $mode: no order recorded");
}
$fault->(mode => 'none');

# A hung request ends with statement_timeout within about a second.
$fault->(mode => 'delay', delay_ms => 8000, count => 1);
my $start = time;
($state) = sql_error($node, "SET statement_timeout = '500ms'; SELECT wxpay_unifiedorder('10000100', 'f-slow', 1, 'Slow', '203.0.113.7')");
is($state, '57014', 'statement_timeout cancels a hung request');
ok(time - $start < 2, 'within about a second');

# ... and pg_cancel_backend does too.
$fault->(mode => 'delay', delay_ms => 8000, count => 1);
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, "\\echo started\nSELECT wxpay_unifiedorder('10000100', 'f-cancel', 1, 'Cancel', '203.0.113.7');\n");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%f-cancel%' AND pid <> pg_backend_pid()"),
	'request in flight');
$start = time;
$sql->("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%f-cancel%' AND pid <> pg_backend_pid()");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE '%f-cancel%' AND state = 'active' AND pid <> pg_backend_pid()"),
	'pg_cancel_backend ends it');
ok(time - $start < 2, 'within about a second');
$bg->quit;
$fault->(mode => 'none');

# TLS: a server the merchant's CA did not sign is refused.
my $other_ca = slurp_file("$sim->{dir}/other-ca.pem");
$other_ca =~ s/'/''/g;
$sql->("UPDATE wxpay.merchants SET ca_pem = '$other_ca' WHERE mch_id = '10000100'");
($state, $err) = sql_error($node, "SELECT wxpay_unifiedorder('10000100', 'tls-1', 1, 'TLS', '203.0.113.7')");
is($state, 'WX007', 'untrusted server certificate is refused (WX007)');
like($err, qr/certificate/i, 'and the message says it is the certificate');
$sql->("UPDATE wxpay.merchants SET ca_pem = NULL WHERE mch_id = '10000100'");
($state) = sql_error($node, "SELECT wxpay_unifiedorder('10000100', 'tls-2', 1, 'TLS', '203.0.113.7')");
is($state, 'WX007', 'the simulator CA is not in the system store either');
my $ca = $sim->{ca_pem};
$ca =~ s/'/''/g;
$sql->("UPDATE wxpay.merchants SET ca_pem = '$ca' WHERE mch_id = '10000100'");

# Privileges: an application role can order but never read secrets.
$sql->(q{
	CREATE ROLE shop LOGIN;
	GRANT EXECUTE ON FUNCTION wxpay_unifiedorder(text, text, integer, text, text, text, jsonb),
		wxpay_app_params(text, text) TO shop;
	GRANT USAGE ON SCHEMA wxpay TO shop;
	GRANT SELECT ON wxpay.orders, wxpay.merchant_info TO shop;
});
like($node->safe_psql('postgres', "SELECT wxpay_unifiedorder('10000100', 'priv-1', 1, 'Priv', '203.0.113.7')",
	extra_params => [ '-U', 'shop' ]), qr/prepay_id/, 'a granted role can create orders');
($state) = sql_error($node, 'SELECT api_key FROM wxpay.merchants', user => 'shop');
is($state, '42501', 'but cannot read wxpay.merchants');
($state) = sql_error($node, 'SELECT * FROM wxpay.merchant_info', user => 'shop');
is($state, 'none', 'merchant_info is readable and has no secrets');
unlike($node->safe_psql('postgres', 'SELECT row_to_json(m)::text FROM wxpay.merchant_info m', extra_params => [ '-U', 'shop' ]),
	qr/$TEST_KEY|PRIVATE KEY/, 'merchant_info shows neither key');
($state) = sql_error($node, "UPDATE wxpay.orders SET state = 'SUCCESS' WHERE out_trade_no = 'priv-1'", user => 'shop');
is($state, '42501', 'and cannot mark an order paid by hand');
($state) = sql_error($node, "SELECT wxpay_handle_notify('<xml/>')", user => 'shop');
is($state, '42501', 'the notify handler is granted separately');
my $in_flight = $node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%$TEST_KEY%' AND pid <> pg_backend_pid()");
is($in_flight, '0', 'no statement in pg_stat_activity carries the key');
($state) = sql_error($node, "SELECT wxpay_orderquery('10000100', 'priv-1')", user => 'shop');
is($state, '42501', 'functions not granted stay closed');
# Objects a caller puts first on its search_path never reach the definer.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
		AS $$BEGIN RAISE EXCEPTION 'search_path hijacked'; END$$;
	CREATE TABLE public.merchants (mch_id text);
	GRANT ALL ON public.merchants TO shop;
});
like($node->safe_psql('postgres', "SET search_path = public, pg_catalog; SELECT wxpay_unifiedorder('10000100', 'priv-2', 1, 'Priv', '203.0.113.7')",
	extra_params => [ '-U', 'shop' ]), qr/prepay_id/, 'search_path of the caller does not leak into the definer');

# The key never reaches the server log, whatever failed above.
my $log = slurp_file($node->logfile);
unlike($log, qr/$TEST_KEY/, 'API key is not in the server log');
unlike($log, qr/PRIVATE KEY/, 'client key is not in the server log');

$node->stop;
done_testing();
