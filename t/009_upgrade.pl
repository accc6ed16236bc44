# Versioned schema: 1.0, filled with a row in every table and orders and
# refunds in every state, updated with ALTER EXTENSION wxpay UPDATE, keeps
# every row, and ends up with exactly the schema of a fresh install of the
# newest version (compared as pg_dump --binary-upgrade writes it, which
# lists every member object of the extension).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
# The worker runs in "postgres"; the rows under test are in other databases.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'wxpay'\nwxpay.poll_interval = '200ms'\n");
$node->start;

my ($newest) = slurp_file("$FindBin::RealBin/../wxpay.control") =~ /^default_version = '([^']+)'/m;
my $sql = sub { $node->safe_psql(shift, shift) };
$sql->('postgres', $_) for ('CREATE DATABASE updated', 'CREATE DATABASE fresh');

$sql->('updated', "CREATE EXTENSION wxpay VERSION '1.0'");
is($sql->('updated', "SELECT extversion FROM pg_extension WHERE extname = 'wxpay'"), '1.0', 'installed 1.0');

# Every table, every state, through the paths a 1.0 installation had.
$sql->('updated', <<'SQL');
INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, allowed_roles)
VALUES ('10000100', 'wxd930ea5d5a258f4f', '192006250b4c09247ec02edce69f6a2d', 'https://shop.example.com/n', '{postgres}');
CREATE ROLE shop_gone;
INSERT INTO wxpay.merchants (mch_id, appid, api_key, allowed_roles)
VALUES ('10000200', 'wx2', '192006250b4c09247ec02edce69f6a2d', '{shop_gone,postgres}');
DROP ROLE shop_gone;
INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, time_expire)
SELECT '10000100', s, 'APP', 'Goods ' || s, 100, '203.0.113.7', now() + interval '1 hour'
  FROM unnest('{o-notpay,o-userpaying,o-payerror,o-success,o-refund,o-closed,o-revoked}'::text[]) s;
UPDATE wxpay.orders SET state = 'USERPAYING' WHERE out_trade_no = 'o-userpaying';
UPDATE wxpay.orders SET state = 'PAYERROR' WHERE out_trade_no = 'o-payerror';
UPDATE wxpay.orders SET state = 'CLOSED' WHERE out_trade_no = 'o-closed';
UPDATE wxpay.orders SET state = 'REVOKED' WHERE out_trade_no = 'o-revoked';
UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = '42000' || length(out_trade_no) || ascii(substr(out_trade_no, 3)),
	paid_at = now(), payer = '{"openid": "o1"}' WHERE out_trade_no IN ('o-success', 'o-refund');
INSERT INTO wxpay.refunds (mch_id, out_refund_no, out_trade_no, refund_fee, total_fee)
SELECT '10000100', 'r-' || s, 'o-refund', 10, 100 FROM unnest('{processing,change,success,closed}'::text[]) s;
UPDATE wxpay.refunds SET state = 'CHANGE' WHERE out_refund_no = 'r-change';
UPDATE wxpay.refunds SET state = 'SUCCESS', refund_id = '5000' WHERE out_refund_no = 'r-success';
UPDATE wxpay.refunds SET state = 'REFUNDCLOSE' WHERE out_refund_no = 'r-closed';
UPDATE wxpay.orders SET state = 'REFUND' WHERE out_trade_no = 'o-refund';
SQL
$sql->('updated', "SELECT wxpay_handle_notify('<xml><return_code>FAIL</return_code></xml>')");
$sql->('updated', "SELECT wxpay_handle_refund_notify('not xml')");
is($sql->('updated', "SELECT count(*) FROM wxpay.notifications"), '2',
	'a newer library keeps recording notifications in a 1.0 schema (before ALTER EXTENSION UPDATE)');
# A signed report of the paid o-success with another amount: 1.0 has no
# 'anomaly' outcome nor wxpay.payment_anomalies; still SUCCESS, recorded as a
# duplicate whose reason says it.
is($sql->('updated', q{SELECT wxpay_from_xml(wxpay_handle_notify(wxpay_to_xml(f || jsonb_build_object('sign',
	wxpay_sign(f, '192006250b4c09247ec02edce69f6a2d'))))) ->> 'return_code'
	FROM (SELECT jsonb_build_object('return_code', 'SUCCESS', 'appid', 'wxd930ea5d5a258f4f', 'mch_id', '10000100',
	'nonce_str', 'n1', 'result_code', 'SUCCESS', 'trade_type', 'APP', 'total_fee', '1', 'transaction_id', '420009115',
	'out_trade_no', 'o-success', 'time_end', '20261126153045') f) s}), 'SUCCESS',
	'a 1.0 schema: a paid order reported with another amount is answered SUCCESS');
like($sql->('updated', "SELECT outcome || '|' || reason FROM wxpay.notifications ORDER BY id DESC LIMIT 1"),
	qr/^duplicate\|the order is paid with 100 fen; WeChat Pay reports 1 fen/, 'and recorded as a duplicate saying so');

