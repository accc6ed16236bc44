#!/usr/bin/env bash
# Installs what pg_wxpay needs to build, test, demo and package on Debian
# 12, once.  Idempotent: apt runs only when a package is missing.  On a
# fresh Debian 12 (minbase) that is about 250 MB to download and a minute
# more on 2 cores; it prints a line per package group and apt's progress
# every 25 packages (the whole apt output goes to /tmp/wxpay-setup.log).
set -euo pipefail

groups=(
	"build tools:make gcc clang libclang-rt-14-dev pkg-config git ca-certificates curl"
	"PostgreSQL 15:postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-contrib"
	"libraries pg_wxpay links:libcurl4-openssl-dev libxml2-dev libssl-dev zlib1g-dev"
	"test and benchmark tools (TAP, valgrind, the simulator's and the seed's Python, PL/Proxy):libipc-run-perl valgrind python3 python3-cryptography python3-psycopg2 python3-requests python3-xmltodict postgresql-15-plproxy"
	"Debian packaging (pg_buildext, debhelper):build-essential debhelper postgresql-server-dev-all"
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing_total=0
for g in "${groups[@]}"; do
	for p in ${g#*:}; do installed "$p" || missing_total=$((missing_total + 1)); done
done
[ "$missing_total" -gt 0 ] || exit 0

export DEBIAN_FRONTEND=noninteractive
log=/tmp/wxpay-setup.log
: >"$log"
echo "setup: $missing_total packages missing; apt's whole output goes to $log"
echo "setup: apt-get update"
if ! apt-get update >>"$log" 2>&1; then
	tail -n 20 "$log"
	echo "setup: apt-get update failed (full log: $log)" >&2
	exit 1
fi

n=0
for g in "${groups[@]}"; do
	n=$((n + 1))
	name=${g%%:*} missing=()
	for p in ${g#*:}; do installed "$p" || missing+=("$p"); done
	[ ${#missing[@]} -gt 0 ] || continue
	# With their dependencies: the count apt will unpack.
	total=$(apt-get install -s --no-install-recommends "${missing[@]}" 2>/dev/null | grep -c '^Inst ' || true)
	echo "setup: [$n/${#groups[@]}] $name: ${missing[*]} ($total packages with dependencies)"
	if ! apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" 2>&1 |
		tee -a "$log" | awk -v total="$total" '
			/^Need to get/ { print "  " $0; fflush() }
			/^Get:/ { if (++got % 25 == 0) { printf "  downloaded %d of %d packages\n", got, total; fflush() } }
			/^Fetched/ { print "  " $0; fflush() }
			/^Setting up / { if (++set % 25 == 0) { printf "  set up %d of %d\n", set, total; fflush() } }
			/^(E|W): / { print "  " $0; fflush() }
			END { if (set) printf "  set up %d of %d: done\n", set, total }'; then
		tail -n 20 "$log"
		echo "setup: apt-get install failed (full log: $log)" >&2
		exit 1
	fi
done
