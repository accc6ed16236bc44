# A DBA can drop the worker's database: plain DROP DATABASE fails while the
# worker is connected (PostgreSQL waits 5 s for other sessions), so
# wxpay.worker_leave() sends the worker away first; once the time is up it
# waits quietly for the database, and connects again when it is back.  A
# worker sent away from a database that stays comes back by itself.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dropdb');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'wxpay'\nwxpay.database = 'shop'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('shop', 'CREATE EXTENSION wxpay');
my $connected = "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND datname = 'shop'";
ok($node->poll_query_until('postgres', $connected), 'the worker is connected to shop');

my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE shop');
like($err, qr/database "shop" is being accessed by other users/, 'a plain DROP DATABASE fails while it is (documented)');

# Sent away for a moment, it comes back by itself.
is($node->safe_psql('shop', "SELECT wxpay.worker_leave('1 second')"), 't', 'worker_leave returns once the worker is out');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND backend_type = 'wxpay worker'"),
	'0', 'and it is out of the database at once');
ok($node->poll_query_until('postgres', $connected), 'after the time away it is back in shop');

# Sent away, the database can be dropped.
is($node->safe_psql('shop', "SELECT wxpay.worker_leave('2 seconds')"), 't', 'sent away again');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND query LIKE 'wxpay: away from database \"shop\"%'"),
	'pg_stat_activity says it is away');
$node->safe_psql('postgres', 'DROP DATABASE shop');
pass('DROP DATABASE shop works');
ok($node->wait_for_log(qr/wxpay worker waits: database "shop" does not exist/),
	'once the time is up it waits quietly for the database');
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('shop', 'CREATE EXTENSION wxpay');
ok($node->poll_query_until('postgres', $connected), 'and connects again when it is back');

# Called back early.
is($node->safe_psql('shop', "SELECT wxpay.worker_leave('1 hour')"), 't', 'sent away for an hour');
$node->safe_psql('shop', "SELECT wxpay.worker_leave('0')");
ok($node->poll_query_until('postgres', $connected), 'called back with worker_leave(\'0\'), it is back at once');

# DROP DATABASE ... WITH (FORCE) ends the worker's connection too.
my $log_pos = -s $node->logfile;
$node->safe_psql('postgres', 'DROP DATABASE shop WITH (FORCE)');
pass('DROP DATABASE WITH (FORCE) works while the worker is connected');
ok($node->wait_for_log(qr/wxpay worker waits: database "shop" does not exist/, $log_pos),
	'and the restarted worker waits quietly for the database');

done_testing();
