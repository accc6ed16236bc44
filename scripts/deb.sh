#!/usr/bin/env bash
# Builds the Debian package postgresql-15-wxpay_<version>-<rev>_<arch>.deb
# the way Debian builds PostgreSQL extensions (debian/, dh --with pgxs,
# pg_buildext from postgresql-server-dev-all), from a copy of the tree, and
# puts it in dist/ (or $DEB_OUT).  The version comes from wxpay.control's
# default_version: when debian/changelog's is older, the copy gets a new
# changelog entry.  Installs nothing system-wide.  About 10 s on 2 cores.
#   bash scripts/deb.sh        then    apt-get install ./dist/postgresql-15-wxpay_*.deb
set -euo pipefail
WX_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WX_ROOT"
. scripts/lib.sh

[ "${WXPAY_SETUP_DONE:-}" = 1 ] || bash scripts/setup.sh
version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" wxpay.control)
[ -n "$version" ] || { echo "deb: no default_version in wxpay.control" >&2; exit 1; }
out=${DEB_OUT:-$WX_ROOT/dist}
# PGXN's META.json has to say the same version (semver: 1.0 is 1.0.0).
meta=$(/usr/bin/python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))
print(m["version"], m["provides"]["wxpay"]["version"])' META.json)
semver=$version
[[ $semver =~ ^[0-9]+\.[0-9]+$ ]] && semver=$semver.0
[ "$meta" = "$semver $semver" ] ||
	echo "deb: note: META.json says version/provides $meta, wxpay.control $version: update META.json to $semver"

build=$(mktemp -d /tmp/wxpay-deb.XXXXXX)
trap 'cd /; rm -rf "$build"' EXIT
src=$build/pg-wxpay-$version
mkdir "$src"
# The tree as git sees it, uncommitted changes included, without build output.
if git -C "$WX_ROOT" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$WX_ROOT" ls-files -z -co --exclude-standard |
		tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$src"
else
	tar --exclude=.git --exclude=./dist -cf - . | tar -xf - -C "$src"
fi

changelog_version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
if [ "${changelog_version%-*}" != "$version" ]; then
	{
		echo "pg-wxpay ($version-0~local1) UNRELEASED; urgency=medium"
		echo
		echo "  * Built from the source tree at version $version (wxpay.control);"
		echo "    debian/changelog's newest entry is $changelog_version."
		echo
		echo " -- $(dpkg-parsechangelog -l "$src/debian/changelog" -S Maintainer)  $(date -R)"
		echo
		cat "$src/debian/changelog"
	} >"$build/changelog" && mv "$build/changelog" "$src/debian/changelog"
fi

echo "deb: dpkg-buildpackage -b for pg_wxpay $version (log: $build/build.log until it ends)"
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -b -us -uc >"$build/build.log" 2>&1); then
	tail -n 80 "$build/build.log"
	echo "deb: the package build failed" >&2
	exit 1
fi
mkdir -p "$out"
debs=("$build"/postgresql-*-wxpay_*.deb)
[ -f "${debs[0]}" ] || { tail -n 40 "$build/build.log"; echo "deb: no postgresql-*-wxpay .deb was built" >&2; exit 1; }
for d in "${debs[@]}"; do
	rm -f "$out/$(dpkg-deb -f "$d" Package)"_*.deb
	cp "$d" "$out/"
	echo "deb: $out/$(basename "$d")"
done
