# A plain pg_dump (psql) and a custom-format one (pg_restore) of a live
# database restore every row of every table into a fresh cluster, add no
# history of their own, keep the triggers as strict as before for every
# other writer, and the restored database keeps working: the worker
# resumes, new notifications are applied and new bills stored (the identity
# sequences continue).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $source = wx_node('source', 'wxpay.poll_interval' => '300ms', 'wxpay.bill_fetch_after' => '00:00');
wx_merchant($source, $sim);
my $sql = sub { $source->safe_psql('postgres', shift) };
my $order = sub { $sql->("SELECT wxpay_unifiedorder('10000100', '$_[0]', 100, 'Restore', '203.0.113.7')") };
my $notify = sub {
	my ($node, $db, $no) = @_;
	my $body = sim_call($sim, 'POST', '/_sim/notification', { mch_id => '10000100', out_trade_no => $no })->{body};
	return $node->safe_psql($db, "SELECT wxpay_handle_notify(\$b\$$body\$b\$) ~ 'SUCCESS'");
};
# Paid yesterday (Beijing time), at noon: the bills are of complete days.
my $yesterday = $sql->("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date - 1");
(my $paid_at = "${yesterday}120000") =~ s/-//g;
my $pay = sub { sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => $_[0], notify => JSON::PP::false,
	time_end => $paid_at }) };

# A live database: orders in every state the paths reach, refunds,
# notifications accepted, duplicated and rejected, the worker's schedule.
$order->($_) for qw(o-notified o-queried o-closed o-refunded o-later o-notify-later o-pending);
# o-notify-later is paid, and notified, after the restore.
$pay->($_) for qw(o-notified o-refunded o-queried);
$notify->($source, 'postgres', $_) for qw(o-notified o-notified o-refunded);
ok($source->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'o-queried'"),
	'an order paid through the worker\'s query');
sim_call($sim, 'POST', '/_sim/backdate', { mch_id => '10000100', out_trade_no => 'o-closed', seconds => 600 });
$sql->("SELECT wxpay_closeorder('10000100', 'o-closed')");
$sql->("SELECT wxpay_refund('10000100', 'o-refunded', 'r-1', 40)");
$sql->("SELECT wxpay_refund('10000100', 'o-refunded', 'r-2', 60)");
$sql->("SELECT wxpay_handle_notify('<xml><return_code>FAIL</return_code></xml>')");
ok($source->poll_query_until('postgres', "SELECT count(*) = 3 FROM wxpay.paid_events"), 'the payments are published');
$sql->("SELECT count(*) FROM wxpay_paid_events_next('fulfilment')");	# a consumer, at the newest event
# Bills: yesterday's trade bill fetched by the worker (its chunks, rows and
# attempt in bill_fetches), its SUCCESS bill and a fund-flow bill.
$sql->("UPDATE wxpay.merchants SET bills_enabled = true");
ok($source->poll_query_until('postgres', "SELECT status = 'done' FROM wxpay.bill_status"), "the worker fetches yesterday's bill");
$sql->("SELECT wxpay_downloadbill('10000100', '$yesterday', 'SUCCESS', false)");
$sql->("SELECT wxpay_downloadfundflow('10000100', '$yesterday')");
is($sql->("SELECT (SELECT count(*) FROM wxpay.bills) || '/' || (SELECT count(*) > 0 FROM wxpay.bill_rows)"
	  . " || '/' || (SELECT count(*) > 0 FROM wxpay.fund_flow_rows) || '/' || (SELECT count(*) FROM wxpay.bill_fetches)"),
	'3/true/true/1', 'bills, their rows and the worker\'s attempt are there to dump');
# Nothing is due while the dump is taken, so the tables stand still.
$sql->("UPDATE wxpay.orders SET next_query_at = now() + interval '1 hour' WHERE wxpay.order_state_pending(state)");
$sql->("UPDATE wxpay.refunds SET next_query_at = now() + interval '1 hour' WHERE wxpay.refund_state_pending(state)");

my @tables = qw(merchants orders order_events notifications refunds refund_events paid_events paid_event_consumers
  bills bill_chunks bill_rows fund_flow_rows bill_fetches);
my $contents = sub {
	my ($node, $db) = @_;
	return join "\n", map {
		"$_: " . $node->safe_psql($db, "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
			  . " FROM wxpay.$_ t")
	} @tables;
};
my $before = $contents->($source, 'postgres');
like($before, qr/order_events: (\d\d+) /, 'the source has history');
my $plain = "$PostgreSQL::Test::Utils::tmp_check/plain.sql";
my $custom = "$PostgreSQL::Test::Utils::tmp_check/custom.dump";
$source->command_ok([ 'pg_dump', '-d', $source->connstr('postgres'), '-f', $plain ], 'plain pg_dump');
$source->command_ok([ 'pg_dump', '-Fc', '-d', $source->connstr('postgres'), '-f', $custom ], 'custom-format pg_dump');
is($contents->($source, 'postgres'), $before, 'nothing changed while dumping');
my %seq = map { $_ => $sql->("SELECT max(id) FROM wxpay.$_") } qw(order_events notifications refund_events);
$seq{bills} = $sql->("SELECT max(bill_id) FROM wxpay.bills");
$source->stop;
$pay->('o-notify-later');

