#!/usr/bin/env bash
# Runs the pg_regress suite once against a postmaster under Valgrind memcheck
# and fails if any Valgrind error has pg_wxpay code on its stack.
#
# Debian's server is not built with USE_VALGRIND, so palloc chunks are not
# marked: memcheck still sees reads of uninitialised malloc'd memory, invalid
# frees and accesses outside malloc'd blocks (libcurl, OpenSSL, libxml2, our
# malloc use), not overruns inside a memory context block.  Leak checking is
# off: the server frees by memory context and at exit.
set -euo pipefail
WX_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WX_ROOT"
. scripts/lib.sh
wx_lock
start=$SECONDS

[ "${WXPAY_SETUP_DONE:-}" = 1 ] || bash scripts/setup.sh

echo "== build and install"
make -s && make -s install >/dev/null
# In reverse order: each file sets itself up, so the order must not matter.
tests=$(make -s --no-print-directory --eval 'print-regress: ; @echo $(REGRESS)' print-regress | tr ' ' '\n' | tac | tr '\n' ' ')
bindir=$(pg_config --bindir)
pg_regress=$(pg_config --pkglibdir)/pgxs/src/test/regress/pg_regress
port=${VG_PORT:-54329}

# initdb refuses root: cluster, sockets, logs and the copy of the tree
# pg_regress writes into all belong to postgres.  Kept on failure.
wx_workdir valgrind
work=$WX_WORK
data=$work/data vg=$work/vg tree=$work/tree
mkdir -p "$vg" "$tree"
tar --exclude=.git --exclude=./dist -cf - . | tar -xf - -C "$tree"
chown -R postgres: "$work"
cd "$tree"		# from here on postgres can read everything it is handed
as_pg() { runuser -u postgres -- "$@"; }

as_pg "$bindir/initdb" -D "$data" -E UTF8 --locale=C -A trust >/dev/null
{
	cat test/wxpay.conf		# the same settings make installcheck uses
	echo "port = $port"
	echo "listen_addresses = ''"
	echo "unix_socket_directories = '$work'"
	echo "jit = off"		# JIT'd code is opaque to valgrind and only noise
	echo "fsync = off"		# a throwaway cluster; saves time under valgrind
} >>"$data/postgresql.conf"

echo "== postmaster under valgrind (logs in $vg)"
# Forked backends and workers are followed and get their own vg.<pid>.log.
# --num-callers is generous so a fault deep in libxml2/OpenSSL/libcurl still
# shows which of our functions called it.
as_pg valgrind --trace-children=yes --leak-check=no --track-origins=yes \
	--error-exitcode=0 --num-callers=40 \
	--suppressions="$tree/test/valgrind/postgres.supp" \
	--suppressions="$tree/test/valgrind/debian-pg.supp" \
	--log-file="$vg/vg.%p.log" \
	"$bindir/postgres" -D "$data" >"$work/postmaster.log" 2>&1 9>&- &
pm=$!
stop_pm() { as_pg "$bindir/pg_ctl" stop -D "$data" -m fast -t 600 >/dev/null 2>&1 || true; wait "$pm" || true; }
trap 'stop_pm; echo "kept $work"' EXIT

for _ in $(seq 600); do		# startup under valgrind takes tens of seconds
	"$bindir/pg_isready" -q -h "$work" -p "$port" && break
	kill -0 "$pm" 2>/dev/null || { cat "$work/postmaster.log"; exit 1; }
	sleep 1
done
"$bindir/pg_isready" -q -h "$work" -p "$port" || { echo "postmaster did not start"; exit 1; }

echo "== pg_regress $tests"
regress_rc=0
# The fuzz file scales its cases down: under valgrind each call is ~50x slower.
as_pg env PGOPTIONS="-c regress.fuzz_scale=0.05" timeout 3h "$pg_regress" --inputdir=. --bindir="$bindir" \
	--host="$work" --port="$port" --dbname=contrib_regression $tests || regress_rc=$?
if [ "$regress_rc" -ne 0 ] && [ -f regression.diffs ]; then head -n 100 regression.diffs; fi

stop_pm
trap - EXIT

# An error record is a run of "==pid== " lines from its headline to the next
# empty one ("Thread N:" may come first).  It involves us if any frame, its
# own or an origin/allocation stack, is in wxpay.so or one of src/*.c.
ours_re="wxpay\\.so|[(/]($(cd src && ls *.c | sed 's/\.c$//' | paste -sd'|'))\\.c:[0-9]+"
kinds='^(Invalid (read|write|free)|Mismatched free|Conditional jump|Use of uninitialised|Syscall param|Source and destination overlap|Argument .* fishy|Jump to the invalid|Process terminating)'
procs=$(find "$vg" -name 'vg.*.log' | wc -l)
read -r total ours suppressed < <(awk -v ours_re="$ours_re" -v kinds="$kinds" -v stacks="$work/ours.txt" '
	function flush() {
		if (head ~ kinds) {
			total++
			if (rec ~ ours_re && ++ours <= 5) printf "---- %s\n%s\n", file, rec > stacks
		}
		rec = head = ""
	}
	FNR == 1 { flush() }
	{ sub(/^==[0-9]+== ?/, "") }
	/^ERROR SUMMARY:/ { suppressed += $9 }
	/^$/ { flush(); next }
	{
		if (rec == "") file = FILENAME
		if (head == "" && !/^Thread [0-9]+/) head = $0
		rec = rec $0 "\n"
	}
	END { flush(); print total + 0, ours + 0, suppressed + 0 }' "$vg"/vg.*.log)
: "${ours:?could not scan the valgrind logs}"

echo "== valgrind summary ($((SECONDS - start)) s)"
echo "processes traced:          $procs"
echo "valgrind error records:    $total (and $suppressed known-noise errors suppressed)"
echo "errors involving wxpay:    $ours"
echo "pg_regress:                $([ "$regress_rc" -eq 0 ] && echo passed || echo "FAILED ($regress_rc)")"
if [ "$ours" -ne 0 ] || [ "$regress_rc" -ne 0 ]; then
	[ "$ours" -eq 0 ] || { echo "== first $((ours < 5 ? ours : 5)) errors involving wxpay"; cat "$work/ours.txt"; }
	echo "logs kept in $work"
	exit 1
fi
rm -rf "$work"
