# WxTest: shared setup for pg_wxpay's TAP tests.
#
# A cluster with wxpay preloaded and created, the WeChat Pay simulator
# (sim/wxsim.py) on an ephemeral loopback port, merchants registered on
# both sides, and helpers to drive the simulator's control endpoints.
package WxTest;

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempdir);
use FindBin;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(wx_node wx_sim sim_call sim_calls sim_deliveries sim_orders wx_merchant wx_merchant_v3 wx_v3_keys sql_error
  wx_notify_v3_call wx_receiver wx_audit slurp_file wx_poll wx_poll_due wx_poll_through_crash $TEST_KEY $TEST_APIV3_KEY);

our $TEST_KEY = '192006250b4c09247ec02edce69f6a2d';
our $TEST_APIV3_KEY = 'a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb';
my $json = JSON::PP->new->canonical;

# A started cluster with wxpay in shared_preload_libraries and created in
# "postgres", where the worker runs.
sub wx_node
{
	my ($name, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'wxpay'\nrestart_after_crash = on\n");
	$node->append_conf('postgresql.conf', "$_ = '$conf{$_}'\n") for sort keys %conf;
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION wxpay');
	return $node;
}

# Start the simulator; it is stopped when the test ends.
sub wx_sim
{
	my (@args) = @_;
	my $dir = tempdir(CLEANUP => 1);
	my $root = "$FindBin::RealBin/..";
	my $log = "$PostgreSQL::Test::Utils::tmp_check/wxsim.log";
	my $h = IPC::Run::start(
		[ '/usr/bin/python3', "$root/sim/wxsim.py", '--dir', $dir, '--port', '0', '--quiet', @args ],
		'>>', $log, '2>>', $log);
	wx_poll(sub { -s "$dir/port" }, 'the simulator to start') or die "simulator did not start, see $log";
	my $port = slurp_file("$dir/port");
	chomp $port;
	my $sim = { dir => $dir, port => $port, harness => $h,
		base => "https://127.0.0.1:$port",
		ca_pem => slurp_file("$dir/ca.pem") };
	push @WxTest::sims, $sim;
	return $sim;
}

END
{
	for my $h (@WxTest::receivers, map { $_->{harness} } @WxTest::sims)
	{
		eval { $h->signal('TERM'); $h->finish; };
	}
}

# Call a control endpoint; returns the decoded JSON answer.
sub sim_call
{
	my ($sim, $method, $path, $body) = @_;
	my @cmd = ('curl', '-sS', '--fail-with-body', '--cacert', "$sim->{dir}/ca.pem",
		'-X', $method, "$sim->{base}$path");
	push @cmd, ('-H', 'Content-Type: application/json', '--data-binary', $json->encode($body))
	  if defined $body;
	my ($out, $err);
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err)
	  or die "simulator call $method $path failed: $err $out";
	return length($out) ? $json->decode($out) : undef;
}

