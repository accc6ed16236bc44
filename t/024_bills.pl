# Daily bills against the simulator: a day of orders (paid by notification,
# paid with the notification lost and the order closed here, still pending
# here, refunded in full and in part, paid at 23:59:59 and 00:00:01 Beijing
# time), discrepancies planted at WeChat Pay's side, the day's bill (the
# day is yesterday in Beijing time: a day's bill is complete only once the
# day is over, so today's is refused; refunds are moved back a day, here
# and at the simulator)
# downloaded as text and as gzip (one version: the same file), a changed
# bill (a new, flagged version), a bill whose summary does not add up
# (refused, nothing stored), Bill Creating, No Bill Exist, fund flow, the
# NOTIFY, and the fix of "paid there, not here" through orderquery.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--refund-delay-ms', '600000');
# The worker must not find the pending order itself before the test asks.
my $node = wx_node('bills', 'wxpay.poll_interval' => '1h');
my $mch = '10000400';
my $m = wx_merchant($node, $sim, mch_id => $mch, appid => 'wx4000', sign_type => 'HMAC-SHA256');
my $sql = sub { $node->safe_psql('postgres', shift) };
my ($day, $before) = split /\|/, $sql->(
	"SELECT d - 1, d - 2 FROM (SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date AS d) x");
(my $compact_day = $day) =~ s/-//g;
(my $compact_before = $before) =~ s/-//g;

# An order here, paid at the simulator (at noon of the day unless told);
# the notification applied unless lost.
my $order = sub {
	my ($no, %o) = @_;
	$sql->("SELECT wxpay_unifiedorder('$mch', '$no', 100, 'Bill test', '203.0.113.7')");
	my $paid = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => $no, notify => JSON::PP::false,
		time_end => $o{time_end} // "${compact_day}120000" });
	$sql->("SELECT wxpay_handle_notify(\$b\$$paid->{notification}\$b\$)") unless $o{lost};
};
# A refund accepted (and recorded here) a day ago: on the day's bill.
my $backdate_refund = sub {
	my ($no, $here) = @_;
	sim_call($sim, 'POST', '/_sim/backdate', { mch_id => $mch, out_refund_no => $no, seconds => 86400 });
	$sql->("UPDATE wxpay.refunds SET created_at = created_at - interval '1 day' WHERE out_refund_no = '$no'") if $here;
};
my $refund = sub {
	my ($no, $refund_no, $fee) = @_;
	$sql->("SELECT wxpay_refund('$mch', '$no', '$refund_no', $fee)");
	$backdate_refund->($refund_no, 1);
};
my $tamper = sub { sim_call($sim, 'POST', '/_sim/bill_tamper', { mch_id => $mch, @_ }) };

$order->('b-notified');
$order->('b-lost', lost => 1);
$sql->("UPDATE wxpay.orders SET state = 'CLOSED' WHERE out_trade_no = 'b-lost'");
$order->('b-pending', lost => 1);
$order->('b-refunded');
$refund->('b-refunded', 'b-refunded-r', 100);
$order->('b-partial');
$refund->('b-partial', 'b-partial-r', 30);
$order->('b-late', time_end => "${compact_before}235959");
$order->('b-early', time_end => "${compact_day}000001");
is($sql->("SELECT string_agg(to_char(paid_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:MI:SS'), ',' ORDER BY out_trade_no)"
	  . " FROM wxpay.orders WHERE out_trade_no IN ('b-late', 'b-early')"),
	"$day 00:00:01,$before 23:59:59", 'the midnight orders are paid either side of Beijing midnight');

# Discrepancies planted at WeChat Pay's side: a payment of an order that
# rolled back here, a paid order and a refund left out of the bill, other
# amounts for a payment and a refund, and a refund made without us.
$node->psql('postgres', "BEGIN; SELECT wxpay_unifiedorder('$mch', 'b-unknown', 100, 'Rolled back', '203.0.113.7'); ROLLBACK;");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'b-unknown', notify => JSON::PP::false,
	time_end => "${compact_day}120000" });
