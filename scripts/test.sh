#!/usr/bin/env bash
# Runs every test suite of pg_wxpay on this machine, setting up what is
# missing: the core's unit tests under ASan/UBSan, a short libFuzzer pass
# over the core, the simulator's own tests, the Debian package (built, then
# CREATE EXTENSION and pg_regress against its files), the regression suite
# once under valgrind, then pg_regress and the TAP tests against temporary
# instances, as the postgres user (initdb refuses root).
#
# One line per stage with the time since the start; about 5 minutes on 2
# cores, the suites one after the other.  The whole run holds
# /tmp/wxpay-install.lock (make install writes system-wide), so two runs on
# one machine wait for each other instead of overwriting each other's files.
# Works from any directory: postgres runs only in directories it owns.
# Knobs: FUZZ_SECONDS (default 15 per harness; `make fuzz` alone runs 60),
# WXPAY_SKIP_DEB=1 to leave out the Debian package.
set -euo pipefail
WX_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WX_ROOT"
. scripts/lib.sh
wx_lock
fuzz_seconds=${FUZZ_SECONDS:-15}

wx_stage "setup" "installs what is missing: the first time about 250 MB to download, and a minute"
bash scripts/setup.sh
export WXPAY_SETUP_DONE=1

wx_stage "build with warnings as errors, and install" "about 10 s"
make -s clean >/dev/null
make -s PG_CFLAGS=-Werror
make -s install >/dev/null

wx_stage "core unit tests (ASan, UBSan)" "a few seconds"
make -s unit

nfuzz=$(make -s --no-print-directory print-fuzz-targets | wc -w)
wx_stage "fuzzing the core (libFuzzer, ASan, UBSan)" "$nfuzz harnesses x $fuzz_seconds s, about $((nfuzz * fuzz_seconds + 5)) s"
make -s fuzz FUZZ_SECONDS="$fuzz_seconds"

# pg_regress and TAP write next to the sources, so they run in a copy the
# postgres user owns.
wx_workdir test
work=$WX_WORK
trap 'cd /; rm -rf "$work"' EXIT
mkdir "$work/tree"
tar --exclude=.git --exclude=./dist -cf - . | tar -xf - -C "$work/tree"
chown -R postgres: "$work"

wx_stage "simulator tests" "about 5 s"
(cd sim && /usr/bin/python3 -m unittest -q test_wxsim test_wxsim_v3) >"$work/sim.log" 2>&1 || { cat "$work/sim.log"; exit 1; }
tail -n 3 "$work/sim.log"

if [ "${WXPAY_SKIP_DEB:-}" != 1 ]; then
	wx_stage "Debian package: build it, then CREATE EXTENSION and pg_regress on its files" "about 15 s"
	DEB_OUT=$work/dist bash scripts/deb.sh
	bash scripts/deb-test.sh "$work"/dist/postgresql-15-wxpay_*.deb >"$work/deb-test.log" 2>&1 ||
		{ cat "$work/deb-test.log"; exit 1; }
	grep '^deb-test: ' "$work/deb-test.log"
fi

wx_stage "pg_regress under valgrind" "about 2 minutes"
bash scripts/valgrind.sh

wx_stage "pg_regress and TAP (make installcheck)" "about 100 s"
if ! wx_as_pg make -s -C "$work/tree" installcheck PROVE_FLAGS="--timer"; then
	for f in "$work"/tree/regression.diffs "$work"/tree/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "---- $f"; tail -n 200 "$f"; }
	done
	exit 1
fi
wx_stage_end
echo "all suites passed in $(wx_clock)"
