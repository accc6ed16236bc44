# A refund notification is a trigger, not proof (AES-ECB has no integrity):
# it is recorded, schedules an immediate refundquery and wakes the worker;
# only the verified refundquery answer moves the refund.  With a one-hour
# poll interval, only the wake can explain a quick confirmation.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--refund-delay-ms', '300000');	# refunds settle only when a test says so
my $node = wx_node('refund_notify', 'wxpay.poll_interval' => '1h');
wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };

# A paid order, refunded: PROCESSING here and at WeChat Pay.
$sql->("SELECT wxpay_unifiedorder('10000100', 'rn-1', 100, 'Refund notify', '203.0.113.7')");
my $pay = sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => 'rn-1', notify => JSON::PP::false });
$sql->("SELECT wxpay_handle_notify(\$b\$$pay->{notification}\$b\$)");
$sql->("SELECT wxpay_refund('10000100', 'rn-1', 'rn-1-a', 40)");
is($sql->("SELECT state FROM wxpay.refunds WHERE out_refund_no = 'rn-1-a'"), 'PROCESSING', 'a refund in progress');

# A notification that decrypts and says SUCCESS while WeChat Pay's own
# record still says PROCESSING: recorded, but it moves nothing.
my $early = sim_call($sim, 'POST', '/_sim/refund_notification',
	{ mch_id => '10000100', out_refund_no => 'rn-1-a', fields => { refund_status => 'SUCCESS' } })->{body};
like($sql->("SELECT wxpay_handle_refund_notify(\$b\$$early\$b\$)"), qr/SUCCESS/, 'an unconfirmed notification is acknowledged');
ok($node->poll_query_until('postgres', "SELECT query_count = 1 FROM wxpay.refunds WHERE out_refund_no = 'rn-1-a'"),
	'it woke the worker, which asked WeChat Pay at once');
is($sql->("SELECT state FROM wxpay.refunds WHERE out_refund_no = 'rn-1-a'"), 'PROCESSING',
	'and the refund stays PROCESSING: the notification alone is not proof');
is($sql->("SELECT outcome || ': ' || reason FROM wxpay.notifications WHERE kind = 'refund' ORDER BY id DESC LIMIT 1"),
	'accepted: refundquery scheduled to confirm it', 'the notification is on record as a trigger');

# The refund settles at WeChat Pay and its notification arrives.
sim_call($sim, 'POST', '/_sim/refund_state', { mch_id => '10000100', out_refund_no => 'rn-1-a', state => 'SUCCESS',
	notify => JSON::PP::false });
my $real = sim_call($sim, 'POST', '/_sim/refund_notification', { mch_id => '10000100', out_refund_no => 'rn-1-a' })->{body};
$sql->("SELECT wxpay_handle_refund_notify(\$b\$$real\$b\$)");
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = 'rn-1-a'"),
	'the confirmed refund reaches SUCCESS');
is($sql->("SELECT source FROM wxpay.refund_events WHERE out_refund_no = 'rn-1-a' AND new_state = 'SUCCESS'"), 'query',
	'through the verified refundquery, not the notification');
my $delay = $sql->("SELECT EXTRACT(epoch FROM e.created_at - n.received_at) FROM wxpay.refund_events e,"
	. " (SELECT max(received_at) received_at FROM wxpay.notifications WHERE kind = 'refund') n"
	. " WHERE e.out_refund_no = 'rn-1-a' AND e.new_state = 'SUCCESS'");
cmp_ok($delay, '<', 3, "the refund reached SUCCESS ${delay} s after its notification (poll interval 1 h)");

# A repeat is a duplicate and wakes nobody.
$sql->("SELECT wxpay_handle_refund_notify(\$b\$$real\$b\$)");
is($sql->("SELECT outcome FROM wxpay.notifications WHERE kind = 'refund' ORDER BY id DESC LIMIT 1"), 'duplicate',
	'a repeat for a settled refund is a duplicate');

# A notification inside a transaction that rolls back wakes nobody and
# schedules nothing.
$sql->("SELECT wxpay_refund('10000100', 'rn-1', 'rn-1-b', 10)");
my $b = sim_call($sim, 'POST', '/_sim/refund_notification', { mch_id => '10000100', out_refund_no => 'rn-1-b' })->{body};
$sql->("BEGIN; SELECT wxpay_handle_refund_notify(\$b\$$b\$b\$); ROLLBACK;");
is($sql->("SELECT query_count || ' ' || (next_query_at > now() + interval '30 minutes')"
	. " FROM wxpay.refunds WHERE out_refund_no = 'rn-1-b'"), '0 true', 'a rolled-back notification schedules nothing');

$node->stop;
done_testing();
