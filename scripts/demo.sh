#!/usr/bin/env bash
# The whole pg_wxpay flow on a throwaway cluster and the WeChat Pay
# simulator: merchants, APP / JSAPI / NATIVE orders and their client
# parameters, a payment notified over HTTP, a payment whose notification is
# lost and that the worker reconciles, a refund over mutual TLS with its
# encrypted notification, and the rows a DBA would look at.  Ends with a
# check that each step did what it said; exits non-zero otherwise.
#
# Works from any directory, as root: everything postgres runs or reads
# lives in a private directory postgres owns.
set -euo pipefail
WX_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WX_ROOT"
. scripts/lib.sh
wx_lock

bash scripts/setup.sh
echo "== build and install (about 15 s on 2 cores the first time)"
make -s >/dev/null
make -s install >/dev/null

wx_workdir demo
work=$WX_WORK
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	wx_cluster_stop
	cd /
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work"		# nothing below needs the checkout's directory

pgport=$(wx_free_port)
receiver_port=$(wx_free_port)

echo "== a throwaway cluster on port $pgport"
wx_cluster_start "$pgport" <<<"wxpay.poll_interval = '1s'"
psql() { wx_psql "$@"; }
psql -c 'CREATE EXTENSION wxpay'

echo "== the WeChat Pay simulator and the notify endpoint"
wx_sim_start "$work/sim" "$work/sim.log" --notify-scale 0.01 --refund-delay-ms 1500
pids+=("$WX_SIM_PID")
sim="https://127.0.0.1:$WX_SIM_PORT"
# The receiver runs as postgres (it connects over the socket as postgres),
# so it runs from a copy postgres can read.
install -o postgres -m 644 "$WX_ROOT/sim/notify_receiver.py" "$work/notify_receiver.py"
wx_as_pg_bg "$work/receiver.log" /usr/bin/python3 "$work/notify_receiver.py" --port "$receiver_port" --quiet \
	--dsn "host=$work port=$pgport dbname=postgres"
pids+=("$WX_BG_PID")
wx_wait_listening "$receiver_port" "$WX_BG_PID" || wx_fail "the notify receiver did not start" "$work/receiver.log"
echo "simulator at $sim, notify endpoint at http://127.0.0.1:$receiver_port/ (both answering)"

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
# Wait up to $1 seconds until the query $2 answers t.
wait_for() {
	local deadline=$((SECONDS + $1))
	until [ "$(psql -Atc "$2")" = t ]; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

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
wait_for 20 "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'DEMO-APP-1'" ||
	echo "(DEMO-APP-1 is not paid after 20 s)"
show "SELECT id, kind, outcome, out_trade_no, transaction_id, left(body, 60) || '...' AS body FROM wxpay.notifications ORDER BY id"

step "DEMO-JSAPI-1 is paid but its notification is lost: the worker's orderquery finds it"
simctl -X POST "$sim/_sim/pay" -d '{"mch_id":"1900000110","out_trade_no":"DEMO-JSAPI-1","notify":false}' >/dev/null
wait_for 30 "SELECT state = 'SUCCESS' FROM wxpay.orders WHERE out_trade_no = 'DEMO-JSAPI-1'" ||
	echo "(DEMO-JSAPI-1 is not paid after 30 s)"
show "SELECT out_trade_no, state, transaction_id, paid_at, query_count FROM wxpay.orders WHERE out_trade_no = 'DEMO-JSAPI-1'"

step "Refund 300 fen of DEMO-APP-1 over mutual TLS; its encrypted notification wakes the worker, whose refundquery confirms it"
show "SELECT wxpay_refund('1900000109', 'DEMO-APP-1', 'DEMO-REFUND-1', 300,
      '{\"refund_desc\": \"one bag returned\", \"notify_url\": \"http://127.0.0.1:$receiver_port/refund\"}') ->> 'refund_id' AS refund_id"
wait_for 30 "SELECT state = 'SUCCESS' FROM wxpay.refunds WHERE out_refund_no = 'DEMO-REFUND-1'" ||
	echo "(DEMO-REFUND-1 is not confirmed after 30 s)"
refused=$(show "SELECT wxpay_refund('1900000109', 'DEMO-APP-1', 'DEMO-REFUND-2', 600)" 2>&1 || true)
echo "$refused" | sed 's/^/  (refused, as it must be) /'

step "What a DBA looks at"
show "SELECT mch_id, out_trade_no, trade_type, total_fee, state, transaction_id, paid_at FROM wxpay.orders ORDER BY created_at"
show "SELECT out_trade_no, old_state, new_state, source, created_at FROM wxpay.order_events ORDER BY id"
show "SELECT out_refund_no, out_trade_no, refund_fee, state, refund_id, success_time FROM wxpay.refunds"
show "SELECT out_refund_no, old_state, new_state, source FROM wxpay.refund_events ORDER BY id"
show "SELECT kind, outcome, count(*) FROM wxpay.notifications GROUP BY 1, 2 ORDER BY 1, 2"
show "SELECT mch_id, out_trade_no, state, next_action, next_query_at, query_count, last_error FROM wxpay.worker_status"
show "SELECT * FROM wxpay.merchant_info"

step "Self-check: did each step do what it said?"
failed=0
check() {
	if [ "$(psql -Atc "$2")" = t ]; then echo "ok   $1"; else echo "FAIL $1"; failed=$((failed + 1)); fi
}
check "the payment notification for DEMO-APP-1 was accepted" \
	"SELECT EXISTS (SELECT 1 FROM wxpay.notifications WHERE kind = 'pay' AND outcome = 'accepted' AND out_trade_no = 'DEMO-APP-1')"
check "DEMO-APP-1 was paid by that notification" \
	"SELECT EXISTS (SELECT 1 FROM wxpay.order_events WHERE out_trade_no = 'DEMO-APP-1' AND new_state = 'SUCCESS' AND source = 'notify')"
check "DEMO-JSAPI-1, its notification lost, was paid by the worker's query" \
	"SELECT EXISTS (SELECT 1 FROM wxpay.order_events WHERE out_trade_no = 'DEMO-JSAPI-1' AND new_state = 'SUCCESS' AND source = 'query')"
check "the refund notification for DEMO-REFUND-1 was accepted, as the trigger of a refundquery" \
	"SELECT EXISTS (SELECT 1 FROM wxpay.notifications WHERE kind = 'refund' AND outcome = 'accepted' AND out_refund_no = 'DEMO-REFUND-1')"
check "DEMO-REFUND-1 was confirmed by the verified refundquery answer (a notification alone is no proof)" \
	"SELECT EXISTS (SELECT 1 FROM wxpay.refund_events WHERE out_refund_no = 'DEMO-REFUND-1' AND new_state = 'SUCCESS' AND source = 'query')"
check "the second refund, over the order's total, was refused and not recorded" \
	"SELECT NOT EXISTS (SELECT 1 FROM wxpay.refunds WHERE out_refund_no = 'DEMO-REFUND-2')"
grep -q ERROR <<<"$refused" || { echo "FAIL the second refund was not refused"; failed=$((failed + 1)); }
if [ "$failed" -ne 0 ]; then
	echo "demo: $failed check(s) failed"
	for log in receiver.log sim.log postgres.log; do echo "---- $log"; tail -n 40 "$work/$log"; done
	exit 1
fi
echo
echo "demo finished, every check passed; the cluster and the simulator are removed on exit"
