# The sharded layout through wxpay_proxy: three shard clusters and a
# proxy cluster on loopback.  The stable hash and its vectors; the proxy
# functions generated from a shard's catalogue and the drift check (a new
# mch_id-first function is picked up by sync() with no hand edit, one the
# generator cannot route is refused, shards that disagree are refused);
# orders, client parameters, query and close routed to each merchant's
# shard as the application role; notifications routed by the body's
# mch_id; undeliverable ones recorded in the proxy and answered FAIL; the
# paid-event readers and the DBA's questions across every shard.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;
use WxProxy;

my $sim = wx_sim('--close-min-age-s', '0');
my $layout = wx_proxy_layout(shards => 3, shard_conf => { 'wxpay.poll_interval' => '1h' });
my ($proxy, @shards) = ($layout->{proxy}, @{ $layout->{shards} });
my $px = sub { $proxy->safe_psql('postgres', shift) };
my $shop = sub { $proxy->safe_psql('postgres', shift, extra_params => [ '-U', 'shop' ]) };

# The hash: 32-bit FNV-1a of the UTF-8 bytes, with the published vectors.
is($px->(q{SELECT string_agg(wxpay_proxy.mch_hash(v)::text, ' ' ORDER BY o)
	FROM unnest(ARRAY['', 'a', 'foobar', '1900000109', '商户']) WITH ORDINALITY u(v, o)}),
	'2166136261 3826002220 3214735720 4008104591 2165280526', 'mch_hash is FNV-1a 32 (fixed vectors)');
is($px->("SELECT wxpay_proxy.home_shard('1900000109')"), 4008104591 % 3, 'the home shard is the hash mod the shard count');
is($px->(q{SELECT count(*) FROM pg_foreign_server s, unnest(s.srvoptions) o WHERE s.srvname = 'wxpay_shards' AND o ~ '^p[0-9]+='}),
	'16', 'the cluster has 16 partitions (a power of two) for 3 shards');
is($px->(q{SELECT string_agg(shard || ':' || reachable, ' ' ORDER BY shard) FROM wxpay_proxy.shard_health()}),
	'0:true 1:true 2:true', 'every shard answers');
is($px->(q{SELECT count(*) FROM pg_extension WHERE extname = 'wxpay'}), '0', 'the proxy database has no wxpay');

# The proxy's functions are the extension's application functions.
my $api = q{SELECT string_agg(p.proname || '(' || pg_get_function_arguments(p.oid) || ') ' || pg_get_function_result(p.oid), E'\n' ORDER BY 1)
	FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.proname LIKE 'wxpay\_%'};
my $shard_api = $shards[1]->safe_psql('postgres', $api);
like($shard_api, qr/^wxpay_handle_notify\(body text\) text$/m, 'the shard lists its functions');
is($px->($api), $shard_api, 'the proxy has every application function of wxpay, with the same arguments, defaults and results');
is($px->('SELECT count(*) FROM wxpay_proxy.drift()'), '0', 'drift() finds no difference');
my $n_api = () = $shard_api =~ /\n/g;
$n_api++;
is($px->('SELECT count(*) FROM wxpay_proxy.generated'), $n_api, 'sync() made one function for each');
is($px->(q{SELECT string_agg(signature || ' ' || kind, E'\n' ORDER BY signature) FROM wxpay_proxy.generated
	WHERE signature IN ('public.wxpay_unifiedorder(text, text, integer, text, text, text, jsonb)', 'public.wxpay_refund(text, text, text, integer, jsonb)',
		'public.wxpay_handle_notify(text)', 'public.wxpay_handle_refund_notify(text)', 'public.wxpay_paid_events_next(text, integer)',
		'public.wxpay_paid_events_seek(text, bigint)', 'public.wxpay_sign(jsonb, text, text)')}),
	join("\n", 'public.wxpay_handle_notify(text) notification', 'public.wxpay_handle_refund_notify(text) notification',
		'public.wxpay_paid_events_next(text, integer) all', 'public.wxpay_paid_events_seek(text, bigint) all',
		'public.wxpay_refund(text, text, text, integer, jsonb) merchant', 'public.wxpay_sign(jsonb, text, text) any',
		'public.wxpay_unifiedorder(text, text, integer, text, text, text, jsonb) merchant'), 'how each function is routed');
