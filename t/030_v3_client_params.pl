# API v3 client parameters (wxpay-v3-api.md §7): a v3 merchant's
# wxpay_jsapi_params, wxpay_jssdk_params and wxpay_app_params are signed
# with its apiclient key (RSA-SHA256 over four lines), checked here with
# the merchant's public key by openssl, and byte for byte against openssl's
# own signature of the same message (PKCS#1 v1.5 is deterministic).  A v3
# merchant without a usable key gets an error, not an unsigned answer.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WxTest;

my $vectors = "$FindBin::RealBin/../test/vectors/v3";
my $node = wx_node('v3params');
my $dir = tempdir(CLEANUP => 1);

# The documentation's sample merchant key, and a certificate of it.
$node->safe_psql('postgres', sprintf(
	"INSERT INTO wxpay.merchants (mch_id, appid, api_key, protocol, cert_pem, key_pem)"
	  . " VALUES ('1900007291', 'wx2421b1c4370ec43b', '%s', 'v3', %s, %s);"
	  . " INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES ('1900007291', 'a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb');",
	$TEST_KEY, map { "'" . slurp_file("$vectors/$_") . "'" } 'serial_leading_zero_cert.pem', 'doc_merchant_key.pem'));

# Whether openssl verifies b64 over message with the merchant's public key,
# and openssl's own signature of the message with its private key.
sub openssl_check
{
	my ($message, $b64) = @_;
	my ($msg, $sig) = ("$dir/msg", "$dir/sig");
	open(my $f, '>', $msg) or die;
	binmode $f;
	print $f $message;
	close $f;
	open($f, '>', $sig) or die;
	binmode $f;
	print $f decode_base64($b64);
	close $f;
	my $verified = `openssl dgst -sha256 -verify $vectors/doc_merchant_pub.pem -signature $sig $msg 2>&1`;
	my $own = encode_base64(scalar `openssl dgst -sha256 -sign $vectors/doc_merchant_key.pem $msg`, '');
	return ($verified =~ /^Verified OK/ ? 1 : 0, $own);
}

my $prepay = 'wx201410272009395522657a690389285100';
my $jsapi = decode_json($node->safe_psql('postgres', "SELECT wxpay_jsapi_params('1900007291', '$prepay')"));
is_deeply([ sort keys %$jsapi ], [qw(appId nonceStr package paySign signType timeStamp)], 'JSAPI: the six fields');
is($jsapi->{signType}, 'RSA', 'signType is RSA for a v3 merchant');
is($jsapi->{package}, "prepay_id=$prepay", 'package is prepay_id=...');
like($jsapi->{timeStamp}, qr/^\d{10}$/, 'timeStamp in Unix seconds');
my $message = join('', map { "$_\n" } @$jsapi{qw(appId timeStamp nonceStr package)});
my ($ok, $own) = openssl_check($message, $jsapi->{paySign});
ok($ok, 'paySign verifies with the merchant public key over appId, timeStamp, nonceStr, package');
is($jsapi->{paySign}, $own, 'and equals openssl\'s signature of the same message');

my $jssdk = decode_json($node->safe_psql('postgres', "SELECT wxpay_jssdk_params('1900007291', '$prepay')"));
($ok) = openssl_check(join('', map { "$_\n" } @$jssdk{qw(appId timestamp nonceStr package)}), $jssdk->{paySign});
ok($ok && $jssdk->{signType} eq 'RSA', 'JS-SDK: the same signature over timestamp (lower case)');

my $app = decode_json($node->safe_psql('postgres', "SELECT wxpay_app_params('1900007291', '$prepay')"));
is_deeply([ @$app{qw(appid partnerid prepayid package)} ], [ 'wx2421b1c4370ec43b', '1900007291', $prepay, 'Sign=WXPay' ],
	'APP: appid, partnerid, the bare prepayid and package Sign=WXPay');
$message = join('', map { "$_\n" } @$app{qw(appid timestamp noncestr prepayid)});
($ok, $own) = openssl_check($message, $app->{sign});
ok($ok, 'APP sign verifies over appid, timestamp, noncestr and the bare prepay_id');
is($app->{sign}, $own, 'and equals openssl\'s signature');
($ok) = openssl_check(join('', map { "$_\n" } @$app{qw(appid timestamp noncestr package)}), $app->{sign});
ok(!$ok, 'the package is not what APP signs');

# A v3 merchant with no key pair at all cannot sign: an error, not an answer.
$node->safe_psql('postgres', "INSERT INTO wxpay.merchants (mch_id, appid, api_key, protocol)"
	  . " VALUES ('1900000002', 'wx0002', '$TEST_KEY', 'v3')");
my ($state, $err) = sql_error($node, "SELECT wxpay_jsapi_params('1900000002', '$prepay')");
is($state, '55000', 'a v3 merchant without key_pem: object_not_in_prerequisite_state');
like($err, qr/has no usable key_pem/, 'saying what is missing');

# v2 merchants are unchanged: MD5 over sorted fields.
$node->safe_psql('postgres', "INSERT INTO wxpay.merchants (mch_id, appid, api_key) VALUES ('10000100', 'wxd930ea5d5a258f4f', '$TEST_KEY')");
my $v2 = decode_json($node->safe_psql('postgres', "SELECT wxpay_jsapi_params('10000100', '$prepay')"));
is($v2->{signType}, 'MD5', 'a v2 merchant still gets signType MD5');
like($v2->{paySign}, qr/^[0-9A-F]{32}$/, 'and an MD5 paySign');

done_testing();
