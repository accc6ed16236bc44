# A shard that is down, behind the proxy: its merchants' calls fail and
# the other shard's go on; its notifications are recorded in the proxy and
# answered FAIL (nothing raises); shard_health() says which shard is down;
# once it is back, the kept notifications are replayed and WeChat Pay's own
# repeat is a duplicate.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;
use WxProxy;

my $sim = wx_sim();
my $layout = wx_proxy_layout(shards => 2, shard_conf => { 'wxpay.poll_interval' => '1h' });
my ($proxy, @shards) = ($layout->{proxy}, @{ $layout->{shards} });
my $px = sub { $proxy->safe_psql('postgres', shift) };
my $shop = sub { $proxy->safe_psql('postgres', shift, extra_params => [ '-U', 'shop' ]) };
my $placed = wx_proxy_merchants($layout, $sim, 1);
my ($up) = grep { $placed->{$_} == 0 } keys %$placed;
my ($down) = grep { $placed->{$_} == 1 } keys %$placed;
my %body;
for my $mch ($up, $down)
{
	$shop->("SELECT wxpay_unifiedorder('$mch', 'o-1', 100, 'Down', '203.0.113.7')");
	$body{$mch} = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'o-1', notify => JSON::PP::false })->{notification};
}

$shop->("SELECT wxpay_unifiedorder('$down', 'o-2', 100, 'Unpaid', '203.0.113.7')");
$shards[1]->stop('immediate');
my ($state, $err) = sql_error($proxy, "SELECT wxpay_orderquery('$down', 'o-1')", user => 'shop');
isnt($state, 'none', "a call for a merchant of the stopped shard fails ($state)");
like($err, qr/connect|connection|server closed/i, 'with a connection error');
is($shop->("SELECT wxpay_orderquery('$up', 'o-1') ->> 'trade_state'"), 'SUCCESS', 'the other shard\'s merchant is served');
like($shop->("SELECT wxpay_handle_notify(\$b\$$body{$down}\$b\$)"), qr/^<xml><return_code><!\[CDATA\[FAIL\]\]>/,
	'a notification for the stopped shard is answered FAIL, without an error');
like($shop->("SELECT wxpay_handle_notify(\$b\$$body{$up}\$b\$)"), qr/SUCCESS/, 'the other shard takes its own');
is($px->("SELECT mch_id || ' ' || (reason ~* 'connect|server closed') FROM wxpay_proxy.notifications"), "$down true",
	'the undelivered one is recorded in the proxy, with the connection error');
is($px->(q{SELECT string_agg(shard || ':' || reachable, ' ' ORDER BY shard) FROM wxpay_proxy.shard_health()}),
	'0:true 1:false', 'shard_health() says which shard is down');
($state) = sql_error($proxy, 'SELECT * FROM wxpay_proxy.paid_totals()');
isnt($state, 'none', 'a question across shards fails while one is down');

$shards[1]->start;
ok($proxy->poll_query_until('postgres', q{SELECT bool_and(reachable) FROM wxpay_proxy.shard_health()}), 'the shard is back');
is($shop->("SELECT wxpay_orderquery('$down', 'o-2') ->> 'trade_state'"), 'NOTPAY', 'its merchant is served again');
is($px->("SELECT count(*) FROM wxpay_proxy.replay_notifications('$down') WHERE reply LIKE '%SUCCESS%'"), '1',
	'the kept notification is replayed and accepted');
like($shop->("SELECT wxpay_handle_notify(\$b\$$body{$down}\$b\$)"), qr/SUCCESS/, 'WeChat Pay\'s own repeat ...');
is($shards[1]->safe_psql('postgres', "SELECT string_agg(outcome, ',' ORDER BY id) FROM wxpay.notifications"),
	'accepted,duplicate', '... is a duplicate on the shard');
wx_audit($_, $sim, $_ == $shards[0] ? $up : $down, $_->name) for @shards;

$_->stop for @shards, $proxy;
done_testing();