like($px->('SELECT wxpay_proxy.generate()'), qr/RUN ON wxpay_proxy\.route\(mch_id\);\n\tTARGET public\.wxpay_unifiedorder;/,
	'generate() prints the SQL');

# A new mch_id-first function on the shards: drift() sees it, sync()
# makes it with no hand edit, and it runs on the merchant's shard.
my $on_all = sub { my $sql = shift; $_->safe_psql('postgres', $sql) for @shards };
$on_all->(q{CREATE FUNCTION public.wxpay_where(mch_id text, n integer DEFAULT 1) RETURNS text LANGUAGE sql
	AS $$ SELECT current_setting('port') || ':' || mch_id || ':' || n $$;
	ALTER EXTENSION wxpay ADD FUNCTION public.wxpay_where(text, integer);
	CREATE FUNCTION public.wxpay_handle_test_v3(mch_id text, headers jsonb, body text, OUT status integer, OUT reply text)
	LANGUAGE sql AS $$ SELECT 200, current_setting('port') || ':' || mch_id || ':' || (headers ->> 'Wechatpay-Serial') || ':' || body $$;
	ALTER EXTENSION wxpay ADD FUNCTION public.wxpay_handle_test_v3(text, jsonb, text)});
is($px->('SELECT string_agg(problem, \',\') FROM wxpay_proxy.drift() WHERE shard = 0'), 'missing in the proxy,missing in the proxy',
	'drift() reports the functions missing in the proxy');
is($px->('SELECT wxpay_proxy.sync()'), $n_api + 2, 'sync() makes them');
is($px->('SELECT count(*) FROM wxpay_proxy.drift()'), '0', 'and the proxy is in step again');
my $placed = wx_proxy_merchants($layout, $sim, 2);
for my $mch (sort keys %$placed)
{
	is($px->("SELECT wxpay_where('$mch')"), $shards[ $placed->{$mch} ]->port . ":$mch:1", "the new function runs on $mch\'s shard");
}
my $m = (sort keys %$placed)[-1];
is($px->(qq{SELECT status || ' ' || reply FROM wxpay_handle_test_v3('$m', '{"Wechatpay-Serial": "S1"}', 'b')}),
	'200 ' . $shards[ $placed->{$m} ]->port . ":$m:S1:b", 'a v3-shaped handler is routed by its mch_id argument');
is($px->(q{SELECT status || ' ' || reply FROM wxpay_handle_test_v3('77777777', '{"Wechatpay-Serial": "S1"}', 'b')}),
	'500 {"code": "FAIL", "message": "失败"}', 'an unknown merchant gets the v3 FAIL reply');
is($px->(q{SELECT handler || ' ' || mch_id || ' ' || arguments::text FROM wxpay_proxy.notifications}),
	'public.wxpay_handle_test_v3(text, jsonb, text) 77777777 ["77777777", {"Wechatpay-Serial": "S1"}, "b"]',
	'and is recorded with its arguments');
$px->('TRUNCATE wxpay_proxy.notifications');
# One that differs between shards is refused; so is one nobody can route.
$shards[2]->safe_psql('postgres', q{CREATE FUNCTION public.wxpay_odd(mch_id text) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
	ALTER EXTENSION wxpay ADD FUNCTION public.wxpay_odd(text)});
my ($state, $err) = sql_error($proxy, 'SELECT wxpay_proxy.sync()');
is($state, '55000', 'sync() refuses shards with different functions') or diag($err);
is($px->("SELECT problem FROM wxpay_proxy.drift() WHERE signature = 'public.wxpay_odd(text)'"), 'missing in the proxy',
	'and drift() shows the difference');
