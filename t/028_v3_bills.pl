# API v3 bills through the same SQL functions and tables as v2's
# (wxpay-v3-api.md §9.6): a day of v3 orders at the simulator (paid and
# notified, paid with the notification lost and the order closed here,
# refunded, paid with another amount at WeChat Pay), yesterday's trade bill
# asked of /v3/bill/tradebill and downloaded from its download_url as text
# and as gzip (one version: the same file, its SHA-1 the hash_value), the
# fund-flow bill, the planted discrepancies and no other; STATEMENT_CREATING
# is Bill Creating, NO_STATEMENT_EXIST No Bill Exist; a file whose SHA-1 is
# not the hash_value is refused and nothing stored, as is one whose summary
# does not add up; a probe-signed answer or a download_url on another host
# is not fetched.  Then the worker fetches a v3 merchant's
# bill of yesterday through the same faults, and backfills.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--refund-delay-ms', '600000');
# The worker must not query the orders itself before the test asks.
my $node = wx_node('v3bills', 'wxpay.poll_interval' => '1h');
my $mch = '1900000801';
wx_merchant_v3($node, $sim, mch_id => $mch, key_mode => 'public_key');
my $sql = sub { $node->safe_psql('postgres', shift) };
# The day is yesterday in Beijing time: a day's bill is complete only once
# the day is over.
my $yesterday = $sql->("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date - 1");
(my $compact_yesterday = $yesterday) =~ s/-//g;
my $downloads = sub { sim_call($sim, 'GET', '/_sim/stats')->{requests}{'/v3/billdownload/file'} // 0 };
my $v3_fault = sub { sim_call($sim, 'POST', '/_sim/v3/faults', {@_}) };

# A v3 order here, paid at the simulator at noon yesterday; its
# notification applied unless lost.
my $order = sub {
	my ($m, $no, %o) = @_;
	$sql->("SELECT wxpay_unifiedorder('$m', '$no', 100, 'v3 bill', '203.0.113.7', 'NATIVE', '{}')");
	my $paid = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $m, out_trade_no => $no, notify => JSON::PP::false,
		time_end => "${compact_yesterday}120000" });
	is($sql->('SELECT status FROM ' . wx_notify_v3_call($m, $paid->{headers}, $paid->{notification})), 204,
		"$no: its notification is applied") unless $o{lost};
};

$order->($mch, 'v3b-notified');
$order->($mch, 'v3b-lost', lost => 1);
$sql->("UPDATE wxpay.orders SET state = 'CLOSED' WHERE out_trade_no = 'v3b-lost'");
$order->($mch, 'v3b-refunded');
$sql->("SELECT wxpay_refund('$mch', 'v3b-refunded', 'v3b-refunded-r', 100)");
# Accepted (and recorded here) a day ago: on yesterday's bill.
sim_call($sim, 'POST', '/_sim/backdate', { mch_id => $mch, out_refund_no => 'v3b-refunded-r', seconds => 86400 });
$sql->("UPDATE wxpay.refunds SET created_at = created_at - interval '1 day' WHERE out_refund_no = 'v3b-refunded-r'");
$order->($mch, 'v3b-amount');
sim_call($sim, 'POST', '/_sim/bill_tamper', { mch_id => $mch, no => 'v3b-amount', fee => 99 });

# The day's trade bill as text, then as gzip: the same file, one version.
my $before = $downloads->();
my $text = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday', 'ALL', false)"));
is_deeply([ @$text{qw(outcome rows)} ], [ 'imported', 5 ], 'the v3 text bill: four payments and a refund');
my $gz = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday', 'ALL', true)"));
is_deeply([ @$gz{qw(outcome bill_id sha1)} ], [ 'unchanged', $text->{bill_id}, $text->{sha1} ],
	'the gzip bill inflates to the same file: nothing new');
is($downloads->() - $before, 2, 'each came from its download_url');
is_deeply([ sort keys %$text ], [qw(bill_id byte_size discrepancies outcome rows sha1 version)],
	"the result of v2's wxpay_downloadbill");
$sql->('CREATE EXTENSION pgcrypto');
is($sql->("SELECT encode(digest(convert_to(wxpay.bill_text(b), 'UTF8'), 'sha1'), 'hex') = '$text->{sha1}'"
	  . " AND left(wxpay.bill_text(b), 1) = U&'\\FEFF' FROM wxpay.bills b WHERE bill_id = $text->{bill_id}"),
	't', 'stored whole as served, under its SHA-1');
