# The worker's daily bills: a merchant with bills_enabled gets yesterday's
# ALL bill fetched, Bill Creating retried after wxpay.bill_retry_interval,
# the bill reconciled and its discrepancies announced and shown in
# wxpay.bill_status; a merchant without bills is left alone; the backfill
# function fetches a range of days, and refuses one WeChat Pay no longer has.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim();
my $node = wx_node('bill_worker', 'wxpay.poll_interval' => '200ms', 'wxpay.bill_fetch_after' => '00:00',
	'wxpay.bill_retry_interval' => '1s');
my $mch = '10000500';
wx_merchant($node, $sim, mch_id => $mch, appid => 'wx5000');
wx_merchant($node, $sim, mch_id => '10000600', appid => 'wx6000');
my $sql = sub { $node->safe_psql('postgres', shift) };
my $yesterday = $sql->("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date - 1");
(my $compact = $yesterday) =~ s/-//g;

# Two orders paid yesterday; one of them left out of WeChat Pay's bill.
for my $no ('w-1', 'w-2')
{
	$sql->("SELECT wxpay_unifiedorder('$mch', '$no', 100, 'Worker bill', '203.0.113.7')");
	my $paid = sim_call($sim, 'POST', '/_sim/pay',
		{ mch_id => $mch, out_trade_no => $no, notify => JSON::PP::false, time_end => "${compact}120000" });
	$sql->("SELECT wxpay_handle_notify(\$b\$$paid->{notification}\$b\$)");
}
sim_call($sim, 'POST', '/_sim/bill_tamper', { mch_id => $mch, no => 'w-2', omit => JSON::PP::true });

is($sql->("SELECT count(*) FROM wxpay.bill_status"), 0, 'no merchant has bills enabled: nothing to show');
# The bill is not ready for the first two attempts.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'bill_creating', path => '/pay/downloadbill', count => 2 });
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN wxpay_bill_discrepancy');
$sql->("UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '$mch'");
$node->poll_query_until('postgres', "SELECT status = 'done' FROM wxpay.bill_status WHERE mch_id = '$mch'")
  or die 'the worker did not fetch the bill';
is($sql->("SELECT attempts || '/' || (last_error IS NULL) FROM wxpay.bill_fetches WHERE mch_id = '$mch'"), '3/true',
	'Bill Creating twice, then the bill: three attempts');
is($sql->("SELECT bill_date || '/' || row_count || '/' || discrepancies FROM wxpay.bill_status WHERE mch_id = '$mch'"),
	"$yesterday/1/2", "yesterday's bill, its row and its discrepancies (the order left out, and the day's total)");
is($sql->("SELECT string_agg(kind || ':' || coalesce(out_trade_no, ''), ',' ORDER BY kind) FROM wxpay.bill_discrepancies"),
	'payment_totals_differ:,success_not_in_bill:w-2', 'reconciled');
like($listener->query_safe('SELECT 1'), qr/Asynchronous notification "wxpay_bill_discrepancy" with payload "\{"mch_id": "$mch"/,
	'and announced');
is($sql->("SELECT count(*) FROM wxpay.bills WHERE mch_id = '10000600'"), 0, 'a merchant without bills_enabled is left alone');
my $log = slurp_file($node->logfile);
like($log, qr/LOG:  wxpay worker: the $yesterday bill of merchant $mch is not in yet: .*Bill Creating/, 'the retries are in the log');

# The schedule is a setting: with wxpay.bill_fetch_after later than the
# Beijing clock, yesterday's bill of a merchant just enabled is waited for,
# and fetched once the setting allows.  (Rounds are counted by orders the
# worker queries: each one it applies proves a round began after the
# change.)
my $queried = 0;
my $worker_round = sub {
	my $no = 'w-round-' . ++$queried;
	$sql->("SELECT wxpay_unifiedorder('$mch', '$no', 100, 'Worker round', '203.0.113.7')");
	sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => $no, notify => JSON::PP::false });
	$sql->("UPDATE wxpay.orders SET next_query_at = now() WHERE out_trade_no = '$no'");
	$node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = '$no'")
	  or die 'the worker did not query the order';
};
SKIP:
{
	skip 'Beijing time is too close to midnight for a later fetch time', 4
	  if $sql->("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::time >= '23:55'") eq 't';
	wx_merchant($node, $sim, mch_id => '10000700', appid => 'wx7000');
	$sql->("ALTER SYSTEM SET wxpay.bill_fetch_after = '23:59'; SELECT pg_reload_conf()");
	$worker_round->();
	$sql->("UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '10000700'");
	$worker_round->() for 1 .. 2;
	is($sql->("SELECT count(*) FROM wxpay.bill_fetches WHERE mch_id = '10000700'")
		  . $sql->("SELECT count(*) FROM wxpay.bills WHERE mch_id = '10000700'"), '00',
		'before wxpay.bill_fetch_after (Beijing time) the worker does not ask');
	is($sql->("SELECT status || '/' || to_char(next_attempt_at AT TIME ZONE 'Asia/Shanghai',"
		  . " 'YYYY-MM-DD HH24:MI') FROM wxpay.bill_status WHERE mch_id = '10000700'"),
		'waiting/' . $sql->("SELECT '$yesterday'::date + 1") . ' 23:59', 'bill_status says when it will');
	$sql->("ALTER SYSTEM SET wxpay.bill_fetch_after = '00:00'; SELECT pg_reload_conf()");
	ok($node->poll_query_until('postgres', "SELECT status = 'done' FROM wxpay.bill_status WHERE mch_id = '10000700'"),
		'once the setting allows, the bill is fetched');
	is($sql->("SELECT no_bill FROM wxpay.bills WHERE mch_id = '10000700'"), 't', 'No Bill Exist: a day without trades');
}

# Backfill: a range of days, each reported; the range is checked first.
my $backfill = $sql->("SELECT string_agg(bill_date || ':' || outcome, ',' ORDER BY bill_date)"
	  . " FROM wxpay_bill_backfill('10000600', '$yesterday'::date - 2, '$yesterday')");
is($backfill, join(',', map { $sql->("SELECT '$yesterday'::date - $_") . ':no_bill' } 2, 1, 0),
	'backfill: every day of the range, No Bill Exist for days without trades');
my ($state, $err) = sql_error($node, "SELECT * FROM wxpay_bill_backfill('$mch', current_date - 100, current_date - 1)");
is($state, '22023', 'backfill refuses days older than three months');
($state) = sql_error($node, "SELECT * FROM wxpay_bill_backfill('$mch', '$yesterday', '$yesterday'::date - 1)");
is($state, '22023', 'and a range that ends before it starts');

# downloadfundflow takes HMAC-SHA256 only: this merchant signs its other
# calls with MD5, and its fund-flow request is signed with HMAC-SHA256 (the
# simulator refuses anything else).
is($sql->("SELECT sign_type FROM wxpay.merchants WHERE mch_id = '$mch'"), 'MD5', 'an MD5 merchant');
my $fund = decode_json($sql->("SELECT wxpay_downloadfundflow('$mch', '$yesterday', 'Basic', false)"));
is($fund->{outcome} . '/' . $fund->{rows}, 'imported/2', 'gets its fund-flow bill: the two payments of the day');
$listener->quit;

done_testing();
