#!/usr/bin/env bash
# The whole pg_wxpay flow on a throwaway cluster and the WeChat Pay
# simulator: merchants, APP / JSAPI / NATIVE orders and their client
# parameters, a payment notified over HTTP, a payment whose notification is
# lost and that the worker reconciles, a refund over mutual TLS with its
# encrypted notification, and the rows a DBA would look at.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup.sh
echo "== build and install"
make -s >/dev/null
make -s install >/dev/null

bindir=$(pg_config --bindir)
work=$(mktemp -d /tmp/wxpay-demo.XXXXXX)
chown postgres: "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	runuser -u postgres -- "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgport=$(free_port)
receiver_port=$(free_port)

echo "== throwaway cluster on port $pgport"
runuser -u postgres -- "$bindir/initdb" -D "$work/data" -E UTF8 --locale=C -A trust >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'wxpay'
wxpay.poll_interval = '1s'
CONF
runuser -u postgres -- "$bindir/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w start >/dev/null
psql() { runuser -u postgres -- "$bindir/psql" -h "$work" -p "$pgport" -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -c 'CREATE EXTENSION wxpay'

echo "== WeChat Pay simulator and the notify endpoint"
/usr/bin/python3 sim/wxsim.py --dir "$work/sim" --port 0 --notify-scale 0.01 --refund-delay-ms 1500 --quiet \
	>"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/sim/port" ] && break; sleep 0.1; done
sim="https://127.0.0.1:$(cat "$work/sim/port")"
runuser -u postgres -- /usr/bin/python3 sim/notify_receiver.py --port "$receiver_port" --quiet \
	--dsn "host=$work port=$pgport dbname=postgres" >"$work/receiver.log" 2>&1 &
pids+=($!)
echo "simulator at $sim, notify endpoint at http://127.0.0.1:$receiver_port/"

simctl() { curl -sS --fail-with-body --cacert "$work/sim/ca.pem" -H 'Content-Type: application/json' "$@"; }
# Register a merchant at the simulator, then in wxpay.merchants with its client certificate.
merchant() {
	local mch=$1 appid=$2 key=$3 sign_type=$4
	simctl -X POST "$sim/_sim/merchants" \
		-d "{\"mch_id\":\"$mch\",\"appid\":\"$appid\",\"api_key\":\"$key\",\"sign_type\":\"$sign_type\"}" \
		>"$work/creds-$mch.json"
	psql -v mch="$mch" -v appid="$appid" -v key="$key" -v sign_type="$sign_type" -v base="$sim" \
		-v notify="http://127.0.0.1:$receiver_port/pay" -v ca="$(cat "$work/sim/ca.pem")" \
		-v cert="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cert_pem"])' "$work/creds-$mch.json")" \
		-v pkey="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_pem"])' "$work/creds-$mch.json")" <<'SQL'
INSERT INTO wxpay.merchants (mch_id, appid, api_key, sign_type, notify_url, api_base, ca_pem, cert_pem, key_pem)
VALUES (:'mch', :'appid', :'key', :'sign_type', :'notify', :'base', :'ca', :'cert', :'pkey');
SQL
}
merchant 1900000109 wx8888888888888888 192006250b4c09247ec02edce69f6a2d MD5
merchant 1900000110 wx9999999999999999 8934e7d15453e97507ef794cf7b0519d HMAC-SHA256

step() { printf '\n== %s\n' "$*"; }
show() { psql -P pager=off -c "$1"; }

step "An APP order (MD5 merchant) and what the app passes to the WeChat SDK"
show "SELECT wxpay_unifiedorder('1900000109', 'DEMO-APP-1', 888, 'Demo Shop-Coffee beans', '203.0.113.7') AS unifiedorder"
show "SELECT jsonb_pretty(wxpay_app_params('1900000109', prepay_id)) AS app_params FROM wxpay.orders WHERE out_trade_no = 'DEMO-APP-1'"

