#!/usr/bin/env bash
# pg_wxpay benchmarks in one command: every hot path against its baseline
# and its limit, on one throwaway cluster and two WeChat Pay simulators
# (one answering at once, one after a fixed 20 ms).  Prints the table at the
# end and writes bench/RESULTS.md.  Run as root: `bash bench/run.sh` or
# `make bench`.  Knobs (environment): BENCH_QUICK=1 for a fast smoke run
# with small sizes, BENCH_PROFILE=0 to skip the perf profiles, BENCH_ONLY=a,b
# to run some sections only (the others keep their last figures, dated).
# Section 8 (sharding, bench/proxy_bench.py) starts three shard clusters and
# a proxy cluster of its own in the work directory, beside this one.
set -euo pipefail
WX_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WX_ROOT"
. scripts/lib.sh
wx_lock

bash scripts/setup.sh
# perf for the profiles of missed targets; optional, never fatal.
if ! command -v perf >/dev/null 2>&1 && [ "${BENCH_PROFILE:-1}" != 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 ||
		echo "bench: perf is not available; profiles will be skipped"
fi

echo "== build and install"
make -s >/dev/null
make -s install >/dev/null

wx_workdir bench
work=$WX_WORK
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wx_cluster_stop
	cd /
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== the C signing core alone, and the worker's libcurl pattern alone"
gcc -O2 -Wall -Wextra -Isrc -o "$work/sign_core" bench/sign_core.c src/wx_sign.c -lssl -lcrypto
gcc -O2 -Wall -Wextra -o "$work/curl_pool" bench/curl_pool.c -lcurl
gcc -O2 -Wall -Wextra -Isrc -o "$work/rsa_core" bench/rsa_core.c src/wx_rsa.c src/wx_v3.c src/wx_aes.c src/wx_sign.c -lssl -lcrypto
cp test/vectors/v3/doc_merchant_key.pem "$work/rsa_core_key.pem"
cd "$work"		# nothing below needs the checkout's directory

pgport=$(wx_free_port)
echo "== throwaway cluster on port $pgport"
# Durability stays on (fsync, synchronous_commit): a notification is
# acknowledged to WeChat Pay only once it is on disk.  Big enough buffers
# that the 1M-row signing tables stay in shared memory, no JIT, no
# parallel query (figures are per core), and no checkpoint mid-run.
wx_cluster_start "$pgport" <<CONF
max_connections = 100
shared_buffers = '2GB'
jit = off
max_parallel_workers_per_gather = 0
max_wal_size = '8GB'
checkpoint_timeout = '30min'
track_commit_timestamp = on
wxpay.poll_interval = '1h'
CONF
bindir=$WX_BINDIR
wx_psql -c 'CREATE EXTENSION wxpay' -c 'CREATE EXTENSION pgcrypto'

echo "== WeChat Pay simulators: immediate answers, and 20 ms answers"
for sim in sim0:0 sim20:20; do
	name=${sim%%:*} latency=${sim#*:}
	wx_sim_start "$work/$name" "$work/$name.log" --latency-ms "$latency"
	pids+=("$WX_SIM_PID")
done

/usr/bin/python3 "$WX_ROOT/bench/bench.py" --work "$work" --pgport "$pgport" --bindir "$bindir" \
	--sign-core "$work/sign_core" --rsa-core "$work/rsa_core" --curl-pool "$work/curl_pool" --sim-pids "${pids[0]},${pids[1]}" --results "$WX_ROOT/bench/RESULTS.md" \
	--only "${BENCH_ONLY:-}"
