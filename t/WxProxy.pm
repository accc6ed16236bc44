# WxProxy: the sharded layout of pg_wxpay for the TAP tests t/050-t/054.
#
# N shard clusters (each a wx_node: wxpay preloaded, its worker, listening
# on 127.0.0.1 with password authentication), one proxy cluster with
# wxpay_proxy (no wxpay), the PL/Proxy cluster configured with user
# mappings for the superuser and an application role "shop", the proxy
# functions generated from shard 0, and merchants placed by the hash.
package WxProxy;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

our @EXPORT = qw(wx_proxy_layout wx_proxy_merchants wx_shard_of $SHOP_PASSWORD);

our $SHOP_PASSWORD = 'shop-secret-7';
my $DBA_PASSWORD = 'dba-secret-7';

# What the application role is granted, on the shards and on the proxy
# alike (the README's grants).
my $SHOP_GRANTS = <<'SQL';
GRANT EXECUTE ON FUNCTION wxpay_unifiedorder(text, text, integer, text, text, text, jsonb),
	wxpay_app_params(text, text), wxpay_jsapi_params(text, text), wxpay_jssdk_params(text, text),
	wxpay_orderquery(text, text), wxpay_closeorder(text, text),
	wxpay_refund(text, text, text, integer, jsonb), wxpay_refundquery(text, text),
	wxpay_handle_notify(text), wxpay_handle_refund_notify(text),
	wxpay_micropay(text, text, integer, text, text, text, jsonb), wxpay_reverse(text, text),
	wxpay_micropay_wait(text, text, interval),
	wxpay_paid_events_next(text, integer), wxpay_paid_events_seek(text, bigint) TO shop;
SQL

# A shard: a wx_node that also listens on loopback, where every
# connection authenticates with a password (as PL/Proxy's do).
sub shard_node
{
	my ($name, %conf) = @_;
	my $node = wx_node($name, listen_addresses => '127.0.0.1', %conf);
	$node->append_conf('pg_hba.conf', "host all all 127.0.0.1/32 scram-sha-256\n");
	$node->reload;
	$node->safe_psql('postgres', qq{
		ALTER ROLE CURRENT_USER PASSWORD '$DBA_PASSWORD';
		CREATE ROLE shop LOGIN PASSWORD '$SHOP_PASSWORD';
		$SHOP_GRANTS
		GRANT USAGE ON SCHEMA wxpay TO shop;
		GRANT SELECT ON wxpay.orders, wxpay.order_events, wxpay.refunds, wxpay.merchant_info TO shop;
	});
	return $node;
}

# The layout: { shards => [nodes], proxy => node, dsn => proxy's libpq
# string for shop }.
sub wx_proxy_layout
{
	my (%opts) = @_;
	my $n = $opts{shards} // 3;
	my @shards = map { shard_node("shard$_", %{ $opts{shard_conf} // {} }) } 0 .. $n - 1;
	my $proxy = PostgreSQL::Test::Cluster->new('proxy');
	$proxy->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
	$proxy->append_conf('postgresql.conf', "max_connections = 60\n");
	$proxy->start;
	my $user = $proxy->safe_psql('postgres', 'SELECT current_user');
	my $rows = join(', ', map { "($_, 'host=127.0.0.1 port=" . $shards[$_]->port . " dbname=postgres connect_timeout=5')" } 0 .. $n - 1);
	$proxy->safe_psql('postgres', qq{
		CREATE EXTENSION wxpay_proxy CASCADE;
		INSERT INTO wxpay_proxy.shards (shard, connstr) VALUES $rows;
		SELECT wxpay_proxy.configure();
		CREATE USER MAPPING FOR $user SERVER wxpay_shards OPTIONS (user '$user', password '$DBA_PASSWORD');
		CREATE ROLE shop LOGIN;
		GRANT USAGE ON FOREIGN SERVER wxpay_shards TO shop;
		CREATE USER MAPPING FOR shop SERVER wxpay_shards OPTIONS (user 'shop', password '$SHOP_PASSWORD');
		SELECT wxpay_proxy.configure();
		SELECT wxpay_proxy.sync();
		$SHOP_GRANTS
	});
	return { shards => \@shards, proxy => $proxy,
		dsn => 'host=' . $proxy->host . ' port=' . $proxy->port . ' dbname=postgres user=shop' };
}

# $per merchants on each shard, placed by the hash: registered in the
# proxy (which names the shard) and created on that shard and at the
# simulator.  Returns { mch_id => shard }.
sub wx_proxy_merchants
{
	my ($layout, $sim, $per, %m) = @_;
	my $n = scalar @{ $layout->{shards} };
	my %placed = map { split /\|/ } split /\n/, $layout->{proxy}->safe_psql('postgres', qq{
		SELECT m, wxpay_proxy.add_merchant(m) FROM (
			SELECT m, row_number() OVER (PARTITION BY wxpay_proxy.home_shard(m) ORDER BY m) k
			  FROM (SELECT (10000100 + i)::text m FROM generate_series(0, 200) i) c) p
		 WHERE k <= $per ORDER BY m});
	die "the hash left a shard without merchants" unless keys %placed == $n * $per;
	for my $mch (sort keys %placed)
	{
		wx_merchant($layout->{shards}[ $placed{$mch} ], $sim, mch_id => $mch, appid => "wx$mch", %m);
	}
	return \%placed;
}

# The shard node a merchant is on, according to the proxy.
sub wx_shard_of
{
	my ($layout, $mch) = @_;
	return $layout->{shards}[ $layout->{proxy}->safe_psql('postgres',
		"SELECT shard FROM wxpay_proxy.merchants WHERE mch_id = '$mch'") ];
}

1;
