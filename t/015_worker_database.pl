# The worker's database does not exist yet: the worker says so once and
# waits quietly (no restart every second), then connects once the database
# is created.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker_db');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'wxpay'\nwxpay.database = 'later'\n");
$node->start;

ok($node->wait_for_log(qr/wxpay worker waits: database "later" does not exist/),
	'the worker says it waits for its database');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"
	. " AND query = 'wxpay: waiting for database \"later\"'"),
	'pg_stat_activity shows it waiting');
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
# The same process all along, not one a second: poll until the worker has
# been running for 4 s, or has been replaced.
ok($node->poll_query_until('postgres',
	"SELECT pid <> $pid OR now() - backend_start >= interval '4 s' FROM pg_stat_activity"
	. " WHERE backend_type = 'wxpay worker'"),
	'the worker lives 4 s or is replaced');
is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"), $pid,
	'and stays the same process (no restart every second)');
my $log = slurp_file($node->logfile);
my $fatal = () = $log =~ /FATAL:  database "later" does not exist/g;
my $waits = () = $log =~ /wxpay worker waits: database "later"/g;
cmp_ok($fatal, '<=', 1, "one FATAL at most (the first attempt), got $fatal");
is($waits, 1, 'and it said it waits once');

$node->safe_psql('postgres', 'CREATE DATABASE later');
$node->safe_psql('later', 'CREATE EXTENSION wxpay');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND datname = 'later'"),
	'once the database exists the worker connects to it');
ok($node->poll_query_until('later', 'SELECT running FROM wxpay.worker'), 'and wxpay.worker there shows it running');

$node->stop;
done_testing();
