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
	qr/HINT:  Yesterday in Beijing time is \(now\(\) AT TIME ZONE 'Asia\/Shanghai'\)::date - 1/, 'and how to name yesterday');
is(decode_json($sql->("SELECT wxpay_downloadbill('$mch', '$yesterday')"))->{outcome}, 'no_bill', 'yesterday is asked for');

done_testing();