$shards[2]->safe_psql('postgres', 'ALTER EXTENSION wxpay DROP FUNCTION public.wxpay_odd(text); DROP FUNCTION public.wxpay_odd(text)');
$on_all->(q{CREATE FUNCTION public.wxpay_odd(n integer) RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$ SELECT n $$;
	ALTER EXTENSION wxpay ADD FUNCTION public.wxpay_odd(integer)});
($state, $err) = sql_error($proxy, 'SELECT wxpay_proxy.sync()');
is($state, '0A000', 'sync() refuses a function it does not know how to route') or diag($err);
like($err, qr/does not know how to route public\.wxpay_odd/, 'and names it');
$on_all->('ALTER EXTENSION wxpay DROP FUNCTION public.wxpay_odd(integer); DROP FUNCTION public.wxpay_odd(integer);'
	  . 'ALTER EXTENSION wxpay DROP FUNCTION public.wxpay_where(text, integer); DROP FUNCTION public.wxpay_where(text, integer);'
	  . 'ALTER EXTENSION wxpay DROP FUNCTION public.wxpay_handle_test_v3(text, jsonb, text); DROP FUNCTION public.wxpay_handle_test_v3(text, jsonb, text)');
is($px->('SELECT wxpay_proxy.sync()'), $n_api, 'a function the shards dropped ...');
is($px->(q{SELECT count(*) FROM pg_proc WHERE proname IN ('wxpay_where', 'wxpay_handle_test_v3')}), '0', '... is dropped from the proxy, inner halves too');
is($px->($api), $shard_api, 'the proxy has the extension\'s functions again');

