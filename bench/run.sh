#!/usr/bin/env bash
# pg_wxpay benchmarks in one command: every hot path against its baseline
# and its limit, on one throwaway cluster and two WeChat Pay simulators
# (one answering at once, one after a fixed 20 ms).  Prints the table at the
# end and writes bench/RESULTS.md.  Run as root: `bash bench/run.sh` or
# `make bench`.  Knobs (environment): BENCH_QUICK=1 for a fast smoke run
# with small sizes, BENCH_PROFILE=0 to skip the perf profiles.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup.sh
# perf for the profiles of missed targets; optional, never fatal.
if ! command -v perf >/dev/null 2>&1 && [ "${BENCH_PROFILE:-1}" != 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 ||
		echo "bench: perf is not available; profiles will be skipped"
fi

echo "== build and install"
make -s >/dev/null
make -s install >/dev/null

bindir=$(pg_config --bindir)
work=$(mktemp -d /tmp/wxpay-bench.XXXXXX)
chown postgres: "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	runuser -u postgres -- "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== the C signing core alone, and the worker's libcurl pattern alone"
gcc -O2 -Wall -Wextra -Isrc -o "$work/sign_core" bench/sign_core.c src/wx_sign.c -lssl -lcrypto
gcc -O2 -Wall -Wextra -o "$work/curl_pool" bench/curl_pool.c -lcurl

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgport=$(free_port)

echo "== throwaway cluster on port $pgport"
runuser -u postgres -- "$bindir/initdb" -D "$work/data" -E UTF8 --locale=C -A trust >/dev/null
# Durability stays on (fsync, synchronous_commit): a notification is
# acknowledged to WeChat Pay only once it is on disk.  Big enough buffers
# that the 1M-row signing tables stay in shared memory, no JIT, no
# parallel query (figures are per core), and no checkpoint mid-run.
cat >> "$work/data/postgresql.conf" <<CONF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'wxpay'
max_connections = 100
shared_buffers = '2GB'
jit = off
max_parallel_workers_per_gather = 0
max_wal_size = '8GB'
checkpoint_timeout = '30min'
wxpay.poll_interval = '1h'
CONF
runuser -u postgres -- "$bindir/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w start >/dev/null
runuser -u postgres -- "$bindir/psql" -h "$work" -p "$pgport" -d postgres -X -q -v ON_ERROR_STOP=1 \
	-c 'CREATE EXTENSION wxpay' -c 'CREATE EXTENSION pgcrypto'

echo "== WeChat Pay simulators: immediate answers, and 20 ms answers"
for sim in sim0:0 sim20:20; do
	name=${sim%%:*} latency=${sim#*:}
	/usr/bin/python3 sim/wxsim.py --dir "$work/$name" --port 0 --latency-ms "$latency" --quiet \
		>"$work/$name.log" 2>&1 &
	pids+=($!)
done
for name in sim0 sim20; do
	for _ in $(seq 100); do [ -s "$work/$name/port" ] && break; sleep 0.1; done
	[ -s "$work/$name/port" ] || { echo "bench: simulator $name did not start"; cat "$work/$name.log"; exit 1; }
done

/usr/bin/python3 bench/bench.py --work "$work" --pgport "$pgport" --bindir "$bindir" \
	--sign-core "$work/sign_core" --curl-pool "$work/curl_pool" --sim-pids "${pids[0]},${pids[1]}" --results bench/RESULTS.md
