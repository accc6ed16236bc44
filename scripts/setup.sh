#!/usr/bin/env bash
# Installs what pg_wxpay needs to build, test and demo on Debian 12, once.
# Idempotent: apt runs only when a package is missing.
set -euo pipefail

packages=(
	make gcc clang libclang-rt-14-dev pkg-config git ca-certificates curl
	postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-contrib
	libcurl4-openssl-dev libxml2-dev libssl-dev
	libipc-run-perl
	python3 python3-cryptography python3-psycopg2
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
