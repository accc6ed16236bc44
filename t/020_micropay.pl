# In-store payments against the simulator, one scripted outcome at a time
# (the auth_code's 3rd and 4th digits choose it, see sim/README.md): what
# wxpay_micropay returns at once, what the worker makes of it within the
# window (queries, reverse, REVOKED), what the till's wxpay_micropay_wait
# sees, and that the tables agree with WeChat Pay's truth afterwards.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WxTest;

my $sim = wx_sim();
my $node = wx_node('micropay', 'wxpay.poll_interval' => '1h', 'wxpay.micropay_interval' => '300ms',
	'wxpay.micropay_window' => '3s');
my $m = wx_merchant($node, $sim);
my $sql = sub { $node->safe_psql('postgres', shift) };
my $json = JSON::PP->new;

# The auth_code that scripts a scenario: 13, the scenario's two digits, N, 13 more.
my $code = sub { my ($scenario, $n) = @_; sprintf('13%s%d1234567890123', $scenario, $n // 0) };
my $micropay = sub {
	my ($no, $scenario, $n) = @_;
	return $json->decode($sql->("SELECT wxpay_micropay('10000100', '$no', 100, 'Till', '203.0.113.7', '"
		  . $code->($scenario, $n) . "')"));
};
my $wait = sub {
	my ($no, $timeout) = @_;
	return $json->decode($sql->("SELECT wxpay_micropay_wait('10000100', '$no', '" . ($timeout // '20s') . "')"));
};
my $there = sub { sim_call($sim, 'GET', "/_sim/orders?mch_id=10000100&out_trade_no=$_[0]") };
my $events = sub {
	$sql->("SELECT string_agg(new_state || ':' || source, ' ' ORDER BY id) FROM wxpay.order_events"
		  . " WHERE out_trade_no = '$_[0]'");
};

# --- Paid at once: applied like any verified payment, published as a paid event.
my $out = $sql->("SELECT wxpay_micropay('10000100', 'mp-ok', 100, 'Till', '203.0.113.7', '" . $code->('00') . "') ->> 'state'");
like($out, qr/^SUCCESS$/m, 'a payment that goes through at once: SUCCESS, returned at once');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM wxpay.paid_events p JOIN wxpay.order_events e"
	  . " ON e.id = p.event_id WHERE e.out_trade_no = 'mp-ok'"),
	'and published as a paid event (wxpay_order_paid), as every payment is');
my $paid = $there->('mp-ok');
is($sql->("SELECT state || ' ' || transaction_id || ' ' || trade_type FROM wxpay.orders WHERE out_trade_no = 'mp-ok'"),
	"SUCCESS $paid->{transaction_id} MICROPAY", 'the order is paid with WeChat Pay\'s transaction');
is($events->('mp-ok'), 'NOTPAY:micropay SUCCESS:micropay', 'recorded by micropay before the call, paid by its answer');
like($sql->("SELECT payer ->> 'bank_type' FROM wxpay.orders WHERE out_trade_no = 'mp-ok'"), qr/^CMC$/,
	'the payer fields are kept');

# --- USERPAYING, paid at the second query: the worker finds it inside the window.
is($micropay->('mp-up', '01', 2)->{state}, 'USERPAYING', 'a payer still confirming: USERPAYING, returned at once');
my $t0 = time;
my $settled = $wait->('mp-up');
is("$settled->{state} $settled->{settled}", 'SUCCESS true', 'wxpay_micropay_wait returns once the worker finds it paid');
cmp_ok(time - $t0, '<', 3, 'inside the window');
is($events->('mp-up'), 'NOTPAY:micropay USERPAYING:micropay SUCCESS:query', 'USERPAYING, then paid by a query');
is($there->('mp-up')->{reverse_calls}, 0, 'and never reversed');

# --- USERPAYING forever: queried through the window, then reversed.
is($micropay->('mp-forever', '02')->{state}, 'USERPAYING', 'a payer who never confirms');
is($wait->('mp-forever', '1s')->{settled}, 'false', 'a wait shorter than the window times out with the order pending');
$settled = $wait->('mp-forever');
is($settled->{state}, 'REVOKED', 'after the window the worker reverses it: REVOKED');
my $gone = $there->('mp-forever');
is("$gone->{state} " . ($gone->{reversed_paid} ? 'refunded' : 'never paid'), 'REVOKED never paid',
	'and WeChat Pay has it reversed, nothing charged');
is($events->('mp-forever'), 'NOTPAY:micropay USERPAYING:micropay REVOKED:reverse', 'REVOKED by the reverse');
cmp_ok($sql->("SELECT query_count FROM wxpay.orders WHERE out_trade_no = 'mp-forever'"), '>=', 5,
	'queried every wxpay.micropay_interval in the window (300 ms in 3 s)');

# --- SYSTEMERROR with the payment taken: queried, applied, never reversed.
is($micropay->('mp-se', '03')->{state}, 'UNKNOWN', 'SYSTEMERROR: the outcome is unknown, returned at once');
$settled = $wait->('mp-se');
is($settled->{state}, 'SUCCESS', 'the worker queries at once and applies the payment');
is($settled->{transaction_id}, $there->('mp-se')->{transaction_id}, 'WeChat Pay\'s transaction');
is($events->('mp-se'), 'NOTPAY:micropay SUCCESS:query', 'paid by the query');

# --- SYSTEMERROR with nothing charged: the till retries the identical request.
is($micropay->('mp-retry', '04')->{state}, 'UNKNOWN', 'SYSTEMERROR, nothing charged');
my ($state) = sql_error($node, "SELECT wxpay_micropay('10000100', 'mp-retry', 100, 'Till', '203.0.113.7', '"
	  . $code->('04', 1) . "')");
is($state, '22023', 'a retry with another code is refused: it is another request');
is($micropay->('mp-retry', '04')->{state}, 'SUCCESS', 'the identical retry goes through');
is($there->('mp-retry')->{micropay_calls}, 2, 'WeChat Pay saw the request twice');
is($sql->("SELECT count(*) FROM wxpay.order_events WHERE out_trade_no = 'mp-retry' AND new_state = 'SUCCESS'"), '1',
	'and the order was paid once');

# --- BANKERROR, paid at the first query.
is($micropay->('mp-bank', '05', 0)->{state}, 'UNKNOWN', 'BANKERROR: unknown');
is($wait->('mp-bank')->{state}, 'SUCCESS', 'paid, as the query finds');

# --- Refusals: nothing charged, the order closed here, never reversed.
my %refusals = ('10' => [ 'NOTENOUGH', 'WX004' ], '11' => [ 'AUTHCODEEXPIRE', 'WX000' ],
	'12' => [ 'AUTH_CODE_ERROR', 'WX000' ], '13' => [ 'AUTH_CODE_INVALID', 'WX000' ],
	'14' => [ 'NOTSUPORTCARD', 'WX000' ], '15' => [ 'BUYER_MISMATCH', 'WX000' ], '16' => [ 'TRADE_ERROR', 'WX000' ],
	'17' => [ 'NOAUTH', 'WX000' ]);
for my $digits (sort keys %refusals)
{
	my ($err_code, $sqlstate) = @{ $refusals{$digits} };
	my ($got, $msg) = sql_error($node, "SELECT wxpay_micropay('10000100', 'mp-no-$digits', 100, 'Till', '203.0.113.7', '"
		  . $code->($digits) . "')");
	is($got, $sqlstate, "$err_code is raised as $sqlstate");
	like($msg, qr/err_code: $err_code/, "with WeChat's err_code in the detail");
	is($sql->("SELECT state FROM wxpay.orders WHERE out_trade_no = 'mp-no-$digits'"), 'CLOSED', "$err_code: the order is CLOSED");
}
($state) = sql_error($node, "SELECT wxpay_micropay('10000100', 'mp-no-10', 100, 'Till', '203.0.113.7', '" . $code->('10') . "')");
is($state, '55000', 'a refused order is not sent again: a new attempt needs a new out_trade_no');
is(scalar(grep { $there->("mp-no-$_")->{reverse_calls} } keys %refusals), 0, 'no refused order is reversed');

# --- The till cancels: wxpay_reverse over mutual TLS.
$micropay->('mp-cancel', '02');
is($json->decode($sql->("SELECT wxpay_reverse('10000100', 'mp-cancel')"))->{state}, 'REVOKED',
	'wxpay_reverse: REVOKED once WeChat Pay confirms');
is($there->('mp-cancel')->{state}, 'REVOKED', 'reversed there');
is($events->('mp-cancel'), 'NOTPAY:micropay USERPAYING:micropay REVOKED:reverse', 'recorded as the reverse');

# --- recall=Y: the reverse is repeated until it goes through.
$micropay->('mp-recall', '07', 2);
my $first = $json->decode($sql->("SELECT wxpay_reverse('10000100', 'mp-recall')"));
is($first->{state}, 'USERPAYING', 'a reverse answered recall=Y leaves the order as it is');
like($first->{reason}, qr/SYSTEMERROR/, 'and says why');
is($wait->('mp-recall')->{state}, 'REVOKED', 'the worker repeats the reverse until it goes through');
is($there->('mp-recall')->{reverse_calls}, 3, 'three reverses: two answered recall=Y');

# --- mutual TLS: with another merchant's certificate the reverse is refused.
my $other = wx_merchant($node, $sim, mch_id => '10000300', appid => 'wx3000');
$sql->("UPDATE wxpay.merchants SET cert_pem = (SELECT cert_pem FROM wxpay.merchants WHERE mch_id = '10000300'),"
	  . " key_pem = (SELECT key_pem FROM wxpay.merchants WHERE mch_id = '10000300') WHERE mch_id = '10000100'");
$micropay->('mp-cert', '02');
my $refused = $json->decode($sql->("SELECT wxpay_reverse('10000100', 'mp-cert')"));
like($refused->{reason}, qr/CERT_ERROR/, 'a reverse with the wrong client certificate is refused by WeChat Pay');
is($there->('mp-cert')->{state}, 'USERPAYING', 'and nothing was reversed');
$sql->("UPDATE wxpay.merchants SET cert_pem = \$c\$$m->{cert_pem}\$c\$, key_pem = \$k\$$m->{key_pem}\$k\$"
	  . " WHERE mch_id = '10000100'");
is($wait->('mp-cert')->{state}, 'REVOKED', 'with its own certificate back, the worker\'s repeat goes through');

# --- Nothing is left pending; the tables agree with WeChat Pay.
ok($node->poll_query_until('postgres', "SELECT now() > reverse_after + interval '1 second' FROM wxpay.orders"
	  . " WHERE out_trade_no = 'mp-se'"), 'the window of the SYSTEMERROR order that was paid has passed');
is($there->('mp-se')->{reverse_calls}, 0, 'it was never reversed');
is($sql->("SELECT count(*) FROM wxpay.orders WHERE trade_type = 'MICROPAY' AND wxpay.order_state_pending(state)"),
	'0', 'no micropay order is left pending');
my @wrong = grep { my $t = $there->($_->[0]); $t->{state} ne $_->[1] }
  map { [ split /\|/ ] } split /\n/, $sql->("SELECT out_trade_no, state FROM wxpay.orders WHERE trade_type = 'MICROPAY'"
	  . " AND state <> 'CLOSED'");
is(scalar(@wrong), 0, 'every micropay order has the same state here and at WeChat Pay') or diag(explain \@wrong);
wx_audit($node, $sim, '10000100', 'micropay');

$node->stop;
done_testing();
