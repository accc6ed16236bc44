# Faults a new user's trial of the daily bills found (issue 17): a refused
# download follows the remote-error contract, a downloaded file of another
# day is refused, a stale bill of the day is not reconciled, and today's
# bill (not complete yet) is never fetched.
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
my $node = wx_node('bill_faults', 'wxpay.poll_interval' => '1h');
my $mch = '10002600';
wx_merchant($node, $sim, mch_id => $mch, appid => 'wx2600', sign_type => 'HMAC-SHA256');
my $sql = sub { $node->safe_psql('postgres', shift) };
my ($today, $yesterday) = split /\|/, $sql->(
	"SELECT d, d - 1 FROM (SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date AS d) x");

# A refusal with return_code FAIL (here: the signature, made with a wrong
# key) is an answer that cannot be trusted, like every other endpoint's:
# WX007 with WeChat's return_msg in the message, not a WX000 whose
# err_code is the return_msg.
$sql->("UPDATE wxpay.merchants SET api_key = 'ffffffffffffffffffffffffffffffff' WHERE mch_id = '$mch'");
for my $f ("wxpay_downloadbill('$mch', '$yesterday')", "wxpay_downloadfundflow('$mch', '$yesterday')")
{
	my ($state, $err) = sql_error($node, "SELECT $f");
	is($state, 'WX007', "$f refused with return_code FAIL: WX007");
	like($err, qr/answered return_code FAIL: 签名错误/, 'with the return_msg in the message');
	unlike($err, qr/err_code: 签名错误/, 'not passed off as an err_code');
}
$sql->("UPDATE wxpay.merchants SET api_key = '$TEST_KEY' WHERE mch_id = '$mch'");

# Today (Beijing time) is not over: its bill would be partial, and the
# worker would count the day as done, so no way in takes it.
for my $f ("wxpay_downloadbill('$mch', '$today')", "wxpay_downloadfundflow('$mch', '$today')",
	"wxpay_bill_import('$mch', '$today', 'ALL', '')", "wxpay_bill_backfill('$mch', '$yesterday', '$today')")
{
	my ($state, $err) = sql_error($node, "SELECT * FROM $f");
	is($state, '22023', "$f: today is refused");
	like($err, qr/the bill of $today is not complete yet: it is $today in Beijing time.*the last complete day is $yesterday/s,
		'the message says which day is complete');
}
like((sql_error($node, "SELECT wxpay_downloadbill('$mch', '$today')"))[1],
	qr/HINT:  Yesterday in Beijing time is \(now\(\) AT TIME ZONE 'Asia\/Shanghai'\)::date - 1; WeChat Pay makes its bill from about 09:00 Beijing time \(the worker asks after wxpay.bill_fetch_after, 10:00 by default\)/,
	'and how to name yesterday, and when its bill is made (as README says) and fetched');
like((sql_error($node, "SELECT wxpay_bill_import('$mch', '$today', 'ALL', '')"))[1],
	qr/HINT:  Nothing was imported: a file of a day not over yet in Beijing time cannot be its whole bill/,
	'an import is given advice about the file, not about downloading');
like((sql_error($node, "SELECT wxpay_downloadbill('$mch', '$today'::date + 3)"))[1],
	qr/there is no bill of [-0-9]+ yet: it is $today in Beijing time/, 'a later day has no bill yet');
is(decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday')"))->{outcome}, 'no_bill', 'yesterday is asked for');

# A downloaded file of another day than asked for is refused too (defence
# in depth: the file is unsigned), trade and fund flow alike; a file handed
# to wxpay_bill_import is invalid input, with advice about the file.
my $before = $sql->("SELECT '$yesterday'::date - 1");
(my $compact_before = $before) =~ s/-//g;
$sql->("SELECT wxpay_unifiedorder('$mch', 'f-before', 100, 'Fault test', '203.0.113.7')");
sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => 'f-before', notify => JSON::PP::false,
	time_end => "${compact_before}120000" });
for my $f ("wxpay_downloadbill('$mch', '$yesterday', 'ALL', false)", "wxpay_downloadfundflow('$mch', '$yesterday')")
{
	my $path = $f =~ /fundflow/ ? '/pay/downloadfundflow' : '/pay/downloadbill';
	sim_call($sim, 'POST', '/_sim/faults', { mode => 'bill_wrong_day', path => $path });
	my ($state, $err) = sql_error($node, "SELECT $f");
	is($state, 'WX007', "$f: the day before's file is refused");
	like($err, qr/its rows are of $before \(Beijing time\), not of $yesterday \(1 of 1 rows are of another day/,
		'naming the day its rows are of');
}
is($sql->("SELECT count(*) FROM wxpay.bills WHERE bill_date = '$yesterday' AND NOT no_bill"), 0, 'nothing stored');
my $file = $sql->("SELECT wxpay_downloadbill('$mch', '$before', 'ALL', false) ->> 'outcome'");
is($file, 'imported', "the day before's bill, asked for, is imported");
my $text = "(SELECT convert_to(wxpay.bill_text(b), 'UTF8') FROM wxpay.bills b WHERE bill_date = '$before' AND kind = 'trade')";
my ($state, $err) = sql_error($node, "SELECT wxpay_bill_import('$mch', '$yesterday', 'ALL', $text)");
is($state, '22023', 'imported as another day: 22023');
like($err, qr/HINT:  Nothing was imported\. A bill lists one Beijing day: import the file with the bill_date of its rows/,
	'with advice about the file');
($state, $err) = sql_error($node, "SELECT wxpay_bill_import('$mch', '$yesterday', 'SUCCESS', 'not a bill')");
is($state, '22P02', 'a file that is not a bill: 22P02');
unlike($err, qr/Download it again/, 'and no advice to download it');

# A stale bill of the day is not reconciled: No Bill Exist stored (the
# SUCCESS bill, or the ALL bill), then a payment of that day, then the
# day's real bill: the newest bill is the one reconciled, and nothing is
# left over from the No Bill Exist answer.
my $paid_on = sub {
	my ($no, $day) = @_;
	(my $compact = $day) =~ s/-//g;
	$sql->("SELECT wxpay_unifiedorder('$mch', '$no', 100, 'Fault test', '203.0.113.7')");
	my $paid = sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch, out_trade_no => $no, notify => JSON::PP::false,
		time_end => "${compact}120000" });
	$sql->("SELECT wxpay_handle_notify(\$b\$$paid->{notification}\$b\$)");
};
my $cases = sub {
	$sql->("SELECT coalesce(string_agg(bill_type || ':' || kind, ',' ORDER BY kind), '') FROM wxpay.bill_discrepancies"
		  . " WHERE bill_date = '$_[0]'");
};
for my $type ('SUCCESS', 'ALL')
{
	my $day = $sql->("SELECT '$before'::date - " . ($type eq 'ALL' ? 2 : 1));
	is(decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$day', '$type')"))->{outcome}, 'no_bill', "$type: No Bill Exist");
	$paid_on->("f-stale-$type", $day);
	is($cases->($day), "$type:payment_totals_differ,$type:success_not_in_bill", 'a payment that bill does not have');
	is(decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$day', 'ALL')"))->{outcome},
		$type eq 'ALL' ? 'new_version' : 'imported', "then the day's ALL bill");
	is($cases->($day), '', "the newest bill is reconciled: the stale $type answer reports nothing");
	is(decode_json($sql->("SELECT wxpay_bill_summary('$mch', '$day')"))->{discrepancies}, 0, 'nor does the summary');
}

done_testing();