step "A JSAPI order (HMAC-SHA256 merchant) and its getBrandWCPayRequest parameters"
show "SELECT wxpay_unifiedorder('1900000110', 'DEMO-JSAPI-1', 1999, 'Demo Shop-Tea', '203.0.113.8', 'JSAPI',
      '{\"openid\": \"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\", \"attach\": \"table 12\"}') AS unifiedorder"
show "SELECT jsonb_pretty(wxpay_jsapi_params('1900000110', prepay_id)) AS jsapi_params FROM wxpay.orders WHERE out_trade_no = 'DEMO-JSAPI-1'"

step "A NATIVE order: the code_url to render as a QR code"
show "SELECT wxpay_unifiedorder('1900000109', 'DEMO-QR-1', 100, 'Demo Shop-Mug', '198.51.100.1', 'NATIVE', '{\"product_id\": \"mug-1\"}') ->> 'code_url' AS code_url"

step "The payer pays DEMO-APP-1; WeChat Pay notifies the endpoint, which hands the body to wxpay_handle_notify"
simctl -X POST "$sim/_sim/pay" -d '{"mch_id":"1900000109","out_trade_no":"DEMO-APP-1","notify":true}' >/dev/null
for _ in $(seq 100); do [ "$(psql -Atc "SELECT state FROM wxpay.orders WHERE out_trade_no = 'DEMO-APP-1'")" = SUCCESS ] && break; sleep 0.1; done
show "SELECT id, kind, outcome, out_trade_no, transaction_id, left(body, 60) || '...' AS body FROM wxpay.notifications ORDER BY id"

step "DEMO-JSAPI-1 is paid but its notification is lost: the worker's orderquery finds it"
simctl -X POST "$sim/_sim/pay" -d '{"mch_id":"1900000110","out_trade_no":"DEMO-JSAPI-1","notify":false}' >/dev/null
for _ in $(seq 150); do [ "$(psql -Atc "SELECT state FROM wxpay.orders WHERE out_trade_no = 'DEMO-JSAPI-1'")" = SUCCESS ] && break; sleep 0.2; done
show "SELECT out_trade_no, state, transaction_id, paid_at, query_count FROM wxpay.orders WHERE out_trade_no = 'DEMO-JSAPI-1'"

step "Refund 300 fen of DEMO-APP-1 over mutual TLS; the encrypted refund notification confirms it"
show "SELECT wxpay_refund('1900000109', 'DEMO-APP-1', 'DEMO-REFUND-1', 300,
      '{\"refund_desc\": \"one bag returned\", \"notify_url\": \"http://127.0.0.1:$receiver_port/refund\"}') ->> 'refund_id' AS refund_id"
for _ in $(seq 150); do [ "$(psql -Atc "SELECT state FROM wxpay.refunds WHERE out_refund_no = 'DEMO-REFUND-1'")" = SUCCESS ] && break; sleep 0.2; done
show "SELECT wxpay_refund('1900000109', 'DEMO-APP-1', 'DEMO-REFUND-2', 600)" 2>&1 | sed 's/^/  (refused, as it must be) /' || true

step "What a DBA looks at"
show "SELECT mch_id, out_trade_no, trade_type, total_fee, state, transaction_id, paid_at FROM wxpay.orders ORDER BY created_at"
show "SELECT out_trade_no, old_state, new_state, source, created_at FROM wxpay.order_events ORDER BY id"
show "SELECT out_refund_no, out_trade_no, refund_fee, state, refund_id, success_time FROM wxpay.refunds"
show "SELECT out_refund_no, old_state, new_state, source FROM wxpay.refund_events ORDER BY id"
show "SELECT kind, outcome, count(*) FROM wxpay.notifications GROUP BY 1, 2 ORDER BY 1, 2"
show "SELECT mch_id, out_trade_no, state, next_action, next_query_at, query_count, last_error FROM wxpay.worker_status"
show "SELECT * FROM wxpay.merchant_info"
echo
echo "demo finished; the cluster and the simulator are removed on exit"