$order->('b-omitted');
$tamper->(no => 'b-omitted', omit => JSON::PP::true);
$order->('b-amount');
$tamper->(no => 'b-amount', fee => 99);
$order->('b-partial2');
$refund->('b-partial2', 'b-partial2-r', 20);
$tamper->(no => 'b-partial2-r', omit => JSON::PP::true);
$tamper->(no => 'b-refunded-r', fee => 90);
# The refund nobody here asked for: a signed request over mutual TLS.
{
	my $xml = $sql->(qq{SELECT wxpay_to_xml(p || jsonb_build_object('sign', wxpay_sign(p, '$TEST_KEY', 'HMAC-SHA256')))
		FROM (SELECT jsonb_build_object('appid', 'wx4000', 'mch_id', '$mch', 'nonce_str', wxpay_nonce(), 'sign_type', 'HMAC-SHA256',
			'out_trade_no', 'b-partial', 'out_refund_no', 'b-stranger-r', 'total_fee', '100', 'refund_fee', '10') AS p) s});
	my $dir = PostgreSQL::Test::Utils::tempdir();
	open(my $fh, '>', "$dir/client.pem") or die;
	print $fh $m->{cert_pem}, $m->{key_pem};
	close $fh;
	my $out;
	IPC::Run::run([ 'curl', '-sS', '--cacert', "$sim->{dir}/ca.pem", '--cert', "$dir/client.pem",
		'--data-binary', $xml, "$sim->{base}/secapi/pay/refund" ], '>', \$out) or die 'refund at the simulator failed';
	like($out, qr/<result_code><!\[CDATA\[SUCCESS\]\]>/, 'a refund made at WeChat Pay without us');
	$backdate_refund->('b-stranger-r', 0);
}

# The day's bill as text, then as gzip: the same file, one version.
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN wxpay_bill_discrepancy');
my $text = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$day', 'ALL', false)"));
is($text->{outcome}, 'imported', 'the text bill is imported');
is($text->{rows}, 12, 'twelve rows: nine payments, three refunds');
my $gz = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$day', 'ALL', true)"));
like($text->{sha1}, qr/^[0-9a-f]{40}$/, 'the answer names the file by its SHA-1');
is_deeply([ @$gz{qw(outcome bill_id sha1)} ], [ 'unchanged', $text->{bill_id}, $text->{sha1} ],
	'the gzip bill is the same file: nothing new');
is($sql->("SELECT count(*) FROM wxpay.bills WHERE mch_id = '$mch' AND bill_date = '$day'"), 1, 'one version stored');
$sql->('CREATE EXTENSION pgcrypto');
is($sql->("SELECT encode(digest(convert_to(wxpay.bill_text(b), 'UTF8'), 'sha1'), 'hex') = '$text->{sha1}' AND sha1 = '$text->{sha1}'"
	  . " AND octet_length(convert_to(wxpay.bill_text(b), 'UTF8')) = byte_size AND left(wxpay.bill_text(b), 1) = U&'\\FEFF'"
	  . " AND wxpay.bill_text(b) LIKE E'%\\r\\n' FROM wxpay.bills b WHERE bill_id = $text->{bill_id}"),
	't', 'stored whole, BOM and CRLF as served: its SHA-1 and size are the stored ones');
is($sql->("SELECT string_agg(out_trade_no || ':' || kind, ',' ORDER BY out_trade_no, kind) FROM wxpay.bill_rows WHERE bill_id = $text->{bill_id}"
	  . " AND out_trade_no IN ('b-early', 'b-late', 'b-partial')"),
	'b-early:payment,b-partial:payment,b-partial:refund,b-partial:refund', "00:00:01 is the day's, 23:59:59 is not");