# Orders through the proxy, as the application role: each lands on its
# merchant's shard and nowhere else.
my @mchs = sort keys %$placed;
for my $mch (@mchs)
{
	like($shop->("SELECT wxpay_unifiedorder('$mch', 'o-$mch', 100, 'Sharded', '203.0.113.7') ->> 'prepay_id'"),
		qr/^wx/, "a unified order of $mch through the proxy");
}
for my $i (0 .. $#shards)
{
	my @mine = grep { $placed->{$_} == $i } @mchs;
	is($shards[$i]->safe_psql('postgres', 'SELECT string_agg(mch_id, \' \' ORDER BY mch_id) FROM wxpay.orders'),
		join(' ', @mine), "shard $i has the orders of its merchants only");
}
my $m0 = $mchs[0];
$shop->("BEGIN; SELECT wxpay_unifiedorder('$m0', 'rolled-back', 100, 'Rolled back', '203.0.113.7'); ROLLBACK;");
is(wx_shard_of($layout, $m0)->safe_psql('postgres', "SELECT state FROM wxpay.orders WHERE out_trade_no = 'rolled-back'"),
	'NOTPAY', 'a proxied call commits on its shard whatever the caller\'s transaction does (PL/Proxy runs in autocommit)');
my $prepay = $shards[ $placed->{$m0} ]->safe_psql('postgres', "SELECT prepay_id FROM wxpay.orders WHERE out_trade_no = 'o-$m0'");
is($shop->("SELECT wxpay_app_params('$m0', '$prepay') ->> 'prepayid'"), $prepay, 'client parameters come from the shard');
is($shop->("SELECT wxpay_orderquery('$m0', 'o-$m0') ->> 'trade_state'"), 'NOTPAY', 'an order query');
($state) = sql_error($proxy, "SELECT wxpay_unifiedorder('99999999', 'x', 1, 'x', '203.0.113.7')", user => 'shop');
is($state, '22023', 'an unknown merchant is refused in the proxy');
($state, $err) = sql_error($proxy, "SELECT wxpay_unifiedorder('$m0', 'bad no!', 1, 'x', '203.0.113.7')", user => 'shop');
is($state, '22023', 'the shard\'s own errors come back with their SQLSTATE') or diag($err);
my $m1 = $mchs[1];
$shop->("SELECT wxpay_unifiedorder('$m1', 'close-$m1', 100, 'Closed', '203.0.113.7')");
is($shop->("SELECT wxpay_closeorder('$m1', 'close-$m1') ->> 'result_code'"), 'SUCCESS', 'a close');
is(wx_shard_of($layout, $m1)->safe_psql('postgres', "SELECT state FROM wxpay.orders WHERE out_trade_no = 'close-$m1'"),
	'CLOSED', 'closed on its shard');

# Notifications: routed by the mch_id in the body.
is($shop->("SELECT count(*) FROM wxpay_paid_events_next('shop')"), '0', 'a consumer starts on every shard');
for my $mch (@mchs)
{
	my $body = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => "o-$mch", notify => JSON::PP::false })->{notification};
	like($shop->("SELECT wxpay_handle_notify(\$b\$$body\$b\$)"), qr/SUCCESS/, "$mch\'s notification is accepted through the proxy");
	like($shop->("SELECT wxpay_handle_notify(\$b\$$body\$b\$)"), qr/SUCCESS/, 'and its repeat');
}
for my $i (0 .. $#shards)
{
	is($shards[$i]->safe_psql('postgres', q{SELECT string_agg(outcome, ',' ORDER BY id) FROM wxpay.notifications}),
		join(',', map { 'accepted,duplicate' } grep { $placed->{$_} == $i } @mchs), "shard $i recorded its merchants' notifications");
}
ok($shards[0]->poll_query_until('postgres', 'SELECT count(*) = 2 FROM wxpay.paid_events'), 'shard 0 published its payments');
$_->poll_query_until('postgres', 'SELECT count(*) = 2 FROM wxpay.paid_events') for @shards[1, 2];
is($shop->(q{SELECT string_agg(mch_id, ' ' ORDER BY mch_id) FROM wxpay_paid_events_next('shop')}), join(' ', @mchs),
	'the paid-event reader returns the payments of every shard');
is($shop->("SELECT count(*) FROM wxpay_paid_events_next('shop')"), '0', 'once');
$shop->("SELECT wxpay_paid_events_seek('shop', 0)");
is($shop->("SELECT count(*) FROM wxpay_paid_events_next('shop')"), scalar(@mchs), 'seek(0) replays every shard');

# What no shard takes is recorded in the proxy and answered FAIL.
my $fail = qr/^<xml><return_code><!\[CDATA\[FAIL\]\]><\/return_code>/;
my $unknown = sim_call($sim, 'POST', '/_sim/notification', { mch_id => $m0, out_trade_no => "o-$m0" })->{body};
$unknown =~ s/$m0/88888888/g;
my %bodies = (unknown => $unknown, garbage => 'not xml at all', doctype => '<!DOCTYPE x [<!ENTITY e "10000100">]><xml><mch_id>&e;</mch_id></xml>',
	two => "<xml><mch_id>$m0</mch_id><mch_id>$m1</mch_id></xml>", empty => '');
for my $what (sort keys %bodies)
{
	like($shop->("SELECT wxpay_handle_notify(\$b\$$bodies{$what}\$b\$)"), $fail, "a body ($what) is answered FAIL");
}
like($shop->("SELECT wxpay_handle_refund_notify('<xml>')"), $fail, 'so is a refund notification no shard takes');
is($px->(q{SELECT string_agg(coalesce(mch_id, '-') || ':' || sqlstate, ' ' ORDER BY id) FROM wxpay_proxy.notifications}),
	'-:22023 -:22023 -:22023 -:22023 88888888:22023 -:22023', 'each is recorded in the proxy, with why');
is($px->(q{SELECT count(*) FROM wxpay_proxy.notifications WHERE arguments ->> 0 = '' OR arguments ->> 0 LIKE '%88888888%'}), '2',
	'with the body as received');
my ($t) = sql_error($proxy, 'SELECT * FROM wxpay_proxy.notifications', user => 'shop');
is($t, '42501', 'the application role cannot read them');
is($px->('SELECT wxpay_proxy.body_mch_id(body) FROM (VALUES (NULL), (repeat(\'x\', 1048577) || \'<mch_id>1</mch_id>\')) b(body)'),
	"\n", 'body_mch_id: NULL and oversized bodies name nobody');
is($px->(q{SELECT wxpay_proxy.body_mch_id('<xml><sub_mch_id>2</sub_mch_id><mch_id> <![CDATA[1900000109]]> </mch_id></xml>')}),
	'1900000109', 'body_mch_id reads a CDATA value and ignores sub_mch_id');

# The DBA's questions across shards.
is($px->("SELECT string_agg(shard || ':' || out_trade_no || ':' || state, ' ') FROM wxpay_proxy.merchant_orders('$m1')"),
	"$placed->{$m1}:o-$m1:SUCCESS $placed->{$m1}:close-$m1:CLOSED", "a merchant's orders, with their shard");
is($px->(q{SELECT string_agg(mch_id || ':' || shard || ':' || orders || ':' || total_fee, ' ' ORDER BY mch_id) FROM wxpay_proxy.paid_totals()}),
	join(' ', map { "$_:$placed->{$_}:1:100" } @mchs), "today's paid totals per merchant, from every shard");
# A day's bill for one merchant, imported through the proxy (the generated
# wxpay_bill_import routes to its shard), with a payment nobody here knows.
my $bill = q{convert_to(U&'\FEFF' || '交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注'
	|| E'\r\n' || '`2026-01-05 10:00:00,`wx1,`MCH,`0,`,`T-ghost,`ghost,`oU,`APP,`SUCCESS,`CMC,`CNY,`1.00,`0.00,`0,`0,`0.00,`0.00,`,`,`商品,`,`0.00600,`0.60%,`1.00,`0.00,`'
	|| E'\r\n' || '总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额'
	|| E'\r\n' || '`1.0,`1.00,`0.00,`0.0,`0.00600,`1.00,`0.00' || E'\r\n', 'UTF8')};
$bill =~ s/MCH/$m1/;
is($px->("SELECT wxpay_bill_import('$m1', '2026-01-05', 'ALL', $bill) ->> 'outcome'"), 'imported',
	'a bill imported through the proxy');
is($px->(q{SELECT string_agg(mch_id || ':' || shard || ':' || bill_type || ':' || kind || ':' || coalesce(out_trade_no, '-'), ' ') FROM wxpay_proxy.bill_discrepancies('2026-01-05')}),
	"$m1:$placed->{$m1}:ALL:payment_totals_differ:- $m1:$placed->{$m1}:ALL:payment_unknown_here:ghost",
	"the day's bill discrepancies, from every shard, with their shard and bill type");
is($px->(q{SELECT count(*) FROM wxpay_proxy.bill_discrepancies('2026-01-06')}), '0', 'and none on a day without a bill');

# A dump of the proxy database restores as it is: the directory, the
# cluster, the generated functions, the kept notifications.
$proxy->safe_psql('postgres', 'CREATE DATABASE proxy_copy');
my $dump = "$PostgreSQL::Test::Utils::tmp_check/proxy.sql";
$proxy->command_ok([ 'pg_dump', '-d', $proxy->connstr('postgres'), '-f', $dump ], 'pg_dump of the proxy database');
$proxy->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $proxy->connstr('proxy_copy'), '-f', $dump ],
	'restored into another database');
is($proxy->safe_psql('proxy_copy', "SELECT wxpay_orderquery('$m0', 'o-$m0') ->> 'trade_state'"), 'SUCCESS',
	'which routes as the original');
is($proxy->safe_psql('proxy_copy', 'SELECT count(*) FROM wxpay_proxy.drift()'), '0', 'with the same functions');
is($proxy->safe_psql('proxy_copy', 'SELECT count(*) FROM wxpay_proxy.notifications'), '6', 'and the six kept notifications');
is($proxy->safe_psql('proxy_copy', "SELECT wxpay_handle_notify('x') LIKE '%FAIL%'; SELECT max(id) > 6 FROM wxpay_proxy.notifications"),
	"t\nt", 'whose ids go on after the restored ones');

$_->stop for @shards, $proxy;
done_testing();
