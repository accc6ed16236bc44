# Refunds against the simulator: mutual TLS, retries that refund once,
# concurrent refunds that together would over-refund, WeChat's own
# NOTENOUGH, a wrong client certificate, refund notifications (delivered,
# duplicated, tampered, garbage), and the worker finishing a refund whose
# notification was lost.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $sim = wx_sim('--refund-delay-ms', '500', '--notify-scale', '0.002');
my $node = wx_node('refund', 'wxpay.poll_interval' => '300ms');
my $receiver_port = PostgreSQL::Test::Cluster::get_free_port();
my $own = wx_merchant($node, $sim);
my ($own_cert, $own_key) = ($own->{cert_pem}, $own->{key_pem});
my $other = wx_merchant($node, $sim, mch_id => '10000300', appid => 'wx3000');
my $sql = sub { $node->safe_psql('postgres', shift) };

# A paid order of 100 fen.
my $paid_order = sub {
	my ($no) = @_;
	$sql->("SELECT wxpay_unifiedorder('10000100', '$no', 100, 'Refundable', '203.0.113.7')");
	my $body = sim_call($sim, 'POST', '/_sim/pay', { mch_id => '10000100', out_trade_no => $no,
		notify => JSON::PP::false })->{notification};
	$sql->("SELECT wxpay_handle_notify(\$b\$$body\$b\$)");
	is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = '$no'"), 'SUCCESS', "order $no is paid");
};
my $notify_url = "http://127.0.0.1:$receiver_port/refund";

$paid_order->('rf-1');
my $refund_id = $sql->("SELECT wxpay_refund('10000100', 'rf-1', 'rf-1-a', 30, '{\"notify_url\": \"$notify_url\"}') ->> 'refund_id'");
like($refund_id, qr/^\d+$/, 'a refund over mutual TLS is accepted');
is($sql->("SELECT state || '/' || refund_id FROM wxpay.refunds WHERE out_refund_no = 'rf-1-a'"), "PROCESSING/$refund_id",
	'recorded as PROCESSING with its refund_id');
is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'rf-1'"), 'REFUND', 'the order moves to REFUND');

# Retrying the same out_refund_no refunds once.
is($sql->("SELECT wxpay_refund('10000100', 'rf-1', 'rf-1-a', 30, '{\"notify_url\": \"$notify_url\"}') ->> 'refund_id'"),
	$refund_id, 'a retry gets the same refund');
is(scalar @{ sim_call($sim, 'GET', '/_sim/orders?mch_id=10000100&out_trade_no=rf-1')->{refunds} }, 1,
	'and WeChat Pay refunded once');

# Two concurrent refunds of 50 fen of the 70 left: one of them must fail.
# Each is recorded by its own process under the order's row lock; the
# test holds that lock until both wait for it, so they truly race.
$sql->('CREATE TABLE outcome (out_refund_no text, txt text)');
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT 1 FROM wxpay.orders WHERE out_trade_no = 'rf-1' FOR UPDATE;");
my @callers;
for my $no ('rf-1-b', 'rf-1-c')
{
	my $caller = $node->background_psql('postgres');
	$caller->query_until(qr/go/, qq{\\echo go
DO \$\$ BEGIN
	PERFORM wxpay_refund('10000100', 'rf-1', '$no', 50);
	INSERT INTO outcome VALUES ('$no', 'refunded');
EXCEPTION WHEN OTHERS THEN
	INSERT INTO outcome VALUES ('$no', SQLSTATE || ' ' || SQLERRM);
END \$\$;
});
	push @callers, $caller;
	my $waiting = scalar @callers;
	ok($node->poll_query_until('postgres', "SELECT count(*) = $waiting FROM pg_stat_activity"
		  . " WHERE backend_type = 'wxpay refund' AND wait_event_type = 'Lock'"),
		"refund $no waits for the order's lock in its own process");
}
$locker->query_safe('COMMIT');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 2 FROM outcome'), 'both refunds finish');
is($sql->("SELECT txt FROM outcome WHERE out_refund_no = 'rf-1-b'"), 'refunded', 'the first is made');
like($sql->("SELECT txt FROM outcome WHERE out_refund_no = 'rf-1-c'"), qr/^22023 .*more than the 100 fen paid/,
	'and the second is refused once the first is recorded');
$_->quit for $locker, @callers;
is($sql->("SELECT sum(refund_fee) FROM wxpay.refunds WHERE out_trade_no = 'rf-1'"), '80',
	'refunds never add up to more than was paid');

# A refund whose caller gives up (statement_timeout) while WeChat Pay is
# slow: its own process still records it, so the next refund is judged
# against it here (before, it was lost here and only WeChat's NOTENOUGH
# caught the excess; t/013_rollback.pl has more).
$paid_order->('rf-2');
sim_call($sim, 'POST', '/_sim/faults', { mode => 'delay', delay_ms => 2000, count => 1, path => '/secapi/pay/refund' });
my ($state) = sql_error($node, "SET statement_timeout = '500ms'; SELECT wxpay_refund('10000100', 'rf-2', 'rf-2-a', 60)");
is($state, '57014', 'a caller cut short by statement_timeout');
ok($node->poll_query_until('postgres', "SELECT refund_id IS NOT NULL FROM wxpay.refunds WHERE out_refund_no = 'rf-2-a'"),
	'still has its refund recorded, with WeChat Pay\'s answer');