is($sql->("SELECT string_agg(out_trade_no || ':' || kind || ':' || CASE kind WHEN 'payment' THEN total_fee ELSE refund_fee END, ',' ORDER BY out_trade_no, kind)"
	  . " FROM wxpay.bill_rows WHERE bill_id = $text->{bill_id}"),
	'v3b-amount:payment:99,v3b-lost:payment:100,v3b-notified:payment:100,v3b-refunded:payment:100,v3b-refunded:refund:100',
	'its rows, typed, in wxpay.bill_rows');

my $discrepancies = sub {
	my ($m, $day) = @_;
	$sql->("SELECT coalesce(string_agg(k, ',' ORDER BY k), '') FROM (SELECT kind || ':' || coalesce(out_refund_no, out_trade_no, '') AS k"
		  . " FROM wxpay.bill_discrepancies WHERE mch_id = '$m' AND bill_date = '$day'"
		  . " AND bill_id IN (SELECT bill_id FROM wxpay.current_bills WHERE bill_type = 'ALL')) d");
};
# The payments' total differs (v3b-lost is paid there only, v3b-amount
# differs); the refund is on both sides with the same amount.
is($discrepancies->($mch, $yesterday), 'amount_differs:v3b-amount,paid_not_success_here:v3b-lost,payment_totals_differ:',
	'every planted discrepancy, and no other');
is($text->{discrepancies}, 3, 'counted at import');
is(decode_json($sql->("SELECT wxpay_bill_summary('$mch', '$yesterday')"))->{discrepancies}, 3, 'and in the summary');
like($sql->("SELECT action FROM wxpay_bill_recheck('$mch', '$yesterday') WHERE out_trade_no = 'v3b-lost'"),
	qr/verified by orderquery, not applicable here/, 'the lost payment is verified by a (v3) query, not taken from the bill');

