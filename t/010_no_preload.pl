# Without shared_preload_libraries (managed hosts often cannot preload):
# CREATE EXTENSION works and warns that nothing reconciles in the
# background, the session survives, every function works, and
# wxpay.worker says no worker runs.  With preload it says one does.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

# One session: CREATE EXTENSION, then more work in the same session.
my ($ret, $out, $err) = $node->psql('postgres',
	"CREATE EXTENSION wxpay;\nSELECT 'still connected';\nSHOW wxpay.poll_interval;");
is($ret, 0, 'CREATE EXTENSION without preload succeeds');
like($out, qr/still connected/, 'and the session goes on (no FATAL)');
like($out, qr/30s/, 'settings other than wxpay.database are defined');
like($err, qr/WARNING:  wxpay is not in shared_preload_libraries/, 'it warns that nothing reconciles in the background');
like($err, qr/HINT:  .*shared_preload_libraries/, 'with a hint saying how to fix it');
unlike($err, qr/FATAL|ERROR/, 'and raises nothing');

is($node->safe_psql('postgres', 'SELECT preloaded, running, pid IS NULL FROM wxpay.worker'), 'f|f|t',
	'wxpay.worker: not preloaded, no worker running');

# Everything but the worker works.
wx_merchant($node, $sim);
my $prepay = $node->safe_psql('postgres',
	"SELECT wxpay_unifiedorder('10000100', 'np-1', 100, 'No preload', '203.0.113.7') ->> 'prepay_id'");
like($prepay, qr/^wx\w+$/, 'unified order works');
sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'np-1', notify => JSON::PP::false });
is($node->safe_psql('postgres', "SELECT wxpay_orderquery('10000100', 'np-1') ->> 'trade_state'"), 'SUCCESS',
	'orderquery works');
is($node->safe_psql('postgres', "SELECT state FROM wxpay.orders WHERE out_trade_no = 'np-1'"), 'SUCCESS',
	'and applies the payment');
like($node->safe_psql('postgres', "SELECT wxpay_handle_notify('garbage')"), qr/FAIL/, 'notifications are judged');

# Preloaded, the view shows the worker.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'wxpay'\n");
$node->restart;
ok($node->poll_query_until('postgres', 'SELECT preloaded AND running FROM wxpay.worker'),
	'with preload, wxpay.worker shows a running worker');
is($node->safe_psql('postgres', 'SELECT database FROM wxpay.worker'), 'postgres', 'in wxpay.database');

$node->stop;
done_testing();