my $msg;
($state, $msg) = sql_error($node, "SELECT wxpay_refund('10000100', 'rf-2', 'rf-2-b', 60)");
is($state, '22023', 'so a refund that would exceed the order is refused here, before WeChat Pay');
like($sql->("SELECT wxpay_refund('10000100', 'rf-2', 'rf-2-a', 60) ->> 'result_code'"), qr/SUCCESS/,
	'the cut-short refund is completed by retrying its out_refund_no');

# The client certificate must be the merchant's own.
my $cert = $other->{cert_pem};
my $key = $other->{key_pem};
$sql->("UPDATE wxpay.merchants SET cert_pem = \$c\$$cert\$c\$, key_pem = \$k\$$key\$k\$ WHERE mch_id = '10000100'");
$paid_order->('rf-3');
# The worker's refund query (every 300 ms here) would replace last_error
# with its own answer (REFUNDNOTEXIST) before the test reads it: the worker
# is away meanwhile (the refund itself is sent by a process of its own).
$sql->("SELECT wxpay.worker_leave('10 minutes')");
($state, $msg) = sql_error($node, "SELECT wxpay_refund('10000100', 'rf-3', 'rf-3-a', 10)");
like($msg, qr/CERT_ERROR/, "another merchant's certificate is refused");
like($sql->("SELECT state || ' ' || last_error FROM wxpay.refunds WHERE out_refund_no = 'rf-3-a'"),
	qr/^PROCESSING .*CERT_ERROR/,
	'and the refund is on record with the reason, still PROCESSING: an unsigned refusal proves nothing');
$sql->("SELECT wxpay.worker_leave('0')");
$sql->("UPDATE wxpay.merchants SET cert_pem = NULL, key_pem = NULL WHERE mch_id = '10000100'");
($state) = sql_error($node, "SELECT wxpay_refund('10000100', 'rf-3', 'rf-3-z', 10)");
is($state, '55000', 'no certificate, no refund');

# Refund notifications delivered to the receiver.
my $receiver = wx_receiver($node, $receiver_port);
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = 'rf-1-a'"),
	'the encrypted refund notification completes the refund');
ok($sql->("SELECT count(*) > 0 FROM wxpay.refund_events WHERE out_refund_no = 'rf-1-a' AND source IN ('notify', 'query') AND new_state = 'SUCCESS'") eq 't',
	'with an event');
my $delivered = 0;
wx_poll(sub { $delivered = grep { $_->{success} } @{ sim_call($sim, 'GET', '/_sim/deliveries?out_refund_no=rf-1-a') } },
	'a successful delivery of rf-1-a');
is($delivered, 1, 'the delivered refund notification is answered SUCCESS, which ends the retries');
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM wxpay.notifications WHERE kind = 'refund' AND out_refund_no = 'rf-1-a' AND outcome IN ('accepted', 'duplicate')"),
	'and is on record');

# Duplicate, tampered and garbage refund notifications.
my $body = sim_call($sim, 'POST', '/_sim/refund_notification', { mch_id => '10000100', out_refund_no => 'rf-1-a' })->{body};
like($sql->("SELECT wxpay_handle_refund_notify(\$b\$$body\$b\$)"), qr/SUCCESS/, 'a duplicate is answered SUCCESS');
(my $tampered = $body) =~ s/(<req_info><!\[CDATA\[.{20})(.)/$1 . ($2 eq 'A' ? 'B' : 'A')/e;
like($sql->("SELECT wxpay_handle_refund_notify(\$b\$$tampered\$b\$)"), qr/FAIL/, 'a tampered one is refused');
like($sql->("SELECT wxpay_handle_refund_notify('<xml><return_code>SUCCESS</return_code>')"), qr/FAIL/, 'garbage is refused');
my $forged = sim_call($sim, 'POST', '/_sim/refund_notification',
	{ mch_id => '10000100', out_refund_no => 'rf-1-b', fields => { refund_fee => 70 } })->{body};
like($sql->("SELECT wxpay_handle_refund_notify(\$b\$$forged\$b\$)"), qr/FAIL/, 'one with another amount is refused');
is($sql->("SELECT count(*) FROM wxpay.refund_events WHERE out_refund_no = 'rf-1-a' AND new_state = 'SUCCESS'"), '1',
	'and none of them changed anything');

# The worker finishes a refund whose notification never comes.
$sql->("UPDATE wxpay.merchants SET cert_pem = \$c\$$own_cert\$c\$, key_pem = \$k\$$own_key\$k\$ WHERE mch_id = '10000100'");
# (the merchant's notify_url at the simulator is a closed port)
$sql->("SELECT wxpay_refund('10000100', 'rf-2', 'rf-2-c', 5)");
ok($node->poll_query_until('postgres', "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = 'rf-2-c'"),
	'a PROCESSING refund is finished by the worker');
is($sql->("SELECT source FROM wxpay.refund_events WHERE out_refund_no = 'rf-2-c' AND new_state = 'SUCCESS'"), 'query',
	'through refundquery');

$receiver->signal('TERM');
$receiver->finish;
$node->stop;
done_testing();
