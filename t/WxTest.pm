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
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(wx_node wx_sim sim_call wx_merchant sql_error slurp_file
  $TEST_KEY);

our $TEST_KEY = '192006250b4c09247ec02edce69f6a2d';
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
	for (1 .. 300)
	{
		last if -s "$dir/port";
		select(undef, undef, undef, 0.1);
	}
	die "simulator did not start, see $log" unless -s "$dir/port";
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
	for my $sim (@WxTest::sims)
	{
		eval { $sim->{harness}->signal('TERM'); $sim->{harness}->finish; };
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

# Run SQL expected to fail; returns its SQLSTATE and the whole message.
sub sql_error
{
	my ($node, $sql, %opts) = @_;
	my ($ret, $out, $err) = $node->psql($opts{db} // 'postgres', "\\set VERBOSITY verbose\n$sql",
		extra_params => $opts{user} ? [ '-U', $opts{user} ] : []);
	my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($state // 'none', $err);
}

1;
