# The bills' schedule ends the worker's sleep: with wxpay.poll_interval at
# its longest (1 h) and no order or refund due, Bill Creating is retried
# after wxpay.bill_retry_interval and yesterday's bill is fetched once the
# Beijing clock reaches wxpay.bill_fetch_after (each woken once by a reload,
# then by nothing but the schedule).  And two downloads of one day at once:
# the second waits for the first and finds its version, unchanged, rather
# than failing on the unique key.  A wrong API key is a WARNING, a file of
# another bill_type is refused, bill_status counts live; and a v3
# merchant's certificate refresh ends the sleep too.
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
my $node = wx_node('bill_schedule', 'wxpay.poll_interval' => '1h', 'wxpay.bill_fetch_after' => '00:00',
	'wxpay.bill_retry_interval' => '2s');
my $sql = sub { $node->safe_psql('postgres', shift) };
my $yesterday = $sql->("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date - 1");
(my $compact = $yesterday) =~ s/-//g;
wx_merchant($node, $sim, mch_id => $_, appid => "wx$_") for qw(10002700 10002701 10002702 10002703);

# A wrong API key (the simulator has another): WeChat Pay cannot verify
# the signature, and the advice is the key, not the network.
$sql->("UPDATE wxpay.merchants SET api_key = repeat('f', 32) WHERE mch_id = '10002703'");
my ($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('10002703', '$yesterday')");
is($state, 'WX007', 'a wrong API key: WX007');
like($err, qr/return_code FAIL: 签名错误.*HINT:  WeChat Pay could not verify the request's signature: check the merchant's api_key/s,
	'with a hint that names the API key');

# Retries: Bill Creating twice, then the bill; only the first attempt is
# woken by the reload.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'bill_creating', path => '/pay/downloadbill', count => 2 });
$sql->("UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '10002700'");
$sql->("SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', "SELECT status = 'done' FROM wxpay.bill_status WHERE mch_id = '10002700'"),
	'Bill Creating is retried after wxpay.bill_retry_interval, not after wxpay.poll_interval');
is($sql->("SELECT attempts FROM wxpay.bill_fetches WHERE mch_id = '10002700'"), '3', 'three attempts');
my $log = slurp_file($node->logfile);
like($log, qr/LOG:  wxpay worker: the $yesterday bill of merchant 10002700 is not in yet: .*Bill Creating/,
	'Bill Creating is logged as not in yet');
$sql->("UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '10002703'");
$sql->("SELECT pg_reload_conf()");
ok(wx_poll(sub { slurp_file($node->logfile) =~
	  /WARNING:  wxpay worker: the $yesterday bill of merchant 10002703 cannot be fetched: .*签名错误.*\n.*HINT:  .*api_key/ },
	'the wrong key logged'), 'a wrong API key is a WARNING with the hint, not "not in yet"');
unlike(slurp_file($node->logfile), qr/merchant 10002703 is not in yet/, 'and never called not in yet');
$sql->("UPDATE wxpay.merchants SET bills_enabled = false WHERE mch_id = '10002703'");

# The fetch time: the next minute of the Beijing clock.
SKIP:
{
	skip 'Beijing time is too close to midnight for a fetch time later today', 2
	  if $sql->("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::time >= '23:57'") eq 't';
	my $at = $sql->("SELECT to_char(now() AT TIME ZONE 'Asia/Shanghai' + interval '1 minute', 'HH24:MI')");
	$sql->("ALTER SYSTEM SET wxpay.bill_fetch_after = '$at'; SELECT pg_reload_conf()");
	$node->poll_query_until('postgres', "SELECT current_setting('wxpay.bill_fetch_after') = '$at'")
	  or die 'the setting was not reloaded';
	$sql->("UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '10002701'");
	$sql->("SELECT pg_reload_conf()");    # the worker's last wake before the fetch time
	ok($node->poll_query_until('postgres', "SELECT status = 'done' FROM wxpay.bill_status WHERE mch_id = '10002701'"),
		"yesterday's bill is fetched at wxpay.bill_fetch_after, not after wxpay.poll_interval");
	is($sql->("SELECT last_attempt_at >= ((now() AT TIME ZONE 'Asia/Shanghai')::date + '$at'::time) AT TIME ZONE 'Asia/Shanghai'"
		  . " FROM wxpay.bill_fetches WHERE mch_id = '10002701'"), 't', 'and not before');
}

# Two downloads of a day at once (a DBA's and a finance clerk's): the
# first holds the day until it commits; the second waits, then finds it.
my $mch = '10002702';
$sql->("SELECT wxpay_unifiedorder('$mch', 'c-1', 100, 'Concurrent bill', '203.0.113.7')");
my $paid = sim_call($sim, 'POST', '/_sim/pay',
	{ mch_id => $mch, out_trade_no => 'c-1', notify => JSON::PP::false, time_end => "${compact}120000" });
$sql->("SELECT wxpay_handle_notify(\$b\$$paid->{notification}\$b\$)");
my $first = $node->background_psql('postgres');
my $second = $node->background_psql('postgres');
$first->query_safe('BEGIN');
is($first->query_safe("SELECT wxpay_downloadbill('$mch', '$yesterday', 'ALL', false) ->> 'outcome'"), 'imported',
	'the first download imports the day');
$second->query_until(qr/sent/, "\\echo sent\nSELECT wxpay_downloadbill('$mch', '$yesterday', 'ALL', true) ->> 'outcome';\n");
ok($node->poll_query_until('postgres', "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"),
	'the second waits for the first');
$first->query_safe('COMMIT');
my ($out, $failed) = $second->query("SELECT 'after'");
is($failed . '/' . $out, "0/unchanged\nafter", 'then finds its version: unchanged, no unique violation');
is($sql->("SELECT count(*) FROM wxpay.bills WHERE mch_id = '$mch'"), '1', 'one version');
$first->quit;
$second->quit;

# wxpay.bill_status counts the day's cases as they are now: a payment of
# that day recorded here after the import (not in the bill) is counted,
# though wxpay.bills.discrepancies keeps the import's 0.
$sql->("UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '$mch'");
$sql->("SELECT wxpay_unifiedorder('$mch', 'c-2', 100, 'Concurrent bill', '203.0.113.7')");
$sql->("UPDATE wxpay.orders SET state = 'SUCCESS', transaction_id = 'T-c-2', paid_at = '$yesterday 12:00:00+08'"
	  . " WHERE out_trade_no = 'c-2'");
is($sql->("SELECT status || '/' || discrepancies FROM wxpay.bill_status WHERE mch_id = '$mch'")
	  . '/' . $sql->("SELECT discrepancies FROM wxpay.bills WHERE mch_id = '$mch'"), 'done/2/0',
	'bill_status: the live count (success_not_in_bill and payment_totals_differ), bills: the count at import');
is(decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday')"))->{discrepancies}, 2,
	'and an unchanged download says the same');

# A download is checked like an import: WeChat Pay's SUCCESS bill served
# for ALL is refused, and the day keeps its ALL bill.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'bill_wrong_type', path => '/pay/downloadbill' });
($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$yesterday', 'ALL', false)");
is($state, 'WX007', 'a downloaded file of another bill_type: WX007');
like($err, qr/the header is that of a SUCCESS bill \(20 columns, without refund columns\), not of an ALL bill/,
	'naming both types');
is($sql->("SELECT count(*) FROM wxpay.bills WHERE mch_id = '$mch'"), '1', 'nothing stored');

# The same place ends the sleep for a v3 merchant's platform certificates:
# their 24-hour refresh.  The worker looks for due downloads at most every
# 10 s: woken sooner (by a reload), it looks once that much has passed.
my $v3 = '1900002704';
wx_merchant_v3($node, $sim, mch_id => $v3, appid => 'wx2704v3');
$sql->("SELECT pg_reload_conf()");
$node->poll_query_until('postgres', "SELECT status = 'ok' FROM wxpay.cert_downloads WHERE mch_id = '$v3'")
  or die 'the certificates were not downloaded';
$sql->("UPDATE wxpay.cert_downloads SET checked_at = now() - interval '24 hours' + interval '15 seconds' WHERE mch_id = '$v3'");
$sql->("SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres',
	"SELECT checked_at > now() - interval '1 minute' FROM wxpay.cert_downloads WHERE mch_id = '$v3'"),
	'the 24-hour certificate refresh is made when due, not after wxpay.poll_interval');

done_testing();