is($sql->("SELECT total_fee || '/' || service_fee || '/' || to_char(trade_time AT TIME ZONE 'Asia/Shanghai', 'HH24:MI:SS')"
	  . " FROM wxpay.bill_rows WHERE bill_id = $text->{bill_id} AND out_trade_no = 'b-early'"),
	'100/1.000/00:00:01', 'typed columns: fen, fee in fen, Beijing time');

my $expected = join(',', sort
	'amount_differs:b-amount', 'paid_not_success_here:b-lost', 'paid_not_success_here:b-pending',
	'payment_unknown_here:b-unknown', 'success_not_in_bill:b-omitted', 'refund_amount_differs:b-refunded-r',
	'refund_not_in_bill:b-partial2-r', 'refund_unknown_here:b-stranger-r', 'payment_totals_differ:', 'refund_totals_differ:');
my $discrepancies = sub {
	my ($day) = @_;
	$sql->("SELECT coalesce(string_agg(kind || ':' || coalesce(out_refund_no, out_trade_no, ''), ',' ORDER BY 1), '')"
		  . " FROM (SELECT kind, out_refund_no, out_trade_no, kind || ':' || coalesce(out_refund_no, out_trade_no, '') AS k"
		  . " FROM wxpay.bill_discrepancies WHERE mch_id = '$mch' AND bill_date = '$day' ORDER BY k) d");
};
is(join(',', sort split /,/, $discrepancies->($day)), $expected, 'every planted discrepancy, and no other');
is($sql->("SELECT bill_fee || '/' || local_fee FROM wxpay.bill_discrepancies WHERE kind = 'amount_differs'"), '99/100',
	'the amounts that differ');
is($text->{discrepancies}, 10, 'counted at import');
my $summary = decode_json($sql->("SELECT wxpay_bill_summary('$mch', '$day')"));
is_deeply([ @$summary{qw(payments refunds discrepancies)}, $summary->{by_kind}{paid_not_success_here} ], [ 9, 3, 10, 2 ],
	'the summary function');
my $heard = $listener->query_safe('SELECT 1');
like($heard, qr/Asynchronous notification "wxpay_bill_discrepancy" with payload "\{.*"discrepancies": 10\}" received/,
	'NOTIFY wxpay_bill_discrepancy');
my ($payload) = $heard =~ /with payload "(.*?)" received/;
is_deeply([ sort keys %{ decode_json($payload) } ], [qw(bill_date bill_id bill_type discrepancies mch_id)],
	'its payload names the day, not an order or an amount');

# The day before: only the order paid at 23:59:59, and nothing amiss.
my $late = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$before')"));
is($late->{rows}, 1, "the day before's bill has one row");
is($sql->("SELECT out_trade_no FROM wxpay.bill_rows WHERE bill_id = $late->{bill_id}"), 'b-late', 'the 23:59:59 payment');
is($discrepancies->($before), '', 'and no discrepancy');

# The fix goes through orderquery: the pending order is queried by the
# worker and becomes SUCCESS; the closed one is verified and left to a person.
my $recheck = $sql->("SELECT out_trade_no || ':' || local_state || ':' || action FROM wxpay_bill_recheck('$mch', '$day') ORDER BY 1");
like($recheck, qr/^b-lost:CLOSED:verified by orderquery, not applicable here \(CLOSED is final\): [^;]*refund or reconcile by hand \(on the merchant platform: wxpay_refund refuses an order not paid here\)$/m,
	'the closed order: verified paid, left to a person');
like($recheck, qr/^b-pending:NOTPAY:query scheduled/m, 'the pending order: a query scheduled');
$node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'b-pending'")
  or die 'the worker did not apply the verified payment';
is($sql->("SELECT source FROM wxpay.order_events WHERE out_trade_no = 'b-pending' AND new_state = 'SUCCESS'"), 'query',
	'paid by the verified query, not by the bill');
ok($discrepancies->($day) !~ /b-pending/, 'its discrepancy is gone');
my $published = "SELECT count(*) FROM wxpay.paid_events p JOIN wxpay.order_events e ON e.id = p.event_id WHERE e.out_trade_no = ";
ok($node->poll_query_until('postgres', "$published 'b-pending'", '1'),
	'and the payment is published as a paid event, like any other');