my @tables = qw(merchants orders order_events notifications refunds refund_events);
# Each table's 1.0 columns: an update may add columns, never change rows.
my %columns = map {
	$_ => $sql->('updated', "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute"
		  . " WHERE attrelid = 'wxpay.$_'::regclass AND attnum > 0 AND NOT attisdropped")
} @tables;
my $contents = sub {
	my ($db) = @_;
	return join "\n", map {
		"$_: " . $sql->($db, "SELECT count(*) || ' ' || md5(string_agg(r::text, '|' ORDER BY r::text))"
			  . " FROM (SELECT ROW($columns{$_}) r FROM wxpay.$_) t")
	} @tables;
};
my $before = $contents->('updated');
unlike($before, qr/: 0 /, 'every table has rows before the update');

my ($ret, $out, $err) = $node->psql('updated', 'ALTER EXTENSION wxpay UPDATE');
is($ret, 0, 'ALTER EXTENSION wxpay UPDATE succeeds') or diag($err);
is($sql->('updated', "SELECT extversion FROM pg_extension WHERE extname = 'wxpay'"), $newest, "now at $newest");
is($contents->('updated'), $before, 'every row of every table is intact');
is($sql->('updated', "SELECT string_agg(mch_id || ' ' || allowed_role_oids::regrole[]::text, ', ' ORDER BY mch_id) FROM wxpay.merchants"),
	'10000100 {postgres}, 10000200 {postgres}', 'allowed_roles is resolved to OIDs, a dropped role\'s name to nothing');
is($sql->('updated', "SELECT count(*) FROM wxpay.paid_events p JOIN wxpay.order_events e ON e.id = p.event_id AND e.new_state = 'SUCCESS'")
	  . ' ' . $sql->('updated', "SELECT count(*) FROM wxpay.order_events WHERE new_state = 'SUCCESS'"), '2 2',
	'payments made under 1.0 are published as history');
is($sql->('updated', "SELECT count(*) FROM wxpay.worker_status"), '3',
	'PAYERROR orders are pending after the update (NOTPAY, USERPAYING, PAYERROR)');
is($sql->('updated', "SELECT string_agg(out_refund_no, ',' ORDER BY out_refund_no) FROM wxpay.refunds WHERE wxpay.refund_state_pending(state)"),
	'r-change,r-processing', 'CHANGE and PROCESSING refunds are pending');

# The updated schema is exactly a fresh install's.
$sql->('fresh', 'CREATE EXTENSION wxpay');
my $schema = sub {
	my ($db) = @_;
	my ($out, $err);
	IPC::Run::run([ $node->installed_command('pg_dump'), '--schema-only', '--binary-upgrade', '--no-comments',
			'-d', $node->connstr($db) ], '>', \$out, '2>', \$err)
	  or die "pg_dump failed: $err";
	# Object identities, transaction ids and pg_dump's session token differ
	# between the two databases; everything else must not.
	$out =~ s/^SELECT pg_catalog\.binary_upgrade_set_next_.*\n//mg;
	$out =~ s/^-- Dumped .*\n//mg;
	$out =~ s/^\\(un)?restrict .*\n//mg;
	$out =~ s/(relfrozenxid|relminmxid) = '\d+'/$1 = 'X'/g;
	$out =~ s/\b\d{5,}\b/OID/g;
	$out =~ s/^SELECT pg_catalog\.setval\(.*\n//mg;	# data: the updated database has rows
	$out =~ s/\b$db\b/DB/g;
	return $out;
};
my ($u, $f) = ($schema->('updated'), $schema->('fresh'));
like($f, qr/CREATE FUNCTION wxpay\.order_state_pending/, 'the dump lists the extension\'s member objects');
is($u, $f, 'pg_dump --schema-only of the updated database equals a fresh install');

# Comments are compared too, separately (pg_dump keeps them apart).
my $comments = sub {
	$sql->(shift, q{SELECT string_agg(o || ': ' || description, E'\n' ORDER BY o)
		FROM (SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid) o, d.description
		        FROM pg_description d JOIN pg_depend e ON e.classid = d.classoid AND e.objid = d.objoid
		       WHERE e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e') c});
};
is($comments->('updated'), $comments->('fresh'), 'and so are the comments on its objects');

# A library newer than the installed schema waits for the update, quietly.
$node->safe_psql('postgres', "CREATE EXTENSION wxpay VERSION '1.0'");
ok($node->wait_for_log(qr/wxpay worker waits: the installed extension is version 1\.0, this library is \Q$newest\E/),
	'the worker waits for ALTER EXTENSION UPDATE, and says so');
$node->safe_psql('postgres', 'ALTER EXTENSION wxpay UPDATE');
$node->safe_psql('postgres', "INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base)"
	. " VALUES ('m9', 'wx9', '192006250b4c09247ec02edce69f6a2d', 'http://127.0.0.1:9')");
$node->safe_psql('postgres', "INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, next_query_at)"
	. " VALUES ('m9', 'w-1', 'APP', 'x', 1, '1.2.3.4', now())");
ok($node->poll_query_until('postgres', "SELECT query_count > 0 FROM wxpay.orders WHERE out_trade_no = 'w-1'"),
	'and works once the schema is updated');
my $waits = () = slurp_file($node->logfile) =~ /wxpay worker waits/g;
is($waits, 1, 'it said so once');

# No constraint keeps a generated name.
is($sql->('fresh', q{SELECT string_agg(conname, ', ') FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
	WHERE n.nspname = 'wxpay' AND (conname ~ '_check$' OR conname ~ '_mch_id_.*fkey$' OR conname ~ '^[a-z_]+_check[0-9]*$')}),
	'', 'every constraint has a chosen name');

$node->stop;
done_testing();
