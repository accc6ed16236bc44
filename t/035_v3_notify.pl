# API v3 payment notifications (wxpay-v3-api.md §3, §5): a TRANSACTION.SUCCESS
# signed by a platform certificate or by the WeChat Pay public key pays its
# order once, however many copies race; a forged amount, mchid or appid is
# refused and pays nothing; probes and skewed timestamps are refused with a
# 4xx and the genuine retry is accepted; every body is recorded with its
# signature headers and no other header.
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
my $node = wx_node('v3notify', 'wxpay.poll_interval' => '1h');
my $sql = sub { $node->safe_psql('postgres', shift) };

my %merchant = (
	certificate => wx_merchant_v3($node, $sim, mch_id => '1900000001', appid => 'wx0000000000000001',
		key_mode => 'certificate'),
	public_key => wx_merchant_v3($node, $sim, mch_id => '1900000002', appid => 'wx0000000000000002',
		key_mode => 'public_key'));

# The handler as a web tier calls it: "status|reply".
sub handle
{
	my ($mch_id, $headers, $body) = @_;
	return $node->safe_psql('postgres', 'SELECT status || \'|\' || coalesce(reply, \'\') FROM '
		  . wx_notify_v3_call($mch_id, $headers, $body));
}

# The genuine notification of a payment the simulator made.
sub paid
{
	my ($mch_id, $out_trade_no) = @_;
	return sim_call($sim, 'POST', '/_sim/pay', { mch_id => $mch_id, out_trade_no => $out_trade_no, notify => JSON::PP::false });
}

# A notification of the order as the simulator has it, with fields
# overridden or a fault (probe, badsign, skew with skew_s).
sub crafted
{
	my ($mch_id, $out_trade_no, %opts) = @_;
	return sim_call($sim, 'POST', '/_sim/notification', { mch_id => $mch_id, out_trade_no => $out_trade_no, %opts });
}

sub order_state
{
	my ($mch_id, $no) = @_;
	return $sql->("SELECT state FROM wxpay.orders WHERE mch_id = '$mch_id' AND out_trade_no = '$no'");
}

sub last_notification
{
	return $sql->("SELECT outcome || '|' || verified || '|' || kind || '|' || coalesce(reason, '') FROM wxpay.notifications ORDER BY id DESC LIMIT 1");
}

for my $mode (qw(certificate public_key))
{
	my $m = $merchant{$mode};
	my $mch = $m->{mch_id};
	$sql->("SELECT wxpay_unifiedorder('$mch', 'pay-$mode', 100, 'V3 pay', '203.0.113.7')");
	my $n = paid($mch, "pay-$mode");
	like($n->{headers}{'Wechatpay-Serial'}, $mode eq 'certificate' ? qr/^[0-9A-F]{1,40}$/ : qr/^PUB_KEY_ID_\d+$/,
		"$mode: the simulator signs with the $mode");
	# A web tier passes every header, in its own spelling.
	my %headers = map { lc($_) => $n->{headers}{$_} } keys %{ $n->{headers} };
	$headers{Cookie} = 'session=not-for-the-record';
	is(handle($mch, \%headers, $n->{notification}), '204|', "$mode: the genuine notification is answered 204, no body");
	is(order_state($mch, "pay-$mode"), 'SUCCESS', "$mode: and pays the order");
	is($sql->("SELECT transaction_id FROM wxpay.orders WHERE mch_id = '$mch' AND out_trade_no = 'pay-$mode'"),
		$n->{transaction_id}, "$mode: with WeChat Pay's transaction_id");
	is($sql->("SELECT source FROM wxpay.order_events WHERE mch_id = '$mch' AND out_trade_no = 'pay-$mode' AND new_state = 'SUCCESS'"),
		'notify', "$mode: one SUCCESS event, by the notification");
	is($sql->("SELECT outcome || ' ' || verified || ' ' || kind || ' ' || (resource #>> '{amount,total}')"
		  . " || ' ' || (headers ->> 'Wechatpay-Serial' = '$n->{headers}{'Wechatpay-Serial'}')"
		  . " FROM wxpay.notifications WHERE mch_id = '$mch' AND out_trade_no = 'pay-$mode'"),
		'accepted true pay 100 true', "$mode: recorded accepted, verified, with its decrypted resource and serial");
	is($sql->("SELECT string_agg(k, ',' ORDER BY k) FROM wxpay.notifications, jsonb_object_keys(headers) k"
		  . " WHERE mch_id = '$mch' AND out_trade_no = 'pay-$mode'"),
		'Request-ID,Wechatpay-Nonce,Wechatpay-Serial,Wechatpay-Signature,Wechatpay-Signature-Type,Wechatpay-Timestamp',
		"$mode: only the signature headers are recorded, under their own names (no Cookie)");
	is(handle($mch, $n->{headers}, $n->{notification}), '204|', "$mode: a repeat is answered 204 too");
	is(last_notification(), 'duplicate|true|pay|', "$mode: and recorded as a duplicate");
}

