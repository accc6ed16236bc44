#!/usr/bin/env bash
# Runs every test suite of pg_wxpay on this machine, setting up what is
# missing: the core's unit tests under ASan/UBSan, a short libFuzzer pass
# over the core, the simulator's own tests, the regression suite once under
# valgrind, then pg_regress and the TAP tests against temporary instances,
# as the postgres user (initdb refuses root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup.sh

echo "== build (warnings are errors)"
make -s clean >/dev/null
make -s PG_CFLAGS=-Werror
make -s install >/dev/null

echo "== core unit tests (ASan, UBSan)"
make -s unit

echo "== fuzzing the core (libFuzzer, ASan, UBSan), ${FUZZ_SECONDS:-60} s per harness"
make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"

echo "== simulator tests"
(cd sim && /usr/bin/python3 -m unittest -q test_wxsim 2>&1 | tail -n 3)

# pg_regress and TAP write next to the sources, so they run in a copy the
# postgres user owns.
work=$(mktemp -d /tmp/wxpay-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
tar --exclude=.git -cf - . | tar -xf - -C "$work"
chown -R postgres: "$work"

echo "== pg_regress under valgrind"
bash scripts/valgrind.sh

echo "== pg_regress and TAP (make installcheck)"
if ! runuser -u postgres -- make -s -C "$work" installcheck; then
	for f in "$work"/regression.diffs "$work"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "---- $f"; tail -n 200 "$f"; }
	done
	exit 1
fi
echo "all suites passed"