is($sql->("$published 'b-lost'"), 0,
	'the closed order, verified paid but not applicable, is not');

# WeChat Pay changes the day's bill: a new version, flagged.
$tamper->(no => 'b-omitted', fee => 100);
my $v2 = decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$day')"));
is_deeply([ @$v2{qw(outcome version)} ], [ 'new_version', 2 ], 'a different file is a new version');
is($sql->("SELECT changed FROM wxpay.bills WHERE bill_id = $v2->{bill_id}"), 't', 'flagged as changed');
ok($discrepancies->($day) !~ /b-omitted/, 'the current version is the one reconciled');

# A summary that does not add up: refused, nothing stored.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'bill_sum', path => '/pay/downloadbill' });
$tamper->(no => 'b-amount', fee => 100);
my ($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$day')");
is($state, 'WX007', 'a bill that does not add up is refused');
like($err, qr/the summary says 手续费总金额 [0-9.]+ but the rows add up to/, 'with what does not add up');
is($sql->("SELECT count(*) FROM wxpay.bills WHERE mch_id = '$mch' AND bill_date = '$day'"), 2, 'and nothing stored');

# Bill Creating is "try later"; a day without trades is No Bill Exist.
sim_call($sim, 'POST', '/_sim/faults', { mode => 'bill_creating', path => '/pay/downloadbill' });
($state, $err) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$day')");
is($state, 'WX001', 'Bill Creating: retry later');
my $none = decode_json($sql->("SELECT wxpay_downloadbill('$mch', current_date - 20)"));
is($none->{outcome}, 'no_bill', 'No Bill Exist is an ordinary answer');
is($sql->("SELECT no_bill FROM wxpay.bills WHERE bill_id = $none->{bill_id}"), 't', 'recorded as a day without a bill');
($state) = sql_error($node, "SELECT wxpay_downloadbill('$mch', current_date - 100)");
is($state, '22023', 'older than three months: refused before asking');
($state) = sql_error($node, "SELECT wxpay_downloadbill('$mch', '$day', 'EVERYTHING')");
is($state, '22023', 'an unknown bill_type');

# Fund flow: client certificate, HMAC-SHA256, its own rows, remarks unescaped.
my $fund = decode_json($sql->("SELECT wxpay_downloadfundflow('$mch', '$day', 'Basic')"));
is($fund->{outcome}, 'imported', 'the fund-flow bill is imported');
is($sql->("SELECT count(*) FILTER (WHERE kind = 'income') || '/' || count(*) FILTER (WHERE kind = 'expense')"
	  . " FROM wxpay.fund_flow_rows WHERE bill_id = $fund->{bill_id}"), '10/4', 'income and expense rows');
is($sql->("SELECT count(*) FROM wxpay.fund_flow_rows WHERE bill_id = $fund->{bill_id} AND remark LIKE E'%\\n原路退回'"), 4,
	'the escaped line break in 备注 is a line break again');
is(decode_json($sql->("SELECT wxpay_downloadfundflow('$mch', '$day', 'Fees')"))->{outcome}, 'no_bill',
	'NO_BILL_EXIST (signed) for an empty account');

# Nothing of this is readable by PUBLIC.
$sql->('CREATE ROLE stranger LOGIN');
for my $t (qw(wxpay.bills wxpay.bill_chunks wxpay.bill_rows wxpay.fund_flow_rows wxpay.bill_discrepancies wxpay.current_bills))
{
	is($sql->("SELECT has_table_privilege('stranger', '$t', 'SELECT')"), 'f', "$t is not readable by PUBLIC");
}
is($sql->("SELECT has_function_privilege('stranger', 'wxpay_downloadbill(text, date, text, boolean)', 'EXECUTE')"), 'f',
	'nor is wxpay_downloadbill executable');
$listener->quit;

done_testing();