# The paid event reaches a consumer like a v2 payment's.
$sql->("SELECT count(*) FROM wxpay_paid_events_next('v3shop')");
$sql->("SELECT wxpay_unifiedorder('1900000001', 'event-1', 300, 'Event', '203.0.113.7')");
my $n = paid('1900000001', 'event-1');
is(handle('1900000001', $n->{headers}, $n->{notification}), '204|', 'a payment for the event consumer');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM wxpay.paid_events p JOIN wxpay.order_events e ON e.id = p.event_id WHERE e.out_trade_no = 'event-1'"),
	'the worker publishes it as a paid event');
is($sql->("SELECT out_trade_no || ' ' || total_fee FROM wxpay_paid_events_next('v3shop')"), 'event-1 300',
	'the consumer reads it back');

# Eight copies of one notification at the same moment.
$sql->("SELECT wxpay_unifiedorder('1900000002', 'race-1', 100, 'Race', '203.0.113.7')");
$n = paid('1900000002', 'race-1');
my $call = 'SELECT status AS reply_%d FROM ' . wx_notify_v3_call('1900000002', $n->{headers}, $n->{notification}) . ';';
my $blocker = $node->background_psql('postgres');
$blocker->query_safe("BEGIN; SELECT 1 FROM wxpay.orders WHERE out_trade_no = 'race-1' FOR UPDATE");
my @racers;
for my $i (1 .. 8)
{
	my $s = $node->background_psql('postgres');
	$s->query_until(qr/go/, "\\echo go\n" . sprintf($call, $i) . "\n");
	push @racers, $s;
}
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 8 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%wxpay_handle_notify_v3%'"),
	'eight v3 notifications are waiting on the order at once');
$blocker->query_safe('COMMIT');
$blocker->quit;
my $ok = 0;
for my $s (@racers)
{
	$ok++ if $s->query_safe('SELECT 1') =~ /^204$/m;
	$s->quit;
}
is($ok, 8, 'all eight are answered 204');
is($sql->("SELECT count(*) FROM wxpay.order_events WHERE out_trade_no = 'race-1' AND new_state = 'SUCCESS'"),
	'1', 'exactly one SUCCESS transition');
is($sql->("SELECT string_agg(outcome || ':' || n, ',' ORDER BY outcome) FROM"
	  . " (SELECT outcome, count(*) n FROM wxpay.notifications WHERE out_trade_no = 'race-1' GROUP BY outcome) s"),
	'accepted:1,duplicate:7', 'one accepted, seven recorded as duplicates');

# Forged contents, genuinely signed (WeChat Pay would never): refused with
# 400 and nothing applied.  The simulator has the orders paid.
my %forged = (amount => { amount => { total => 1, currency => 'CNY' } }, mchid => { mchid => '1900000002' },
	appid => { appid => 'wx0000000000000002' }, state => { trade_state => 'NOTPAY' });
for my $what (sort keys %forged)
{
	$sql->("SELECT wxpay_unifiedorder('1900000001', 'forged-$what', 100, 'Forged', '203.0.113.7')");
	paid('1900000001', "forged-$what");
	my $f = crafted('1900000001', "forged-$what", fields => $forged{$what});
	is(handle('1900000001', $f->{headers}, $f->{body}), '400|{"code":"FAIL","message":"失败"}',
		"another $what: refused with 400 and the FAIL body");
	is(order_state('1900000001', "forged-$what"), 'NOTPAY', "another $what: the order stays unpaid");
	like(last_notification(), qr/^rejected\|true\|pay\|/, "another $what: recorded rejected though authentic");
}
# Odd contents a genuine signature could carry: refused (400), never an
# error (500), never paid.
$sql->("SELECT wxpay_unifiedorder('1900000001', 'odd-1', 100, 'Odd', '203.0.113.7')");
paid('1900000001', 'odd-1');
for my $odd ({ amount => { total => 100.5 } }, { amount => { total => -100 } },
	{ amount => { total => 1e30 } }, { amount => 'all' }, { success_time => '2026-13-45T99:00:00+08:00' },
	{ success_time => '2026-02-29T12:00:00+08:00' }, { success_time => 'yesterday' },
	{ transaction_id => 'x' x 100 }, { out_trade_no => 17 })
{
	my $f = crafted('1900000001', 'odd-1', fields => $odd);
	like(handle('1900000001', $f->{headers}, $f->{body}), qr/^400\|/, 'refused with 400: ' . JSON::PP->new->canonical->encode($odd));
}
is(order_state('1900000001', 'odd-1'), 'NOTPAY', 'none of them paid the order');
my $f = crafted('1900000001', 'odd-1', fields => { payer => [], bank_type => { a => 1 } });
is(handle('1900000001', $f->{headers}, $f->{body}), '204|', 'odd payer details do not stop a genuine payment');
is($sql->("SELECT payer ?| '{openid,bank_type}' FROM wxpay.orders WHERE out_trade_no = 'odd-1'"), 'f', 'and are not kept');