# Register a merchant at the simulator and in wxpay.merchants.
sub wx_merchant
{
	my ($node, $sim, %m) = @_;
	$m{mch_id} //= '10000100';
	$m{appid} //= 'wxd930ea5d5a258f4f';
	$m{api_key} //= $TEST_KEY;
	$m{sign_type} //= 'MD5';
	$m{notify_url} //= 'http://127.0.0.1:9/notify';
	my $creds = sim_call($sim, 'POST', '/_sim/merchants',
		{ map { $_ => $m{$_} } qw(mch_id appid api_key sign_type notify_url) });
	my $q = sub { my $v = shift; $v =~ s/'/''/g; "'$v'" };
	$node->safe_psql('postgres', sprintf(
		"INSERT INTO wxpay.merchants (mch_id, appid, api_key, sign_type, notify_url, api_base, ca_pem, cert_pem, key_pem)"
		  . " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
		map { $q->($_) } $m{mch_id}, $m{appid}, $m{api_key}, $m{sign_type}, $m{notify_url},
		$sim->{base}, $m{ca_pem} // $sim->{ca_pem}, $creds->{cert_pem}, $creds->{key_pem}));
	return { %m, %$creds };
}

# Register an API v3 merchant at the simulator and here: wxpay.merchants
# (protocol v3, apiclient_cert.pem and apiclient_key.pem), wxpay.merchant_v3
# (the APIv3 key; the serial comes from the certificate) and, unless
# keys => 0, the WeChat Pay keys the simulator lists for it.  key_mode is
# certificate, public_key or both.
sub wx_merchant_v3
{
	my ($node, $sim, %m) = @_;
	$m{mch_id} //= '1900007291';
	$m{appid} //= 'wxd678efh567hg6787';
	$m{apiv3_key} //= $TEST_APIV3_KEY;
	$m{key_mode} //= 'certificate';
	$m{notify_url} //= 'http://127.0.0.1:9/notify';
	my $creds = sim_call($sim, 'POST', '/_sim/merchants',
		{ (map { $_ => $m{$_} } qw(mch_id appid apiv3_key key_mode notify_url)),
		  api_key => $TEST_KEY, protocol => 'v3' });
	my $q = sub { my $v = shift; $v =~ s/'/''/g; "'$v'" };
	$node->safe_psql('postgres', sprintf(
		"INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, api_base, ca_pem, cert_pem, key_pem, protocol)"
		  . " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'v3');"
		  . " INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES (%s, %s);",
		map { $q->($_) } $m{mch_id}, $m{appid}, $TEST_KEY, $m{notify_url}, $sim->{base}, $sim->{ca_pem},
		$creds->{cert_pem}, $creds->{key_pem}, $m{mch_id}, $m{apiv3_key}));
	wx_v3_keys($node, $m{mch_id}, $creds->{wechatpay_keys}) unless defined $m{keys} && !$m{keys};
	return { %m, %$creds };
}

# Insert WeChat Pay keys as the simulator lists them ([{serial, kind, pem}]),
# those not there yet, as a DBA would from the merchant platform's files.
sub wx_v3_keys
{
	my ($node, $mch_id, $keys) = @_;
	for my $k (@$keys)
	{
		$node->safe_psql('postgres', "INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem)"
			  . " VALUES ('$mch_id', '$k->{serial}', '$k->{pem}') ON CONFLICT DO NOTHING");
	}
}

# The call of wxpay_handle_notify_v3 for a body (the simulator's bytes, as
# sim_call returns them) and its headers, in ASCII: however psql's input
# is encoded, the handler gets the bytes that were signed.
sub wx_notify_v3_call
{
	my ($mch_id, $headers, $body) = @_;
	my $b64 = sub { encode_base64(shift, '') };
	return sprintf("wxpay_handle_notify_v3(%s, convert_from(decode('%s', 'base64'), 'UTF8')::jsonb,"
		  . " convert_from(decode('%s', 'base64'), 'UTF8'))",
		defined $mch_id ? "'$mch_id'" : 'NULL', $b64->($json->encode($headers)), $b64->($body));
}

# Start sim/notify_receiver.py on port, handing what it receives to the
# node's "postgres" database (or to a connection string), once it
# listens; it is stopped when the test ends.
sub wx_receiver
{
	my ($node, $port) = @_;
	my $dsn = ref $node ? 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres' : $node;
	my $h = IPC::Run::start([ '/usr/bin/python3', "$FindBin::RealBin/../sim/notify_receiver.py",
		'--port', $port, '--dsn', $dsn, '--quiet' ]);
	push @WxTest::receivers, $h;
	wx_poll(sub { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') },
		'the notify receiver to listen') or die "notify receiver did not listen on port $port";
	return $h;
}

# Run SQL expected to fail; returns its SQLSTATE and the whole message.
sub sql_error
{
	my ($node, $sql, %opts) = @_;
	my ($ret, $out, $err) = $node->psql($opts{db} // 'postgres', "\\set VERBOSITY verbose\n$sql",
		extra_params => $opts{user} ? [ '-U', $opts{user} ] : []);
	my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($state // 'none', $err);
}

# Many control calls at once, over one keep-alive connection (a curl per
# call costs a process and a TLS handshake each): a list of
# [ method, path, body ] in, the list of decoded answers out.
sub sim_calls
{
	my ($sim, @calls) = @_;
	my $script = <<'PY';
import http.client, json, ssl, sys
port, ca = sys.argv[1:3]
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ssl.create_default_context(cafile=ca))
out = []
for method, path, body in json.load(sys.stdin):
    data = None if body is None else json.dumps(body)
    conn.request(method, path, data, {"Content-Type": "application/json"} if data is not None else {})
    resp = conn.getresponse()
    text = resp.read().decode()
    if resp.status != 200:
        sys.exit("simulator call %s %s failed: %d %s" % (method, path, resp.status, text))
    out.append(json.loads(text) if text else None)
print(json.dumps(out))
PY
	my ($out, $err);
	IPC::Run::run([ '/usr/bin/python3', '-c', $script, $sim->{port}, "$sim->{dir}/ca.pem" ],
		'<', \($json->encode(\@calls)), '>', \$out, '2>', \$err)
	  or die "sim_calls failed: $err";
	return @{ $json->decode($out) };
}

# Poll $check (a sub) every 50 ms until it returns true, for at most the
# test timeout, like poll_query_until for conditions that are not a query
# (the simulator's state, a listener's notifications).  False, with a
# diagnostic naming $what, when it never did.
sub wx_poll
{
	my ($check, $what) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return 1 if $check->();
		select(undef, undef, undef, 0.05);
	}
	diag("timed out waiting for: $what");
	return 0;
}

# The simulator's delivery attempts of the notifications named by $query
# (e.g. "out_trade_no=o-1"), once none is in flight: polled, like any
# other condition, for at most the test timeout.
sub sim_deliveries
{
	my ($sim, $query) = @_;
	wx_poll(sub { sim_call($sim, 'GET', '/_sim/stats')->{notify_in_flight} == 0 }, 'no delivery in flight');
	return sim_call($sim, 'GET', "/_sim/deliveries?$query");
}

# Poll $query until it returns 't' (like poll_query_until), and before each
# try make the pending orders matching $where due now.  For tests of what
# the worker makes of faults: after a burst of failed attempts its backoff
# (poll_interval doubling, up to 5 minutes) would set the pace of the test;
# the schedule itself is tested in 004_reconcile.
sub wx_poll_due
{
	my ($node, $where, $query) = @_;
	return wx_poll(sub {
		return 1 if $node->safe_psql('postgres', $query) eq 't';
		$node->safe_psql('postgres', "UPDATE wxpay.orders SET next_query_at = now()"
			  . " WHERE ($where) AND state IN ('NOTPAY', 'USERPAYING') AND next_query_at > now()");
		return 0;
	}, $query);
}

# poll_query_until for the moments after a SIGKILL, while the postmaster
# reinitialises: each attempt is a psql of its own with the query as an
# argument, so one that cannot connect yet is just a failed attempt (a
# query written to the stdin of a psql that already exited dies of SIGPIPE).
sub wx_poll_through_crash
{
	my ($node, $query) = @_;
	return wx_poll(sub {
		my ($out, $err) = ('', '');
		IPC::Run::run([ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'), '-c', $query ],
			'>', \$out, '2>', \$err);
		chomp $out;
		return $out eq 't';
	}, $query);
}

# Many orders from the simulator at once, over one keep-alive connection:
# { out_trade_no => { state, transaction_id, ... } }.
sub sim_orders
{
	my ($sim, $mch_id, @nos) = @_;
	my $script = <<'PY';
import http.client, json, ssl, sys
port, ca, mch = sys.argv[1:4]
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ssl.create_default_context(cafile=ca))
out = {}
for no in json.load(sys.stdin):
    conn.request("GET", "/_sim/orders?mch_id=%s&out_trade_no=%s" % (mch, no))
    resp = conn.getresponse()
    body = resp.read()
    out[no] = json.loads(body) if resp.status == 200 else None
print(json.dumps(out))
PY
	my ($out, $err);
	IPC::Run::run([ '/usr/bin/python3', '-c', $script, $sim->{port}, "$sim->{dir}/ca.pem", $mch_id ],
		'<', \($json->encode(\@nos)), '>', \$out, '2>', \$err)
	  or die "sim_orders failed: $err";
	return $json->decode($out);
}

# The audit every fault scenario ends with.  Against the database: each
# paid order was paid exactly once, by a notification or a query; each
# notified payment has its accepted body on record with the order's
# amount (a v3 body's is in its decrypted resource); refunds never
# exceed totals.  Against the simulator (WeChat
# Pay's truth): nothing is paid here that is not paid there, with the same
# transaction_id.
sub wx_audit
{
	my ($node, $sim, $mch_id, $label) = @_;
	my $q = sub { $node->safe_psql('postgres', shift) };

	is($q->(q{SELECT count(*) FROM (SELECT 1 FROM wxpay.order_events WHERE new_state = 'SUCCESS'
		GROUP BY mch_id, out_trade_no HAVING count(*) > 1) d}), '0', "$label audit: no duplicate SUCCESS transition");
	is($q->(q{SELECT count(*) FROM wxpay.orders o WHERE state IN ('SUCCESS', 'REFUND') AND 1 <>
		(SELECT count(*) FROM wxpay.order_events e WHERE e.mch_id = o.mch_id AND e.out_trade_no = o.out_trade_no
		  AND e.new_state = 'SUCCESS' AND e.source IN ('notify', 'query', 'micropay'))}), '0',
		"$label audit: every paid order was paid once, by a notification, a query or micropay's answer");
	is($q->(q{SELECT count(*) FROM wxpay.order_events e JOIN wxpay.orders o USING (mch_id, out_trade_no)
		WHERE e.new_state = 'SUCCESS' AND e.source = 'notify' AND NOT EXISTS
		(SELECT 1 FROM wxpay.notifications n WHERE n.kind = 'pay' AND n.outcome = 'accepted'
		  AND n.mch_id = e.mch_id AND n.out_trade_no = e.out_trade_no AND n.transaction_id = e.transaction_id
		  AND (CASE WHEN n.headers IS NULL THEN wxpay_from_xml(n.body) ->> 'total_fee'
		       ELSE n.resource #>> '{amount,total}' END)::int = o.total_fee)}), '0',
		"$label audit: each notified payment has its verified, amount-matched body on record");
	is($q->(q{SELECT count(*) FROM wxpay.orders o WHERE (SELECT COALESCE(sum(refund_fee), 0) FROM wxpay.refunds r
		WHERE r.mch_id = o.mch_id AND r.out_trade_no = o.out_trade_no AND r.state <> 'REFUNDCLOSE') > o.total_fee}),
		'0', "$label audit: refunds never exceed totals");
	# Text the C code stored is not validated by PostgreSQL: convert_from
	# checks the bytes (pg_dump would write invalid UTF-8 otherwise).
	is($q->(q{SELECT coalesce(bool_and(convert_from(convert_to(coalesce(last_error, ''), 'UTF8'), 'UTF8') IS NOT NULL), true)
		FROM (SELECT last_error FROM wxpay.orders UNION ALL SELECT last_error FROM wxpay.refunds
		      UNION ALL SELECT reason FROM wxpay.notifications) t}), 't',
		"$label audit: every last_error and reason is valid UTF-8");

	my %paid = map { split /\|/ } split /\n/, $q->("SELECT out_trade_no, transaction_id FROM wxpay.orders"
		  . " WHERE mch_id = '$mch_id' AND state IN ('SUCCESS', 'REFUND')");
	my $truth = sim_orders($sim, $mch_id, sort keys %paid);
	my @wrong = grep {
		my $t = $truth->{$_};
		!($t && $t->{state} =~ /^(SUCCESS|REFUND)$/ && ($t->{transaction_id} // '') eq $paid{$_})
	} sort keys %paid;
	is(scalar(@wrong), 0, "$label audit: every order paid here is paid at WeChat Pay with the same transaction")
	  or diag("not paid at WeChat Pay: @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)]");
}

1;