# A fresh cluster: the worker waits for the extension, which the plain
# dump creates in "postgres"; the custom dump goes into another database.
my $copy = PostgreSQL::Test::Cluster->new('copy');
$copy->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$copy->append_conf('postgresql.conf', "shared_preload_libraries = 'wxpay'\nwxpay.poll_interval = '300ms'\n");
$copy->start;
# Into the worker's own database in one transaction (so the worker sees
# nothing until the restore is complete), into others statement by
# statement.
$copy->command_ok([ 'psql', '-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-d', $copy->connstr('postgres'), '-f', $plain ],
	'the plain dump restores with psql -1 into the worker\'s database, without a single error');
$copy->safe_psql('postgres', 'CREATE DATABASE plain');
$copy->safe_psql('postgres', 'CREATE DATABASE custom');
$copy->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $copy->connstr('plain'), '-f', $plain ],
	'the plain dump restores with psql into another database, without a single error');
$copy->command_ok([ 'pg_restore', '--exit-on-error', '-d', $copy->connstr('custom'), $custom ],
	'the custom dump restores with pg_restore, without a single error');
is($contents->($copy, $_), $before, "every row of every table is back, no more ($_)") for qw(postgres plain custom);

for my $db (qw(postgres plain custom))
{
	my $q = sub { $copy->safe_psql($db, shift) };
	# Still strict for everybody else.
	$q->("CREATE ROLE app_$db; GRANT USAGE ON SCHEMA wxpay TO app_$db; GRANT INSERT, UPDATE, SELECT ON wxpay.orders TO app_$db");
	my ($ret, $out, $err) = $copy->psql($db, "SET ROLE app_$db; SET check_function_bodies = off;"
		  . " INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state, transaction_id, paid_at)"
		  . " VALUES ('10000100', 'forged', 'APP', 'x', 1, '1.2.3.4', 'SUCCESS', '4200000000000000000000000099', now())");
	like($err, qr/a new order must start unpaid/, "an application role still cannot create a paid order ($db)");
	($ret, $out, $err) = $copy->psql($db, "UPDATE wxpay.orders SET state = 'NOTPAY' WHERE out_trade_no = 'o-closed'");
	like($err, qr/cannot go from CLOSED to NOTPAY/, "nor can anyone reopen a closed order ($db)");
	# A notification is applied, with ids after the restored ones.
	ok($notify->($copy, $db, 'o-notify-later'), "a new notification is accepted ($db)");
	is($q->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'o-notify-later'"), 'SUCCESS', "and applied ($db)");
	is($q->("SELECT min(id) > $seq{notifications} FROM wxpay.notifications WHERE out_trade_no = 'o-notify-later'"), 't',
		"its notification id follows the restored ones ($db)");
	is($q->("SELECT min(id) > $seq{order_events} FROM wxpay.order_events WHERE out_trade_no = 'o-notify-later' AND old_state IS NOT NULL"),
		't', "and so does its event ($db)");
	is($q->("SELECT count(*) FROM (SELECT 1 FROM wxpay.order_events WHERE new_state = 'SUCCESS'"
		  . " GROUP BY out_trade_no HAVING count(*) > 1) d"), '0', "no duplicate SUCCESS transition ($db)");
	# The day's bill changed with that payment: a second version, after the restored bills.
	is($q->("SELECT x->>'outcome' || '/' || (x->>'version') || '/' || ((x->>'bill_id')::bigint > $seq{bills})"
		  . " FROM wxpay_downloadbill('10000100', '$yesterday', 'ALL', false) x"), 'new_version/2/true',
		"the day's bill downloaded again is a new version with an id after the restored ones ($db)");
	is($q->("SELECT count(*) FROM wxpay.bill_discrepancies WHERE bill_date = '$yesterday'"), '0',
		"and reconciles against the restored orders ($db)");
}

# The worker resumes in the restored "postgres": a payment whose
# notification was lost is found by its query.
$pay->('o-later');
$copy->safe_psql('postgres', "UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no = 'o-later'");
ok($copy->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'o-later'"),
	'the worker resumes on the restored database and reconciles a lost payment');
is($copy->safe_psql('postgres', "SELECT source FROM wxpay.order_events WHERE out_trade_no = 'o-later' AND new_state = 'SUCCESS'"),
	'query', 'through its query');
ok($copy->poll_query_until('postgres', "SELECT count(*) = 5 FROM wxpay.paid_events"),
	'the worker publishes the payments made after the restore');
is($copy->safe_psql('postgres', "SELECT string_agg(out_trade_no, ',' ORDER BY seq) FROM wxpay_paid_events_next('fulfilment')"),
	'o-notify-later,o-later', 'and the restored consumer goes on from where it was, with exactly those');
wx_audit($copy, $sim, '10000100', 'restored');

done_testing();