like($sql->("SELECT reason FROM wxpay.notifications WHERE out_trade_no = 'forged-amount'"), qr/does not match the order's 100 fen/,
	'the amount is named as the reason');
like($sql->("SELECT reason FROM wxpay.notifications WHERE out_trade_no = 'forged-mchid'"), qr/mchid is not the merchant/,
	'the mchid is named as the reason');
like($sql->("SELECT reason FROM wxpay.notifications WHERE out_trade_no = 'forged-appid'"), qr/appid does not belong/,
	'the appid is named as the reason');
is($sql->("SELECT total_fee FROM wxpay.unmatched_payments WHERE out_trade_no = 'forged-amount'"), '1',
	'the authentic payment of another amount is listed in unmatched_payments with its amount');

# Probes, skewed clocks, a changed byte, the wrong merchant: 401, unpaid;
# then the genuine retry is accepted.
$sql->("SELECT wxpay_unifiedorder('1900000001', 'probe-1', 100, 'Probe', '203.0.113.7')");
my $genuine = paid('1900000001', 'probe-1');
my $probe = crafted('1900000001', 'probe-1', fault => 'probe');
like($probe->{headers}{'Wechatpay-Signature'}, qr{^WECHATPAY/SIGNTEST/}, 'the simulator sends a probe');
is(handle('1900000001', $probe->{headers}, $probe->{body}), '401|{"code":"FAIL","message":"失败"}', 'a probe is refused with 401');
like(last_notification(), qr{^rejected\|false\|pay\|.*a WECHATPAY/SIGNTEST/ probe}, 'recorded as a probe, not verified');
for my $skew (310, -301)
{
	my $s = crafted('1900000001', 'probe-1', fault => 'skew', skew_s => $skew);
	like(handle('1900000001', $s->{headers}, $s->{body}), qr/^401\|/, "a timestamp $skew s off is refused with 401");
	like(last_notification(), qr/more than 300 s from our clock/, 'saying so');
}
my $bad = crafted('1900000001', 'probe-1', fault => 'badsign');
like(handle('1900000001', $bad->{headers}, $bad->{body}), qr/^401\|/, 'a signature over other bytes is refused');
(my $spaced = $genuine->{notification}) =~ s/,/, /;
like(handle('1900000001', $genuine->{headers}, $spaced), qr/^401\|/, 'the genuine headers over a re-serialised body are refused');
like(handle('1900000002', $genuine->{headers}, $genuine->{notification}), qr/^401\|/,
	'the genuine notification at another merchant\'s URL is refused');
like(last_notification(), qr/names no key of merchant 1900000002/, 'whose keys do not include that serial');
like(handle('1900009999', $genuine->{headers}, $genuine->{notification}), qr/^401\|/, 'at an unknown merchant\'s URL too');
like(handle(undef, $genuine->{headers}, $genuine->{notification}), qr/^401\|/, 'and with no merchant at all');
is(order_state('1900000001', 'probe-1'), 'NOTPAY', 'none of them paid the order');
is(handle('1900000001', $genuine->{headers}, $genuine->{notification}), '204|', 'the genuine retry is accepted');
is(order_state('1900000001', 'probe-1'), 'SUCCESS', 'and pays it');
my $within = crafted('1900000001', 'probe-1', fault => 'skew', skew_s => -250);
is(handle('1900000001', $within->{headers}, $within->{body}), '204|', 'a timestamp 250 s off is inside the window');

# A v2 merchant has no v3 notifications.
wx_merchant($node, $sim, mch_id => '10000100');
like(handle('10000100', $genuine->{headers}, $genuine->{notification}), qr/^401\|/, 'a v2 merchant\'s URL refuses v3 bodies');
like(last_notification(), qr/does not use API v3/, 'saying why');

is($sql->("SELECT count(*) FROM wxpay.notifications WHERE headers IS NULL"), '0', 'every v3 body was recorded with its headers');
is($sql->("SELECT count(*) FROM wxpay.notifications WHERE resource IS NOT NULL AND NOT verified"), '0',
	'no unverified body has a decrypted resource on record');
wx_audit($node, $sim, '1900000001', 'certificate merchant');
wx_audit($node, $sim, '1900000002', 'public-key merchant');

$node->stop;
done_testing();
