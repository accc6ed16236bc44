# The worker's life: registered from shared_preload_libraries, quiet while
# the extension is absent, prompt on SIGTERM, restarted after a crash,
# never in the way of DROP EXTENSION or DROP DATABASE.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('lifecycle');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'wxpay'\nwxpay.poll_interval = '200ms'\nrestart_after_crash = on\n");
$node->start;

my $worker_pid = sub {
	$node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'");
};

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"),
	'worker shows in pg_stat_activity as "wxpay worker"');

# Without the extension it waits quietly: no errors, no restarts.  Its
# sleep shows in pg_stat_activity once it has looked (and found nothing).
my $pid = $worker_pid->();
ok($node->poll_query_until('postgres',
	"SELECT query LIKE 'wxpay: idle, waiting for the extension%' FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"),
	'worker sleeps while the extension is not created, and says so in pg_stat_activity');
is($worker_pid->(), $pid, 'worker waits while the extension is not created');
ok(!$node->log_contains(qr/ERROR|FATAL/), 'and logs no error meanwhile');

$node->safe_psql('postgres', 'CREATE EXTENSION wxpay');
ok($node->poll_query_until('postgres',
	"SELECT query = 'wxpay: idle until the next due order' FROM pg_stat_activity WHERE backend_type = 'wxpay worker'"),
	'worker takes up the extension once it exists');
is($worker_pid->(), $pid, 'worker keeps running once the extension exists');

# A restart or a failed worker never holds up DROP EXTENSION.
my $start = time;
$node->safe_psql('postgres', 'DROP EXTENSION wxpay');
ok(time - $start < 5, 'DROP EXTENSION does not wait for the worker');
$node->safe_psql('postgres', 'CREATE EXTENSION wxpay');

# DROP DATABASE elsewhere needs every backend to absorb a barrier.
$node->safe_psql('postgres', 'CREATE DATABASE scratch');
$start = time;
$node->safe_psql('postgres', 'DROP DATABASE scratch');
ok(time - $start < 5, 'DROP DATABASE of another database is not blocked');

# SIGTERM ends it within a second; the postmaster starts a new one.
$pid = $worker_pid->();
$start = time;
kill 'TERM', $pid;
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"), 'SIGTERM stops the worker');
ok(time - $start < 2, 'within a second or so of SIGTERM');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND pid <> $pid"),
	'a terminated worker is restarted');

# SIGKILL makes the postmaster reinitialise; the worker comes back.
$pid = $worker_pid->();
kill 'KILL', $pid;
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wxpay worker' AND pid <> $pid"),
	'a killed worker comes back after crash recovery');

# SIGHUP reloads its settings.
$node->append_conf('postgresql.conf', "wxpay.max_concurrency = 4\n");
$node->reload;
ok($node->poll_query_until('postgres', "SELECT current_setting('wxpay.max_concurrency') = '4'"),
	'settings reload on SIGHUP');

$node->stop;
done_testing();
