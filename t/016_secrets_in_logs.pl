# No bad merchant row puts a secret into the server log or the client's
# error: every kind of refusal, logged at debug1 with the failing
# statement's line (log_min_error_statement) on, and neither the API key nor
# a PEM appears.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use WxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = wx_node('secrets', log_min_messages => 'debug1', log_min_error_statement => 'error',
	log_error_verbosity => 'verbose', log_statement => 'none');
my $key = 'SECRETSECRETSECRETSECRETSECRET42';
my $pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ\n-----END PRIVATE KEY-----";
my $cert = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----";
$node->safe_psql('postgres', "INSERT INTO wxpay.merchants (mch_id, appid, api_key, cert_pem, key_pem)"
	. " VALUES ('m1', 'wx1', '$key', '$cert', '$pem')");
my $log_start = -s $node->logfile;

my @bad = (
	[ 'a null mch_id', "INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES (NULL, 'wx1', '$key')" ],
	[ 'a bad mch_id', "INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES ('m 2', 'wx1', '$key')" ],
	[ 'a null appid', "INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES ('m2', NULL, '$key')" ],
	[ 'a bad appid', "INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES ('m2', 'wx 1', '$key')" ],
	[ 'a short key', "INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES ('m2', 'wx1', '${key}x')" ],
	[ 'a bad sign_type', "INSERT INTO wxpay.merchants (mch_id, appid, api_key, sign_type) VALUES ('m2', 'wx1', '$key', 'SHA1')" ],
	[ 'a notify_url with a query', "UPDATE wxpay.merchants SET notify_url = 'https://shop.example.com/notify?x=1' WHERE mch_id = 'm1'" ],
	[ 'a plain-http api_base', "UPDATE wxpay.merchants SET api_base = 'http://api.example.com' WHERE mch_id = 'm1'" ],
	[ 'a null api_base', "UPDATE wxpay.merchants SET api_base = NULL WHERE mch_id = 'm1'" ],
	[ 'a key without its certificate', "UPDATE wxpay.merchants SET cert_pem = NULL WHERE mch_id = 'm1'" ],
	[ 'a null created_at', "UPDATE wxpay.merchants SET created_at = NULL WHERE mch_id = 'm1'" ],
	[ 'a null sign_type', "UPDATE wxpay.merchants SET sign_type = NULL WHERE mch_id = 'm1'" ],
);
for my $case (@bad)
{
	my ($what, $sql) = @$case;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	isnt($ret, 0, "$what is refused");
	unlike($err, qr/SECRETSECRET|BEGIN PRIVATE|BEGIN CERT|Failing row/, "and the client's error shows no secret ($what)");
}
my $log = substr(slurp_file($node->logfile), $log_start);
like($log, qr/ERROR:  23514: notify_url .* of merchant 'm1' must be/, 'the refusals are in the log (debug1, verbose)');
unlike($log, qr/SECRETSECRET/, 'the server log has no API key');
unlike($log, qr/BEGIN PRIVATE KEY|MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw/, 'the server log has no private key');
unlike($log, qr/Failing row contains/, 'no constraint echoed a row');
is($node->safe_psql('postgres', "SELECT api_key = '$key' AND notify_url IS NULL FROM wxpay.merchants WHERE mch_id = 'm1'"),
	't', 'the merchant is unchanged');

done_testing();