# Other bill types and the fund flow, through the same functions.
is(decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday', 'SUCCESS')"))->{rows}, 4, 'bill_type SUCCESS: the payments');
my $fund = decode_json($sql->("SELECT wxpay_downloadfundflow('$mch', '$yesterday', 'Basic')"));
is($fund->{outcome}, 'imported', 'the fund-flow bill (account_type BASIC)');
is($sql->("SELECT count(*) FILTER (WHERE kind = 'income') || '/' || count(*) FILTER (WHERE kind = 'expense')"
	  . " FROM wxpay.fund_flow_rows WHERE bill_id = $fund->{bill_id}"), '4/1', 'its income and expense rows');
is(decode_json($sql->("SELECT wxpay_downloadfundflow('$mch', '$yesterday', 'Fees', false)"))->{outcome}, 'no_bill',
	'NO_STATEMENT_EXIST for an empty account is no bill');

# A day without trades; a bill being made.
my $none = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday'::date - 20)"));
is($none->{outcome}, 'no_bill', 'NO_STATEMENT_EXIST is No Bill Exist');
is($sql->("SELECT no_bill FROM wxpay.bills WHERE bill_id = $none->{bill_id}"), 't', 'recorded as a day without a bill');
$v3_fault->(mode => 'bill_creating', path => '/v3/bill/tradebill');
my ($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$yesterday')");
is($state, 'WX001', 'STATEMENT_CREATING: retry later, as Bill Creating');
like($err, qr/err_code: STATEMENT_CREATING/, "with WeChat Pay's code");

# The file received is not the one hash_value names: refused, nothing stored.
my $versions = "SELECT count(*) FROM wxpay.bills WHERE mch_id = '$mch' AND bill_date = '$yesterday'";
my $stored = $sql->($versions);
sim_call($sim, 'POST', '/_sim/bill_tamper', { mch_id => $mch, no => 'v3b-amount', fee => 100 });
$v3_fault->(mode => 'bill_corrupt', path => '/v3/billdownload/file');
($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$yesterday')");
is($state, 'WX007', 'a file whose SHA-1 is not the hash_value is untrusted');
like($err, qr/the SHA-1 of the file received is [0-9a-f]{40}, not the hash_value [0-9a-f]{40} WeChat Pay gave/,
	'and says so');
is($sql->($versions), $stored, 'nothing stored');
my $fixed = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday')"));
is($fixed->{outcome}, 'new_version', 'downloaded again, the changed bill is a new version');
$stored = $sql->($versions);
is($discrepancies->($mch, $yesterday), 'paid_not_success_here:v3b-lost,payment_totals_differ:', 'reconciled again');

# The answer naming the file is verified like every v3 answer: a probe
# signature is refused and nothing is fetched.
$before = $downloads->();
$v3_fault->(mode => 'probe', path => '/v3/bill/tradebill');
($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$yesterday')");
is($state, 'WX007', 'a tradebill answer with a probe signature is untrusted');
is($downloads->(), $before, 'and its download_url is not fetched');
# A download_url that no longer works: try again later (a new one).
$v3_fault->(mode => 'bill_expired', path => '/v3/billdownload/file');
($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$yesterday')");
is($state . ':' . $sql->($versions), "WX001:$stored", 'a download that fails is an outcome unknown, nothing stored');
like($err, qr/the download of the file \/v3\/bill\/tradebill named failed: .*HTTP status 400 \(INVALID_REQUEST: /,
	"with WeChat Pay's code");
unlike($err, qr/token=/, 'and not the token');
# A hash_value in upper-case hex names the same file.
$v3_fault->(mode => 'bill_hash_upper', path => '/v3/bill/tradebill');
is(decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday')"))->{outcome}, 'unchanged',
	'hash_value is compared without case');
# A file that does not add up is refused like a v2 one.
$v3_fault->(mode => 'bill_sum', path => '/v3/bill/tradebill');
($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$yesterday')");
is($state . ':' . $sql->($versions), "WX007:$stored", 'a v3 bill whose summary does not add up: refused, nothing stored');
like($err, qr/the summary says 手续费总金额 [0-9.]+ but the rows add up to/, 'with what does not add up');

# A download_url on another host: the Authorization is not sent there.
$before = $downloads->();
$v3_fault->(mode => 'bill_foreign_host', path => '/v3/bill/tradebill');
($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$yesterday')");
is($state, 'WX007', 'a download_url on another host is refused');
like($err, qr{named a download_url on https://bills\.elsewhere\.example, not on the merchant's api_base https://127\.0\.0\.1:},
	'naming the host, not the token');
unlike($err, qr/token=/, 'the token is not in the message');
is($downloads->(), $before, 'and nothing was fetched');

# The worker: a v3 merchant with bills enabled gets yesterday's bill,
# through STATEMENT_CREATING and a corrupted download, each attempt recorded.
my $wmch = '1900000802';
wx_merchant_v3($node, $sim, mch_id => $wmch, key_mode => 'certificate');
$order->($wmch, "w3-$_") for 1 .. 2;
$v3_fault->(mode => 'bill_creating', path => '/v3/bill/tradebill');
$v3_fault->(mode => 'bill_corrupt', path => '/v3/billdownload/file');
$sql->("ALTER SYSTEM SET wxpay.bill_fetch_after = '00:00'; ALTER SYSTEM SET wxpay.bill_retry_interval = '1s';"
	  . " ALTER SYSTEM SET wxpay.poll_interval = '200ms'; SELECT pg_reload_conf()");
$sql->("UPDATE wxpay.merchants SET bills_enabled = true WHERE mch_id = '$wmch'");
ok($node->poll_query_until('postgres', "SELECT status = 'done' FROM wxpay.bill_status WHERE mch_id = '$wmch'"),
	"the worker fetches the v3 merchant's bill");
is($sql->("SELECT attempts || '/' || (last_error IS NULL) FROM wxpay.bill_fetches WHERE mch_id = '$wmch'"), '3/true',
	'STATEMENT_CREATING, then a refused file, then the bill: three attempts');
is($sql->("SELECT bill_date || '/' || row_count || '/' || discrepancies FROM wxpay.bill_status WHERE mch_id = '$wmch'"),
	"$yesterday/2/0", "yesterday's bill, its two rows, nothing amiss");
my $log = slurp_file($node->logfile);
like($log, qr/LOG:  wxpay worker: the $yesterday bill of merchant $wmch is not in yet: .*STATEMENT_CREATING/,
	'the first attempt in the log');
like($log, qr/WARNING:  wxpay worker: the $yesterday bill of merchant $wmch cannot be fetched: .*not the hash_value/,
	'and the refused file, as a warning');
my $backfill = $sql->("SELECT string_agg(bill_date || ':' || outcome, ',' ORDER BY bill_date)"
	  . " FROM wxpay_bill_backfill('$wmch', '$yesterday'::date - 1, '$yesterday')");
is($backfill, $sql->("SELECT '$yesterday'::date - 1") . ":no_bill,$yesterday:unchanged", 'backfill of a v3 merchant');

done_testing();
