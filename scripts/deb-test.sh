#!/usr/bin/env bash
# Tests the Debian package postgresql-15-wxpay: what it contains, then
# CREATE EXTENSION and the pg_regress suite against the package's files.
#
#   bash scripts/deb-test.sh [FILE.deb]   the .deb (default: the newest in
#       dist/), unpacked with dpkg-deb -x into a private copy of the
#       PostgreSQL 15 server from which every wxpay file was left out.
#       PostgreSQL finds its share and lib directories relative to its
#       binaries, so that server sees only the package's files, whatever is
#       installed system-wide.  Installs nothing system-wide.
#   bash scripts/deb-test.sh --installed   the package as installed (apt),
#       for autopkgtest (debian/tests).
set -euo pipefail
WX_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WX_ROOT"
. scripts/lib.sh

pgbin=/usr/lib/postgresql/15/bin pglib=/usr/lib/postgresql/15/lib pgshare=/usr/share/postgresql/15
fail() { echo "deb-test: $*" >&2; exit 1; }

wx_workdir debtest
trap 'wx_cluster_stop; cd /; rm -rf "$WX_WORK"' EXIT
if [ "${1:-}" = --installed ]; then
	prefix=
	deb="the installed package"
	dpkg-query -W -f='${Status}' postgresql-15-wxpay 2>/dev/null | grep -q 'install ok installed' ||
		fail "postgresql-15-wxpay is not installed"
else
	deb=${1:-$(ls -t dist/postgresql-15-wxpay_*.deb 2>/dev/null | head -n 1)}
	[ -f "$deb" ] || fail "no .deb given and none in dist/ (build one: bash scripts/deb.sh)"
	deb=$(realpath "$deb")
	echo "deb-test: $deb"

	# What the package is and holds.
	[ "$(dpkg-deb -f "$deb" Package)" = postgresql-15-wxpay ] || fail "the package is not postgresql-15-wxpay"
	dpkg-deb -f "$deb" Depends | grep -q 'postgresql-15' || fail "the package does not depend on postgresql-15"
	dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' >"$WX_WORK/contents"
	for f in $pglib/wxpay.so $pgshare/extension/wxpay.control $pgshare/extension/wxpay_proxy.control \
		$pgshare/extension/wxpay_proxy--1.0.sql $pgbin/wxpay_move_merchant; do
		grep -qx "$f" "$WX_WORK/contents" || fail "the package lacks $f"
	done

	# A private PostgreSQL 15 server without any wxpay file, and the package
	# unpacked over it.
	prefix=$WX_WORK/root
	mkdir -p "$prefix$pgbin" "$prefix$pglib" "$prefix$pgshare"
	cp -a "$pgbin/." "$prefix$pgbin/"
	tar -C "$pglib" --exclude='./wxpay.so' --exclude='./bitcode/wxpay*' -cf - . | tar -xf - -C "$prefix$pglib"
	tar -C "$pgshare" --exclude='./extension/wxpay*' -cf - . | tar -xf - -C "$prefix$pgshare"
	dpkg-deb -x "$deb" "$prefix"
fi

# The version the package installs by default, from its own control file
# (CREATE EXTENSION below must reach it, from its script or through update
# scripts).
control=$prefix$pgshare/extension/wxpay.control
version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$control")
[ -n "$version" ] || fail "no default_version in $control"
ls "$prefix$pgshare"/extension/wxpay--*.sql >/dev/null 2>&1 || fail "the package has no wxpay--*.sql"
tree_version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" wxpay.control)
[ "$version" = "$tree_version" ] ||
	echo "deb-test: note: the package installs wxpay $version, this tree's wxpay.control says $tree_version"

# A cluster of that server with the package's library preloaded, and the
# regression suite's files in a directory postgres owns.
mkdir "$WX_WORK/regress"
cp -r sql expected "$WX_WORK/regress/"
# The key vectors sql/v3_merchants.sql reads (test/vectors/v3, relative to its directory).
mkdir -p "$WX_WORK/regress/test" && cp -r test/vectors "$WX_WORK/regress/test/"
cp test/wxpay.conf "$WX_WORK/regress/"
chown -R postgres: "$WX_WORK"
tests=$(make -s --no-print-directory --eval 'print-regress: ; @echo $(REGRESS)' print-regress)
port=$(wx_free_port)
WX_BINDIR=$prefix$pgbin
wx_as_pg "$WX_BINDIR/initdb" -D "$WX_WORK/data" -E UTF8 --locale=C -A trust >"$WX_WORK/initdb.log" 2>&1 ||
	wx_fail "initdb of $WX_BINDIR" "$WX_WORK/initdb.log"
{
	cat test/wxpay.conf
	echo "port = $port"
	echo "listen_addresses = ''"
	echo "unix_socket_directories = '$WX_WORK'"
	echo "fsync = off"
} >>"$WX_WORK/data/postgresql.conf"
WX_PGPORT=$port
wx_as_pg "$WX_BINDIR/pg_ctl" -D "$WX_WORK/data" -l "$WX_WORK/postgres.log" -w -t 120 start >/dev/null 2>&1 9>&- ||
	wx_fail "the cluster of $WX_BINDIR did not start" "$WX_WORK/postgres.log"

# The server really runs the package's files: its library is mapped from
# the package, and CREATE EXTENSION installs the package's version.
pm=$(head -n 1 "$WX_WORK/data/postmaster.pid")
grep -q " $prefix$pglib/wxpay.so$" "/proc/$pm/maps" ||
	fail "the postmaster did not load $prefix$pglib/wxpay.so"
wx_psql -c 'CREATE DATABASE debtest'
got=$(wx_as_pg "$WX_BINDIR/psql" -h "$WX_WORK" -p "$port" -d debtest -X -q -At -v ON_ERROR_STOP=1 \
	-c 'CREATE EXTENSION wxpay' -c "SELECT extversion FROM pg_extension WHERE extname = 'wxpay'")
[ "$got" = "$version" ] || fail "CREATE EXTENSION wxpay installed version '$got', expected $version"
echo "deb-test: CREATE EXTENSION wxpay: version $version, library $prefix$pglib/wxpay.so"
# The proxy extension, in a database of its own: it needs plproxy, not wxpay.
wx_psql -c 'CREATE DATABASE debtest_proxy'
got=$(wx_as_pg "$WX_BINDIR/psql" -h "$WX_WORK" -p "$port" -d debtest_proxy -X -q -At -v ON_ERROR_STOP=1 \
	-c 'CREATE EXTENSION wxpay_proxy CASCADE' -c "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension")
[ "$got" = "plpgsql,plproxy,wxpay_proxy" ] || fail "CREATE EXTENSION wxpay_proxy gave extensions '$got'"
echo "deb-test: CREATE EXTENSION wxpay_proxy (with plproxy, without wxpay)"

echo "deb-test: pg_regress $tests"
if ! (cd "$WX_WORK/regress" && exec runuser -u postgres -- "$pglib/pgxs/src/test/regress/pg_regress" \
	--inputdir=. --bindir="$WX_BINDIR" --host="$WX_WORK" --port="$port" --dbname=contrib_regression $tests); then
	[ -f "$WX_WORK/regress/regression.diffs" ] && head -n 200 "$WX_WORK/regress/regression.diffs"
	fail "the regression suite failed against $deb"
fi
echo "deb-test: passed ($deb)"
