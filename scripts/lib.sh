# Shared by scripts/*.sh and bench/run.sh (sourced, not run): the install
# lock, progress lines, and a throwaway cluster run by postgres from a
# directory postgres owns, so the checkout may be anywhere (root's home is
# mode 0700 on Debian).

# Hold /tmp/wxpay-install.lock until this script exits: `make install`
# writes the extension system-wide, so two runs at once would overwrite each
# other's files.  Re-entrant: a script started by one that holds the lock
# (WXPAY_LOCKED=1), or under `flock /tmp/wxpay-install.lock ...` (the lock's
# descriptor is inherited), does not wait for itself.
wx_lock() {
	local lock=${WXPAY_LOCK:-/tmp/wxpay-install.lock} fd
	[ "${WXPAY_LOCKED:-}" = 1 ] && return 0
	for fd in /proc/$$/fd/*; do
		[ "$(readlink "$fd" 2>/dev/null)" = "$lock" ] || continue
		if flock -n "${fd##*/}"; then export WXPAY_LOCKED=1; return 0; fi
	done
	exec 9>>"$lock"
	if ! flock -n 9; then
		echo "waiting for $lock: another pg_wxpay test, demo or benchmark is installing or running"
		flock 9
	fi
	export WXPAY_LOCKED=1
}

# Progress: `wx_stage NAME [what it does, how long]` starts a stage (and ends
# the previous one with its elapsed time); `wx_stage_end` ends the last.
wx_t0=$SECONDS wx_stage_name= wx_stage_t0=
wx_clock() { local s=$((SECONDS - wx_t0)); printf '%d:%02d' $((s / 60)) $((s % 60)); }
wx_stage_end() {
	[ -n "$wx_stage_name" ] || return 0
	printf '== [%s] %s: done in %d s\n' "$(wx_clock)" "$wx_stage_name" $((SECONDS - wx_stage_t0))
	wx_stage_name=
}
wx_stage() {
	wx_stage_end
	wx_stage_name=$1 wx_stage_t0=$SECONDS
	printf '== [%s] %s%s\n' "$(wx_clock)" "$1" "${2:+ ($2)}"
}

wx_free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A private directory postgres owns, for the cluster, its sockets, logs and
# every file a postgres process must read.  Sets WX_WORK.
wx_workdir() {
	WX_WORK=$(mktemp -d "/tmp/wxpay-$1.XXXXXX")
	chmod 755 "$WX_WORK"
	chown postgres: "$WX_WORK"
}

# Run as postgres from WX_WORK, never from a directory postgres cannot
# enter.
wx_as_pg() { (cd "$WX_WORK" && exec runuser -u postgres -- "$@"); }
# The same for a service in the background, output to the log $1: setpriv
# execs the command itself (runuser would stay in between and not pass
# SIGTERM on), so WX_BG_PID is the service's own pid.
wx_as_pg_bg() {
	local log=$1
	shift
	(cd "$WX_WORK" && HOME=$(getent passwd postgres | cut -d: -f6) USER=postgres LOGNAME=postgres \
		exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@") >"$log" 2>&1 9>&- &
	WX_BG_PID=$!
}

# Print a service's log and fail.
wx_fail() {
	local what=$1 log=$2
	echo "FAILED: $what" >&2
	if [ -f "$log" ]; then echo "---- $log" >&2; tail -n 100 "$log" >&2; fi
	exit 1
}

# initdb and start a cluster in WX_WORK/data on port $1, listening only on
# its socket in WX_WORK, with wxpay preloaded and the postgresql.conf lines
# on stdin.  Sets WX_BINDIR and WX_PGPORT.  Stop it with wx_cluster_stop.
wx_cluster_start() {
	WX_PGPORT=$1
	WX_BINDIR=$(pg_config --bindir)
	wx_as_pg "$WX_BINDIR/initdb" -D "$WX_WORK/data" -E UTF8 --locale=C -A trust \
		>"$WX_WORK/initdb.log" 2>&1 || wx_fail "initdb" "$WX_WORK/initdb.log"
	{
		echo "port = $WX_PGPORT"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$WX_WORK'"
		echo "shared_preload_libraries = 'wxpay'"
		cat
	} >>"$WX_WORK/data/postgresql.conf"
	wx_as_pg "$WX_BINDIR/pg_ctl" -D "$WX_WORK/data" -l "$WX_WORK/postgres.log" -w -t 120 start \
		>/dev/null 2>&1 9>&- || wx_fail "the cluster did not start" "$WX_WORK/postgres.log"
}
wx_cluster_stop() {
	[ -n "${WX_BINDIR:-}" ] && [ -f "$WX_WORK/data/postmaster.pid" ] || return 0
	wx_as_pg "$WX_BINDIR/pg_ctl" -D "$WX_WORK/data" -m fast -w stop >/dev/null 2>&1 || true
}
wx_psql() {
	wx_as_pg "$WX_BINDIR/psql" -h "$WX_WORK" -p "$WX_PGPORT" -d postgres -X -q -v ON_ERROR_STOP=1 "$@"
}

# Start the WeChat Pay simulator (as root: it only reads the checkout and
# writes DIR) in the background, wait until it listens, and set WX_SIM_PID
# and WX_SIM_PORT.  Arguments: its directory, its log, then its options.
wx_sim_start() {
	local dir=$1 log=$2
	shift 2
	/usr/bin/python3 "$WX_ROOT/sim/wxsim.py" --dir "$dir" --port 0 --quiet "$@" >"$log" 2>&1 9>&- &
	WX_SIM_PID=$!
	for _ in $(seq 300); do
		[ -s "$dir/port" ] && break
		kill -0 "$WX_SIM_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$dir/port" ] && kill -0 "$WX_SIM_PID" 2>/dev/null || wx_fail "the simulator did not start" "$log"
	WX_SIM_PORT=$(cat "$dir/port")
}

# Wait until something listens on 127.0.0.1:$1 while process $2 lives.
wx_wait_listening() {
	local port=$1 pid=$2
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || return 1
		/usr/bin/python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
			"$port" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

