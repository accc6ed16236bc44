#!/usr/bin/python3
"""pg_wxpay benchmarks: every hot path beside its baseline and its limit.

Started by bench/run.sh, which builds and installs the extension, starts a
throwaway cluster and two simulators (sim0 answers at once, sim20 after
20 ms) and hands them over.  Figures are ratios against a baseline measured
in the same run on the same machine, medians of 3 runs for the short ones.

    1. signing: wxpay_sign vs PL/pgSQL+md5()/hmac() vs md5() alone; the C core alone
    2. unified order: pgbench 1/4/16 clients vs curl with keep-alive, same requests
    3. notifications: pgbench 8 clients replaying signed bodies, half duplicates
    4. reconciliation: the worker querying paid orders, vs raw curl and vs the
       latency-bound limit
    5. the seed's way: a Python application signing and posting itself
       (bench/seed_app.py), beside the same application calling
       wxpay_unifiedorder, 1 and 8 processes
    6. cost as the tables grow: notifications, unified order and the worker
       with 10 thousand, 1 million (BENCH_GROWTH_SIZES) finished orders
       loaded, each beside its baseline, and the plans of every statement

Ends with a table (figure, baseline, ratio, target, met) and bench/RESULTS.md.
When a target is missed and perf is available, the hot path is profiled and
the profile goes into RESULTS.md.
"""
import argparse
import contextlib
import glob
import http.client
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.environ.get("BENCH_QUICK") == "1"
PROFILE = os.environ.get("BENCH_PROFILE", "1") != "0" and shutil.which("perf") is not None
RUNS = 3
GROWTH_SCAN_ROWS = 1000    # section 6: a sequential scan of a table this big is a finding

# Sizes: the issue's where they fit in ~15 minutes on 2 cores.
SIZES = {
    "sign_rows": 1_000_000, "sign_hmac_rows": 500_000,
    "uo_requests": {1: 5000, 4: 6000, 16: 6400}, "uo_latency20_requests": 150,
    "notify_orders": 10_000, "ceiling_requests": 10_000,
    "rec_orders": 10_000, "rec_orders_l20_c1": 2000, "rec_profile_orders": 5000,
    "seed_orders": 4000,
    "growth_notify_orders": 3000, "growth_uo_orders": 2000, "growth_rec_orders": 2000,
}
if QUICK:
    SIZES = {
        "sign_rows": 100_000, "sign_hmac_rows": 20_000,
        "uo_requests": {1: 300, 4: 400, 16: 480}, "uo_latency20_requests": 30,
        "notify_orders": 800, "ceiling_requests": 2000,
        "rec_orders": 1000, "rec_orders_l20_c1": 100, "rec_profile_orders": 1000,
        "seed_orders": 400,
        "growth_notify_orders": 400, "growth_uo_orders": 400, "growth_rec_orders": 400,
    }

# Functions whose inclusive time tells where a call goes.
PATH_FUNCTIONS = (r"wxpay_\w+|judge_\w+|record_\w+|store_prepay|mark_paid|apply_\w+|run_round|run_requests|"
                  r"claim_jobs|schedule|SPI_execute_with_args|SPI_execute_plan|SPI_execute_snapshot|"
                  r"raw_parser|parse_analyze_\w+|pg_plan_queries|GetCachedPlan|BuildCachedPlan|"
                  r"plpgsql_exec_trigger|ExecConstraints|stringToNode|XLogFlush|CommitTransactionCommand|"
                  r"BeginInternalSubTransaction|ReleaseCurrentSubTransaction|curl_multi_perform|curl_multi_poll|"
                  r"xmlReadMemory|wx_xml_parse|wx_sign_compute|pg_xml_init|Async_Notify|heap_insert|heap_update")


MERCHANTS = {
    # sim name: (mch_id, appid, api_key)
    "sim0": ("1900000109", "wx8888888888888888", "192006250b4c09247ec02edce69f6a2d"),
    "sim20": ("1900000120", "wx8888888888888820", "8934e7d15453e97507ef794cf7b0519d"),
}
# An API v3 merchant at sim0 (certificate mode), for v3 beside v2 in section 2.
MERCHANT_V3 = ("1900000130", "wx8888888888888830", "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb")
NOTIFY_URL = "https://shop.example.com/wxpay/notify"


def log(message):
    print(message, flush=True)


def median(values):
    return statistics.median(values)


def percentile(values, q):
    """Nearest-rank percentile of a list (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# ------------------------------------------------------------ environment

class Sim:
    """A simulator: keep-alive HTTPS client for its control endpoints."""

    def __init__(self, name, directory, latency_ms, pid):
        self.name = name
        self.dir = directory
        self.latency_ms = latency_ms
        self.pid = pid
        with open(os.path.join(directory, "port")) as f:
            self.port = int(f.read().strip())
        self.base = "https://127.0.0.1:%d" % self.port
        self.ca = os.path.join(directory, "ca.pem")
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.conn = None
        self.fresh = 0          # connections this client opened since the last stats reset

    def request(self, method, path, payload=None, raw=None, content_type="application/json"):
        body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
                self.fresh += 1
            try:
                self.conn.request(method, path, body=body, headers={"Content-Type": content_type})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise RuntimeError("%s %s %s: HTTP %d %s" % (self.name, method, path, resp.status, data[:200]))
                return data
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def ctl(self, method, path, payload=None):
        return json.loads(self.request(method, path, payload))

    def stats(self):
        return self.ctl("GET", "/_sim/stats")

    def reset_stats(self):
        self.ctl("POST", "/_sim/stats/reset", {})
        self.fresh = 0

    def client_stats(self):
        """Stats without this control client's own connections."""
        s = self.stats()
        s["connections"] -= self.fresh
        s["tls_handshakes"] -= self.fresh
        return s

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class PaidListener:
    """LISTEN wxpay_order_paid in a thread: (time received, seq) of each
    notification, in order."""

    def __init__(self, host, port):
        import select
        self._select = select.select
        self.conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
        self.conn.autocommit = True
        self.conn.cursor().execute("LISTEN wxpay_order_paid")
        self.events = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            if self._select([self.conn], [], [], 0.2) == ([], [], []):
                continue
            self.conn.poll()
            now = time.time()
            while self.conn.notifies:
                self.events.append((now, int(self.conn.notifies.pop(0).payload)))

    def heard(self):
        return sorted(self.events, key=lambda e: e[1])

    def newest(self):
        return max((e[1] for e in self.events), default=0)

    def stop(self):
        self.done.set()
        self.thread.join()
        self.conn.close()


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.host = args.work
        self.port = args.pgport
        self.bindir = args.bindir
        sim_pids = [int(p) for p in args.sim_pids.split(",")]
        self.sims = {"sim0": Sim("sim0", os.path.join(self.work, "sim0"), 0, sim_pids[0]),
                     "sim20": Sim("sim20", os.path.join(self.work, "sim20"), 20, sim_pids[1])}
        self.db = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
        self.db.autocommit = True
        self.rows = []          # the result table
        self.profiles = []      # (title, text)
        self.details = {}       # per-section raw figures for RESULTS.md
        self.scratch = os.path.join(self.work, "bench")
        os.makedirs(self.scratch, exist_ok=True)
        self.started = time.time()
        self.quick = QUICK
        self.so_snapshot = os.path.join(self.scratch, "wxpay-loaded.so")
        self.so_base = None
        self.prof = {}
        self.load = {}
        self.runs = RUNS
        self.sizes = SIZES
        self.growth_scan_rows = GROWTH_SCAN_ROWS

    # ------------------------------------------------------------ helpers

    def q(self, sql, args=None):
        with self.db.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def one(self, sql, args=None):
        rows = self.q(sql, args)
        return rows[0][0] if rows else None

    def psql_file(self, path, variables):
        cmd = [os.path.join(self.bindir, "psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres",
               "-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path]
        for k, v in variables.items():
            cmd += ["-v", "%s=%s" % (k, v)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))

    def add(self, section, figure, value, baseline, ratio, target, met, key=None):
        self.rows.append({"section": section, "figure": figure, "value": value, "baseline": baseline,
                          "ratio": ratio, "target": target, "met": met, "key": key})

    def pgbench(self, name, script, clients, per_client, defines=None, latencies=True):
        """Run pgbench; returns tps, per-transaction latencies (ms) and wall time."""
        path = os.path.join(self.scratch, name + ".sql")
        with open(path, "w") as f:
            f.write(script)
        logdir = os.path.join(self.scratch, "log-" + name)
        shutil.rmtree(logdir, ignore_errors=True)
        os.makedirs(logdir)
        cmd = [os.path.join(self.bindir, "pgbench"), "-h", self.host, "-p", str(self.port), "-U", "postgres",
               "-n", "-M", "prepared", "-f", path, "-c", str(clients), "-j", str(min(clients, 2)),
               "-t", str(per_client)]
        if latencies:
            cmd += ["-l", "--log-prefix=" + os.path.join(logdir, "tx")]
        for k, v in (defines or {}).items():
            cmd += ["-D", "%s=%s" % (k, v)]
        snap = self.cpu_snapshot()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + ["postgres"], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load = self.load_between(snap, self.cpu_snapshot())
        out = proc.stdout + proc.stderr
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
        done = re.search(r"number of transactions actually processed: (\d+)/(\d+)", out)
        if proc.returncode != 0 or m is None or done is None or done.group(1) != done.group(2):
            raise RuntimeError("pgbench %s failed:\n%s" % (name, out[-3000:]))
        lat = []
        if latencies:
            for fn in glob.glob(os.path.join(logdir, "tx*")):
                with open(fn) as f:
                    for line in f:
                        parts = line.split()
                        lat.append(int(parts[2]) / 1000.0)
        shutil.rmtree(logdir, ignore_errors=True)
        return {"tps": float(m.group(1)), "lat": lat, "wall": wall, "n": int(done.group(1)), "load": load}

    def curl(self, name, bodies, url, ca, parallel):
        """POST each body with curl, keep-alive; sequential, or `parallel` at
        once with --parallel.  Returns requests/s and latencies (ms)."""
        cfg = os.path.join(self.scratch, name + ".curl")
        with open(cfg, "w") as f:
            blocks = []
            for body in bodies:
                assert '"' not in body and "\\" not in body
                blocks.append('url = "%s"\ncacert = "%s"\nheader = "Content-Type: text/xml; charset=utf-8"\n'
                              'header = "Expect:"\nuser-agent = "pg_wxpay/1.0"\ndata-binary = "%s"\n'
                              'output = "/dev/null"\nwrite-out = "%%{http_code} %%{time_total}\\n"\n'
                              % (url, ca, body))
            f.write("next\n".join(blocks))
        cmd = ["curl", "-s", "--no-progress-meter", "-K", cfg]
        if parallel > 1:
            cmd[1:1] = ["--parallel", "--parallel-max", str(parallel)]
        snap = self.cpu_snapshot()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load = self.load_between(snap, self.cpu_snapshot())
        lines = proc.stdout.split()
        codes, times = lines[0::2], lines[1::2]
        if proc.returncode != 0 or len(times) != len(bodies) or any(c != "200" for c in codes):
            raise RuntimeError("curl %s failed (rc %d, %d of %d answers): %s"
                               % (name, proc.returncode, len(times), len(bodies), proc.stderr[-500:]))
        os.unlink(cfg)
        return {"rps": len(bodies) / wall, "lat": [float(t) * 1000 for t in times], "wall": wall, "n": len(bodies),
                "load": load}

    def check_answer(self, sim, path, body):
        """One request of a batch sent by hand: the simulator must accept it."""
        answer = sim.request("POST", path, raw=body.encode(), content_type="text/xml").decode()
        if "<result_code><![CDATA[SUCCESS]]></result_code>" not in answer:
            raise RuntimeError("the simulator refused a baseline request: %s" % answer[:300])

    def cpu_ticks(self, pid):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def sample_waits(self, run):
        """Call run() while sampling, every 5 ms, what pgbench's backends are
        doing (their wait event, or CPU) and how many of them wait for the
        lock NOTIFY takes at commit.  Returns run()'s result, the shares of
        each wait, and the mean number of backends waiting for that lock."""
        hist = {}
        notify_waiters = []
        stop = threading.Event()

        def sampler():
            conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
            conn.autocommit = True
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("SELECT COALESCE(wait_event_type || ': ' || wait_event, 'CPU (no wait event)')"
                                " FROM pg_stat_activity WHERE application_name = 'pgbench' AND state = 'active'")
                    for (w,) in cur.fetchall():
                        hist[w] = hist.get(w, 0) + 1
                    if len(hist) and sum(hist.values()) % 10 == 0:
                        # pg_locks takes every lock-manager partition lock: seldom.
                        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND NOT granted"
                                    " AND classid = 'pg_database'::regclass AND objid = 0")
                        notify_waiters.append(cur.fetchone()[0])
                    time.sleep(0.005)
            conn.close()

        thread = threading.Thread(target=sampler)
        thread.start()
        try:
            result = run()
        finally:
            stop.set()
            thread.join()
        total = sum(hist.values()) or 1
        return (result, sorted(((v / total, k) for k, v in hist.items()), reverse=True),
                statistics.mean(notify_waiters) if notify_waiters else 0.0)

    # ------------------------------------------------------------ perf

    @contextlib.contextmanager
    def perf(self, tag, pids=None):
        """perf record (call graphs) of pids, or of the whole machine."""
        data = os.path.join(self.scratch, tag + ".perf")
        cmd = ["perf", "record", "-F", "1999", "-g", "-o", data]
        cmd += ["-p", ",".join(str(p) for p in pids)] if pids else ["-a"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        try:
            yield data
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)

    def pgbench_profiled(self, tag, script, clients, per_client, defines=None):
        """Run pgbench under perf, sampling only the backends it opens (the
        machine may be running other people's PostgreSQL too)."""
        path = os.path.join(self.scratch, tag + ".sql")
        with open(path, "w") as f:
            f.write(script)
        cmd = [os.path.join(self.bindir, "pgbench"), "-h", self.host, "-p", str(self.port), "-U", "postgres",
               "-n", "-M", "prepared", "-f", path, "-c", str(clients), "-j", str(min(clients, 2)),
               "-t", str(per_client)]
        for k, v in (defines or {}).items():
            cmd += ["-D", "%s=%s" % (k, v)]
        proc = subprocess.Popen(cmd + ["postgres"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids = []
        deadline = time.time() + 10
        while time.time() < deadline and len(pids) < clients:
            pids = [r[0] for r in self.q("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")]
            time.sleep(0.05)
        with self.perf(tag, pids) as data:
            proc.wait()
        return data

    def perf_rows(self, data, children):
        """(total %, self %, dso, symbol) rows of perf report, with the
        extension's functions named from the snapshot of the loaded
        wxpay.so when the installed one was replaced meanwhile."""
        cmd = ["perf", "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0.05",
               "--sort", "dso,symbol", "--children" if children else "--no-children"]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        rows = []
        for line in out.splitlines():
            m = re.match(r"^\s+([0-9.]+)%\s+(?:([0-9.]+)%\s+)?(.+?)\s+\[(.)\]\s+(\S+)", line)
            if m:
                first = float(m.group(1))
                rows.append([first, float(m.group(2)) if m.group(2) else first,
                             m.group(3).replace(" (deleted)", ""), m.group(5)])
        # Unresolved frames: relative addresses for sampled instructions,
        # absolute ones (return addresses) in call chains.
        def relative(addr):
            a = int(addr, 16)
            return "0x%x" % (a - self.so_base - 1 if self.so_base and a >= self.so_base else a)

        unresolved = sorted({relative(r[3]) for r in rows if r[2] == "wxpay.so" and r[3].startswith("0x")})
        if unresolved and os.path.exists(self.so_snapshot):
            names = subprocess.run(["addr2line", "-f", "-e", self.so_snapshot] + unresolved,
                                   capture_output=True, text=True).stdout.split("\n")[0::2]
            resolved = dict(zip(unresolved, names))
            for r in rows:
                if r[2] == "wxpay.so" and r[3].startswith("0x"):
                    name = resolved.get(relative(r[3]), "")
                    if name not in ("", "??"):
                        r[3] = name
        merged = {}
        for total, own, dso, sym in rows:
            key = (dso, sym)
            t = merged.get(key, [0.0, 0.0])
            merged[key] = [t[0] + total, t[1] + own]
        return [(v[0], v[1], k[0], k[1]) for k, v in merged.items()]

    def perf_report(self, key, title, data, self_top=16, children=PATH_FUNCTIONS):
        """Summarise a profile into self.profiles (text for RESULTS.md) and
        self.prof[key] (numbers the analysis quotes): CPU by library, top
        functions by self time, inclusive time of the functions on the path."""
        flat = self.perf_rows(data, False)
        incl = {}
        for total, _, dso, sym in self.perf_rows(data, True):
            if dso != "[kernel.kallsyms]":
                incl[sym] = max(incl.get(sym, 0.0), total)
        by_dso = {}
        out = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", "--no-children",
                              "--sort", "dso"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"^\s+([0-9.]+)%\s+(.+?)\s*$", line)
            if m:
                dso = m.group(2).replace(" (deleted)", "")
                by_dso[dso] = by_dso.get(dso, 0.0) + float(m.group(1))
        text = ["CPU by library:"]
        text += ["  %6.2f%%  %s" % (v, k) for k, v in sorted(by_dso.items(), key=lambda kv: -kv[1])[:8]]
        text.append("Top functions, self time:")
        for _, own, dso, sym in sorted(flat, key=lambda r: -r[1])[:self_top]:
            text.append("  %6.2f%%  %-18s %s" % (own, dso, sym))
        if children:
            text.append("Inclusive time (self + callees) of the functions on the path:")
            picked = [(t, sym) for sym, t in incl.items() if re.fullmatch(children, sym)]
            text += ["  %6.2f%%  %s" % (t, sym) for t, sym in sorted(picked, reverse=True)[:30]]
        self.prof[key] = {"incl": incl, "by_dso": by_dso,
                          "self": {sym: own for _, own, _, sym in flat}}
        self.profiles.append((title, "\n".join(text)))

    # ------------------------------------------------------------ machine load

    def postmaster_pid(self):
        with open(os.path.join(self.work, "data", "postmaster.pid")) as f:
            return int(f.readline())

    @staticmethod
    def proc_cpu(pid, reaped=False):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0, None
        ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
        return ticks, int(fields[1])

    def cpu_snapshot(self):
        """CPU seconds so far: the machine's, this benchmark's (cluster,
        simulators, this script and what it ran), and steal."""
        hz = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        user, nice, system, idle, iowait, irq, softirq, steal = v
        pm = self.postmaster_pid()
        ours = self.proc_cpu(pm, True)[0]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                ticks, ppid = self.proc_cpu(int(entry))
                if ppid == pm:
                    ours += ticks
        for sim in self.sims.values():
            ours += self.proc_cpu(sim.pid, True)[0]
        t = os.times()
        return {"wall": time.time(), "busy": (user + nice + system) / hz, "softirq": (irq + softirq) / hz,
                "steal": steal / hz, "ours": ours / hz + t.user + t.system + t.children_user + t.children_system}

    def load_between(self, a, b):
        wall = b["wall"] - a["wall"]
        return {"wall": wall, "ours": (b["ours"] - a["ours"]) / wall,
                "others": max(0.0, (b["busy"] - a["busy"]) - (b["ours"] - a["ours"])) / wall,
                "softirq": (b["softirq"] - a["softirq"]) / wall, "steal": (b["steal"] - a["steal"]) / wall}

    # ------------------------------------------------------------ setup

    def setup(self):
        log("== merchants at the simulators and in wxpay.merchants")
        for name, sim in self.sims.items():
            mch, appid, key = MERCHANTS[name]
            creds = sim.ctl("POST", "/_sim/merchants",
                            {"mch_id": mch, "appid": appid, "api_key": key, "sign_type": "MD5"})
            with open(sim.ca) as f:
                ca_pem = f.read()
            self.q("INSERT INTO wxpay.merchants (mch_id, appid, api_key, sign_type, notify_url, api_base,"
                   " ca_pem, cert_pem, key_pem) VALUES (%s, %s, %s, 'MD5', %s, %s, %s, %s, %s)",
                   (mch, appid, key, NOTIFY_URL, sim.base, ca_pem, creds["cert_pem"], creds["key_pem"]))
        self.setup_v3_merchant(self.sims["sim0"])
        self.q("CREATE SCHEMA IF NOT EXISTS bench")
        self.q("CREATE SEQUENCE bench.seq")
        # The DB work of a unified order without the extension: the same two
        # row writes with the same triggers, plans cached, one commit.
        self.q("""
            CREATE FUNCTION bench.order_db_only(mch text, otn text) RETURNS void LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee,
                                          spbill_create_ip, params, time_expire)
                VALUES (mch, otn, 'APP', 'Bench Shop-Item', 101, '203.0.113.7', '{}', now() + interval '2 hours');
                UPDATE wxpay.orders SET prepay_id = 'wx' || otn, prepay_at = now()
                 WHERE mch_id = mch AND out_trade_no = otn;
            END $$""")
        self.worker_pid()   # fail early if the worker is not there
        # The wxpay.so the cluster loaded: `make install` elsewhere on the
        # machine may replace the file, and perf then cannot name its functions.
        pm = self.postmaster_pid()
        with open("/proc/%d/maps" % pm) as f:
            rng = next((l.split()[0] for l in f if "/wxpay.so" in l and l.split()[2] == "00000000"), None)
        if rng:
            shutil.copyfile("/proc/%d/map_files/%s" % (pm, rng), self.so_snapshot)
            self.so_base = int(rng.split("-")[0], 16)

    def setup_v3_merchant(self, sim):
        """MERCHANT_V3 at sim and here, with the platform certificate sim lists."""
        mch, appid, apiv3_key = MERCHANT_V3
        creds = sim.ctl("POST", "/_sim/merchants", {"mch_id": mch, "appid": appid, "api_key": MERCHANTS["sim0"][2],
                                                    "protocol": "v3", "apiv3_key": apiv3_key})
        with open(sim.ca) as f:
            ca_pem = f.read()
        self.q("INSERT INTO wxpay.merchants (mch_id, appid, api_key, notify_url, api_base, ca_pem, cert_pem, key_pem,"
               " protocol) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'v3')",
               (mch, appid, MERCHANTS["sim0"][2], NOTIFY_URL, sim.base, ca_pem, creds["cert_pem"], creds["key_pem"]))
        self.q("INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES (%s, %s)", (mch, apiv3_key))
        for k in creds["wechatpay_keys"]:
            self.q("INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem) VALUES (%s, %s, %s)", (mch, k["serial"], k["pem"]))

    def worker_pid(self):
        pid = self.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wxpay worker'")
        if pid is None:
            raise RuntimeError("the wxpay worker is not running")
        return pid

    def worker_rss(self):
        pid = self.worker_pid()
        with open("/proc/%d/status" % pid) as f:
            status = dict(l.split(":", 1) for l in f if ":" in l)
        return (int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0]),
                int(status["RssAnon"].split()[0]))

    # ------------------------------------------------------------ 1. signing

    def signing(self):
        log("== 1. signing")
        n = SIZES["sign_rows"]
        nh = SIZES["sign_hmac_rows"]
        key = MERCHANTS["sim0"][2]
        self.psql_file(os.path.join(ROOT, "bench", "plpgsql_sign.sql"), {"rows": n, "key": key})
        self.q("CREATE TABLE bench.sign_params_h AS SELECT * FROM bench.sign_params WHERE id <= %s", (nh,))
        self.q("CREATE TABLE bench.sign_canon_h AS SELECT * FROM bench.sign_canon WHERE id <= %s", (nh,))
        self.q("VACUUM ANALYZE bench.sign_params_h, bench.sign_canon_h")

        # The three implementations must agree before any is timed.
        official = self.one("SELECT wxpay_sign('{\"appid\": \"wxd930ea5d5a258f4f\", \"mch_id\": \"10000100\","
                            " \"device_info\": \"1000\", \"body\": \"test\", \"nonce_str\": \"ibuaiVcKdpRxkhJA\"}',"
                            " '192006250b4c09247ec02edce69f6a2d')")
        assert official == "9A0A8659F005D6984697E2CA0A9CF3B7", official
        bad = self.one("""
            SELECT count(*) FROM bench.sign_params p JOIN bench.sign_canon c USING (id)
             WHERE id <= 20000 AND (wxpay_sign(p.p, %(k)s) <> upper(md5(c.s))
                OR bench.plpgsql_sign(p.p, %(k)s) <> upper(md5(c.s))
                OR wxpay_sign(p.p, %(k)s, 'HMAC-SHA256') <> bench.plpgsql_sign(p.p, %(k)s, 'HMAC-SHA256')
                OR wxpay_sign(p.p, %(k)s, 'HMAC-SHA256')
                   <> upper(encode(hmac(c.s, %(k)s, 'sha256'), 'hex')))""", {"k": key})
        assert bad == 0, "signing implementations disagree on %d rows" % bad

        queries = {
            "c_md5": "SELECT count(wxpay_sign(p, %(k)s)) FROM bench.sign_params",
            "plpgsql_md5": "SELECT count(bench.plpgsql_sign(p, %(k)s)) FROM bench.sign_params",
            "floor_md5": "SELECT count(md5(s)) FROM bench.sign_canon",
            "c_hmac": "SELECT count(wxpay_sign(p, %(k)s, 'HMAC-SHA256')) FROM bench.sign_params_h",
            "plpgsql_hmac": "SELECT count(bench.plpgsql_sign(p, %(k)s, 'HMAC-SHA256')) FROM bench.sign_params_h",
            "floor_hmac": "SELECT count(hmac(s, %(k)s, 'sha256')) FROM bench.sign_canon_h",
            "scan_params": "SELECT count(p) FROM bench.sign_params",
        }
        # Warm the buffers, then interleave the variants run by run.  Each
        # is timed by the CPU its backend used (/proc), which other work on
        # the machine disturbs far less than wall time; wall time is kept.
        self.q("SELECT count(*) FROM bench.sign_params")
        self.q("SELECT count(*) FROM bench.sign_canon")
        backend = self.one("SELECT pg_backend_pid()")
        times = {k: [] for k in queries}
        walls = {k: [] for k in queries}
        hz = os.sysconf("SC_CLK_TCK")
        for r in range(RUNS):
            for name, sql in queries.items():
                c0, t0 = self.cpu_ticks(backend), time.perf_counter()
                self.q(sql, {"k": key})
                walls[name].append(time.perf_counter() - t0)
                times[name].append((self.cpu_ticks(backend) - c0) / hz)
        rows_of = {k: nh if k.endswith("hmac") else n for k in queries}
        us = {k: median(v) * 1e6 / rows_of[k] for k, v in times.items()}
        wall_us = {k: median(v) * 1e6 / rows_of[k] for k, v in walls.items()}
        self.details["sign"] = {"us_per_row": us, "wall_us_per_row": wall_us, "rows": n, "hmac_rows": nh,
                                "runs": times}

        speedup = us["plpgsql_md5"] / us["c_md5"]
        vs_floor = us["c_md5"] / us["floor_md5"]
        self.add("1 signing", "wxpay_sign MD5, %s rows: µs/row" % fmt_int(n), "%.2f" % us["c_md5"],
                 "PL/pgSQL md5(): %.2f" % us["plpgsql_md5"], "%.1fx faster" % speedup, ">= 20x faster",
                 speedup >= 20, key="sign_vs_plpgsql")
        self.add("1 signing", "wxpay_sign MD5 vs the floor, µs of backend CPU per row", "%.2f" % us["c_md5"],
                 "md5() over built strings: %.2f" % us["floor_md5"], "%.2fx the floor" % vs_floor,
                 "<= 0.75x the floor", vs_floor <= 0.75, key="sign_vs_floor")
        vs_hmac = us["c_hmac"] / us["floor_hmac"]
        self.add("1 signing", "wxpay_sign HMAC-SHA256 vs the floor, %s rows: µs of backend CPU per row"
                 % fmt_int(nh), "%.2f" % us["c_hmac"], "hmac() over built strings: %.2f" % us["floor_hmac"],
                 "%.2fx the floor; %.1fx faster than PL/pgSQL hmac() (%.2f)"
                 % (vs_hmac, us["plpgsql_hmac"] / us["c_hmac"], us["plpgsql_hmac"]),
                 "<= 0.75x the floor", vs_hmac <= 0.75, key="sign_hmac_vs_floor")

        # The C core alone, no SQL.
        out = subprocess.run([self.args.sign_core, "0.3"], capture_output=True, text=True, check=True).stdout
        core = dict(l.split() for l in out.splitlines())
        self.details["core"] = core
        for case, label in (("official_md5", "official example (5 fields), MD5"),
                            ("unified_md5", "unifiedorder request (10 fields), MD5"),
                            ("unified_hmac", "unifiedorder request (10 fields), HMAC-SHA256")):
            rate = float(core[case + "_core"])
            floor = float(core[case + "_floor"])
            self.add("1 signing", "C core alone, %s: signatures/s/core" % label, fmt_rate(rate),
                     "one digest over the built string: %s" % fmt_rate(floor),
                     "%.2fx the floor's time" % (floor / rate), "(report)", None)

        if self.args.rsa_core:
            self.v3_signing()

        if PROFILE and (speedup < 20 or vs_floor > 0.75 or vs_hmac > 0.75):
            self.profile_signing(key)

    def v3_signing(self):
        """API v3's RSA-2048 request signature (the C core, key cached)
        against `openssl speed rsa2048` on this machine; verification and
        AES-256-GCM for the notification path."""
        key = os.path.join(os.path.dirname(self.args.rsa_core), "rsa_core_key.pem")
        out = subprocess.run([self.args.rsa_core, key, "0.5"], capture_output=True, text=True, check=True).stdout
        core = {k: float(v) for k, v in (l.split() for l in out.splitlines())}
        speed = subprocess.run(["openssl", "speed", "-seconds", "2", "-mr", "rsa2048"], capture_output=True,
                               text=True, check=True).stdout
        # -mr prints "+F2:<n>:2048:<sign/s>:<verify/s>"
        fields = next(l for l in speed.splitlines() if l.startswith("+F2:")).split(":")
        floor_sign, floor_verify = float(fields[3]), float(fields[4])
        self.details["v3_core"] = {**core, "openssl_speed_sign": floor_sign, "openssl_speed_verify": floor_verify}
        share = core["v3_sign_core"] / floor_sign
        self.add("1 signing", "API v3 request signature (RSA-2048 SHA-256, cached key, JSAPI prepay body): "
                 "signatures/s/core", fmt_rate(core["v3_sign_core"]),
                 "openssl speed rsa2048: %s sign/s" % fmt_rate(floor_sign), "%.0f%% of the floor" % (share * 100),
                 ">= 90% of the floor", share >= 0.9, key="v3_sign_vs_openssl")
        self.add("1 signing", "API v3 signature with the PEM parsed every time (no key cache): signatures/s/core",
                 fmt_rate(core["v3_sign_uncached"]), "cached: %s" % fmt_rate(core["v3_sign_core"]),
                 "%.1fx slower" % (core["v3_sign_core"] / core["v3_sign_uncached"]), "(report)", None)
        self.add("1 signing", "API v3 answer/notification verification (RSA-2048, cached key): verifications/s/core",
                 fmt_rate(core["v3_verify_core"]), "openssl speed rsa2048: %s verify/s" % fmt_rate(floor_verify),
                 "%.0f%% of the floor" % (core["v3_verify_core"] / floor_verify * 100), "(report)", None)
        self.add("1 signing", "API v3 resource decryption (AES-256-GCM, 7 bytes): decryptions/s/core",
                 fmt_rate(core["v3_gcm_core"]), "", "", "(report)", None)

    def profile_signing(self, key):
        log("   profiling wxpay_sign and the md5() floor")
        for tag, sql in (("wxpay_sign", "SELECT count(wxpay_sign(p, %(k)s)) FROM bench.sign_params"),
                         ("md5_floor", "SELECT count(md5(s)) FROM bench.sign_canon")):
            conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pid = cur.fetchone()[0]
                with self.perf("sign-" + tag, [pid]) as data:
                    cur.execute(sql, {"k": key})
            conn.close()
            self.perf_report("sign_" + tag, "1. %s over %s rows (the backend only)"
                             % (tag, fmt_int(SIZES["sign_rows"])), data, self_top=22, children=None)

    # ------------------------------------------------------------ 2. unified order

    UO_SCRIPT = ("SELECT wxpay_unifiedorder(:mch, :pfx::text || nextval('bench.seq'), 101,"
                 " 'Bench Shop-Item', '203.0.113.7');\n")
    DB_ONLY_SCRIPT = "SELECT bench.order_db_only(:mch, :pfx::text || nextval('bench.seq'));\n"
    # The same DB work after 20 ms idle (a simulator answering after 20 ms
    # leaves the machine idle while each order waits), and the idle alone.
    IDLE_SCRIPT = "SELECT pg_sleep(0.02);\n"
    IDLE_DB_SCRIPT = "BEGIN;\nSELECT pg_sleep(0.02);\n" + DB_ONLY_SCRIPT + "COMMIT;\n"

    def uo_bodies(self, mch, prefix, n):
        """The signed XML the extension sends for n new orders."""
        return [r[0] for r in self.q("""
            SELECT wxpay_to_xml(p || jsonb_build_object('sign', wxpay_sign(p, m.api_key)))
              FROM wxpay.merchants m,
                   LATERAL (SELECT i, jsonb_build_object('appid', m.appid, 'mch_id', m.mch_id,
                                'nonce_str', wxpay_nonce(), 'body', 'Bench Shop-Item',
                                'out_trade_no', %(pfx)s || i, 'total_fee', '101',
                                'spbill_create_ip', '203.0.113.7', 'notify_url', m.notify_url,
                                'trade_type', 'APP',
                                'time_expire', to_char((now() + interval '2 hours') AT TIME ZONE INTERVAL '+08:00',
                                                       'YYYYMMDDHH24MISS')) AS p
                              FROM generate_series(1, %(n)s) AS i) s
             WHERE m.mch_id = %(mch)s ORDER BY i""", {"mch": mch, "pfx": prefix, "n": n})]

    def uo_ext(self, sim, tag, clients, n, mch=None):
        mch = mch or MERCHANTS[sim.name][0]
        self.q("ALTER SEQUENCE bench.seq RESTART")
        sim.reset_stats()
        lsn = self.one("SELECT pg_current_wal_lsn()")
        res = self.pgbench("uo-" + tag, self.UO_SCRIPT, clients, n // clients, {"mch": mch, "pfx": "U%s-" % tag})
        res["wal"] = float(self.one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,))) / res["n"]
        res["stats"] = sim.client_stats()
        return res

    def uo_curl(self, sim, tag, clients, n):
        mch = MERCHANTS[sim.name][0]
        bodies = self.uo_bodies(mch, "C%s-" % tag, n + 1)
        self.check_answer(sim, "/pay/unifiedorder", bodies.pop())
        sim.reset_stats()
        res = self.curl("uo-curl-" + tag, bodies, sim.base + "/pay/unifiedorder", sim.ca, clients)
        res["stats"] = sim.client_stats()
        return res

    def uo_db_only(self, r, n):
        """The DB work of n unified orders alone, 1 client, with its WAL bytes per order."""
        self.q("ALTER SEQUENCE bench.seq RESTART")
        lsn = self.one("SELECT pg_current_wal_lsn()")
        res = self.pgbench("uo-db-%d" % r, self.DB_ONLY_SCRIPT, 1, n, {"mch": MERCHANTS["sim0"][0], "pfx": "D%d-" % r})
        res["wal"] = float(self.one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,))) / n
        return res

    def unified_order(self):
        log("== 2. unified order")
        sim = self.sims["sim0"]
        results = {}
        reuse_ok = True
        reuse_text = []
        # The DB work alone (no HTTP): interleaved with the 1-client runs,
        # so that the floor sees the same disk (fsync) and the same load.
        n1 = SIZES["uo_requests"][1]
        db = []
        for clients, n in SIZES["uo_requests"].items():
            ext, raw = [], []
            for r in range(RUNS):
                e = self.uo_ext(sim, "%d%d" % (clients, r), clients, n)
                c = self.uo_curl(sim, "%d%d" % (clients, r), clients, n)
                ext.append(e)
                raw.append(c)
                if clients == 1:
                    db.append(self.uo_db_only(r, n1))
                hs = e["stats"]["tls_handshakes"]
                conns = e["stats"]["connections"]
                reqs = e["stats"]["requests_total"]
                ok = hs == clients and conns == clients and reqs == n
                reuse_ok &= ok
                reuse_text.append("%d clients, run %d: %d requests over %d connections, %d TLS handshakes%s"
                                  % (clients, r + 1, reqs, conns, hs, "" if ok else "  <-- expected %d" % clients))
            results[clients] = {
                "ext_tps": median([e["tps"] for e in ext]),
                "ext_p50": median([percentile(e["lat"], 50) for e in ext]),
                "ext_p99": median([percentile(e["lat"], 99) for e in ext]),
                "ext_mean": median([statistics.mean(e["lat"]) for e in ext]),
                "curl_rps": median([c["rps"] for c in raw]),
                "curl_p50": median([percentile(c["lat"], 50) for c in raw]),
                "curl_p99": median([percentile(c["lat"], 99) for c in raw]),
                "curl_mean": median([statistics.mean(c["lat"]) for c in raw]),
                "ext_cores": median([e["load"]["ours"] for e in ext]),
                "ext_others": median([e["load"]["others"] for e in ext]),
                "curl_cores": median([c["load"]["ours"] for c in raw]),
                # CPU of every process (backends, worker, simulators,
                # pgbench or curl) per order, ms.
                "ext_cpu": median([e["load"]["ours"] * e["wall"] / e["n"] * 1000 for e in ext]),
                "curl_cpu": median([c["load"]["ours"] * c["wall"] / c["n"] * 1000 for c in raw]),
                "ext_wal": median([e["wal"] for e in ext]),
                "n": n,
            }
            x = results[clients]
            log("   %2d clients: %.0f orders/s (p50 %.2f ms, p99 %.2f ms); curl %.0f/s (p50 %.2f ms, p99 %.2f ms)"
                % (clients, x["ext_tps"], x["ext_p50"], x["ext_p99"], x["curl_rps"], x["curl_p50"], x["curl_p99"]))

        # An API v3 merchant at the same simulator, 1 client, in the same run:
        # JSON, an RSA-2048 signature per request and per answer.
        n1 = SIZES["uo_requests"][1]
        v3 = [self.uo_ext(sim, "V%d" % r, 1, n1, MERCHANT_V3[0]) for r in range(RUNS)]
        v3_tps = median([e["tps"] for e in v3])
        v3_p50 = median([percentile(e["lat"], 50) for e in v3])
        v3_p99 = median([percentile(e["lat"], 99) for e in v3])
        log("   API v3, 1 client: %.0f orders/s (p50 %.2f ms, p99 %.2f ms)" % (v3_tps, v3_p50, v3_p99))

        # The same comparison against a simulator that answers after 20 ms,
        # the order of a real round trip.
        db_mean = median([statistics.mean(d["lat"]) for d in db])
        db_cpu = median([d["load"]["ours"] * d["wall"] / d["n"] * 1000 for d in db])
        db_wal = median([d["wal"] for d in db])
        sim20 = self.sims["sim20"]
        n20 = SIZES["uo_latency20_requests"]
        e20, c20, idle, idle_db = [], [], [], []
        for r in range(RUNS):
            e20.append(self.uo_ext(sim20, "L%d" % r, 1, n20))
            c20.append(self.uo_curl(sim20, "L%d" % r, 1, n20))
            idle.append(self.pgbench("uo-idle-%d" % r, self.IDLE_SCRIPT, 1, n20))
            self.q("ALTER SEQUENCE bench.seq RESTART")
            idle_db.append(self.pgbench("uo-idle-db-%d" % r, self.IDLE_DB_SCRIPT, 1, n20,
                                        {"mch": MERCHANTS["sim0"][0], "pfx": "I%d-" % r}))
        l20 = {"ext_mean": median([statistics.mean(e["lat"]) for e in e20]),
               "curl_mean": median([statistics.mean(c["lat"]) for c in c20]),
               "db_idle": median([statistics.mean(d["lat"]) - statistics.mean(i["lat"]) for d, i in zip(idle_db, idle)]),
               "ext_p99": median([percentile(e["lat"], 99) for e in e20]),
               "curl_p99": median([percentile(c["lat"], 99) for c in c20])}
        self.details["uo"] = {"results": results, "db_mean": db_mean, "db_cpu": db_cpu, "db_wal": db_wal, "l20": l20,
                              "reuse": reuse_text}

        for clients, x in results.items():
            overhead = x["ext_mean"] / x["curl_mean"] - 1
            self.add("2 unified order", "%d client%s: orders/s (p50 / p99 ms)" % (clients, "s" if clients > 1 else ""),
                     "%.0f (%.2f / %.2f)" % (x["ext_tps"], x["ext_p50"], x["ext_p99"]),
                     "curl: %.0f/s (%.2f / %.2f)" % (x["curl_rps"], x["curl_p50"], x["curl_p99"]),
                     "%+.0f%% latency, %.2fx throughput" % (overhead * 100, x["ext_tps"] / x["curl_rps"]),
                     "(report)", None, key="uo_%d" % clients)
        x = results[1]
        self.add("2 unified order", "API v3 merchant, 1 client: orders/s (p50 / p99 ms)",
                 "%.0f (%.2f / %.2f)" % (v3_tps, v3_p50, v3_p99),
                 "v2, same run: %.0f/s (%.2f / %.2f)" % (x["ext_tps"], x["ext_p50"], x["ext_p99"]),
                 "%.2fx v2's throughput" % (v3_tps / x["ext_tps"]), "(report)", None, key="uo_v3")
        self.add("2 unified order", "1 client: DB work alone (same 2 row writes + triggers, no HTTP), ms",
                 "%.3f" % db_mean, "curl round trip: %.3f" % x["curl_mean"],
                 "%.0f%% of the round trip" % (db_mean / x["curl_mean"] * 100), "(report)", None)
        # The floor: the same durable writes alone plus the bare exchange.
        floor = db_mean + x["curl_mean"]
        self.add("2 unified order", "1 client: mean ms per order against the floor",
                 "%.3f" % x["ext_mean"], "DB work alone + curl round trip: %.3f + %.3f = %.3f"
                 % (db_mean, x["curl_mean"], floor), "%.2fx the floor" % (x["ext_mean"] / floor),
                 "<= 1.2x the floor", x["ext_mean"] / floor <= 1.2, key="uo_floor")
        self.add("2 unified order", "1 client: WAL bytes per order", "%.0f" % x["ext_wal"],
                 "the same row writes alone: %.0f" % db_wal, "%.2fx" % (x["ext_wal"] / db_wal), "(report)", None)
        top = max(results)
        xt = results[top]
        self.add("2 unified order", "%d clients: CPU ms per order, all processes (backends, simulator, pgbench)"
                 % top, "%.3f" % xt["ext_cpu"], "curl + simulator per request: %.3f; DB work alone: %.3f"
                 % (xt["curl_cpu"], db_cpu), "%.2fx the bare exchange" % (xt["ext_cpu"] / xt["curl_cpu"]),
                 "<= 0.45 ms", xt["ext_cpu"] <= 0.45, key="uo_cpu")
        overhead20 = l20["ext_mean"] / l20["curl_mean"] - 1
        self.add("2 unified order", "1 client, simulator answering after 20 ms: mean ms",
                 "%.2f" % l20["ext_mean"], "curl: %.2f; DB work alone after 20 ms idle: %.3f ms (%+.1f%%)"
                 % (l20["curl_mean"], l20["db_idle"], 100 * l20["db_idle"] / l20["curl_mean"]),
                 "%+.1f%% latency" % (overhead20 * 100), "< 10% overhead", overhead20 < 0.10, key="uo_l20")
        self.add("2 unified order", "connection and TLS session reuse (all %d runs)" % (len(reuse_text)),
                 "1 handshake per client", "%d requests" % sum(SIZES["uo_requests"].values()),
                 "handshakes = clients" if reuse_ok else "MORE handshakes than clients",
                 "reuse proven", reuse_ok, key="uo_reuse")

        if PROFILE and (x["ext_mean"] / floor > 1.2 or xt["ext_cpu"] > 0.45 or os.environ.get("BENCH_UO_PROFILE")):
            for clients, key in ((1, "uo"), (top, "uo%d" % top)):
                log("   profiling unified order at %d client%s" % (clients, "s" if clients > 1 else ""))
                self.q("ALTER SEQUENCE bench.seq RESTART")
                data = self.pgbench_profiled("uo-prof%d" % clients, self.UO_SCRIPT, clients,
                                             SIZES["uo_requests"][clients] // clients,
                                             {"mch": MERCHANTS["sim0"][0], "pfx": "UP%d-" % clients})
                self.perf_report(key, "2. wxpay_unifiedorder at %d client%s against sim0 (the backend%s only)"
                                 % (clients, "s" if clients > 1 else "", "s" if clients > 1 else ""), data,
                                 self_top=20)

    # ------------------------------------------------------------ 3. notifications

    NOTIFY_SCRIPT = ("SELECT wxpay_handle_notify(body) FROM bench.notify"
                     " WHERE id = (SELECT nextval('bench.nseq'));\n")
    FLOOR_SCRIPT = ("INSERT INTO bench.notify_sink SELECT id, body FROM bench.notify"
                    " WHERE id = (SELECT nextval('bench.nseq'));\n")

    def notification_bodies(self, prefix, n):
        """Signed payment notifications made by the simulator's own code
        (wxsim.Sim.payment_notification), without a network round trip."""
        sys.path.insert(0, os.path.join(ROOT, "sim"))
        import wxsim
        mch, appid, key = MERCHANTS["sim0"]
        sim = wxsim.Sim(None, None, None)
        sim.merchants[mch] = wxsim.Merchant(mch, appid, key)
        bodies = []
        for i in range(1, n + 1):
            order = wxsim.Order(mch, "%s%d" % (prefix, i), {"trade_type": "APP"}, 100 + i % 900, "wxbench")
            bodies.append(sim.payment_notification(order))
        return bodies

    def load_notifications(self, prefix, n, base, late):
        """n orders in wxpay.orders and 2n notification rows from id base:
        each body twice, the copy right behind its original (racing it
        for the order's row lock) or LATE positions later (arriving once
        the original has committed, as WeChat Pay's retries do)."""
        mch = MERCHANTS["sim0"][0]
        # Orders go straight into the table (creating them is section 2).
        self.q("INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)"
               " SELECT %s, %s || i, 'APP', 'Bench Shop-Item', 100 + i %% 900, '203.0.113.7'"
               " FROM generate_series(1, %s) AS i", (mch, prefix, n))
        bodies = self.notification_bodies(prefix, n)
        if late:
            order = []
            for j in range(n + late):
                if j < n:
                    order.append(bodies[j])
                if j >= late:
                    order.append(bodies[j - late])
        else:
            order = [b for body in bodies for b in (body, body)]
        buf = io.StringIO("".join("%d\t%s\n" % (base + k, body) for k, body in enumerate(order)))
        with self.db.cursor() as cur:
            cur.copy_expert("COPY bench.notify (id, body) FROM STDIN", buf)

    def notifications(self):
        log("== 3. notifications")
        n = SIZES["notify_orders"]
        clients = 8
        late = 64
        self.q("CREATE TABLE bench.notify (id bigint PRIMARY KEY, body text NOT NULL)")
        self.q("CREATE TABLE bench.notify_sink (id bigint, body text)")
        self.q("CREATE SEQUENCE bench.nseq")
        layouts = (("racing", 0), ("late", late))
        for r in range(RUNS):
            for k, (name, gap) in enumerate(layouts):
                self.load_notifications("N%s%d-" % (name[0], r), n, (2 * r + k) * 10_000_000 + 1, gap)
        self.q("VACUUM ANALYZE wxpay.orders, bench.notify")

        per_client = 2 * n // clients
        res = {name: [] for name, _ in layouts}
        floor = []
        listener = PaidListener(self.host, self.port)
        for r in range(RUNS):
            base = 2 * r * 10_000_000 + 1
            self.q("SELECT setval('bench.nseq', %s, false)", (base,))
            floor.append(self.pgbench("notify-floor-%d" % r, self.FLOOR_SCRIPT, clients, per_client, latencies=False))
            for k, (name, _) in enumerate(layouts):
                self.q("SELECT setval('bench.nseq', %s, false)", ((2 * r + k) * 10_000_000 + 1,))
                res[name].append(self.pgbench("notify-%s-%d" % (name, r), self.NOTIFY_SCRIPT, clients, per_client))
            log("   run %d: %.0f notifications/s with racing duplicates, %.0f/s with late ones"
                " (durable insert of the body alone: %.0f/s)"
                % (r + 1, res["racing"][-1]["tps"], res["late"][-1]["tps"], floor[-1]["tps"]))
        delays = self.publication_delays(listener, n * len(layouts) * RUNS)
        listener.stop()
        log("   paid events, commit to listener: p50 %.1f ms, p99 %.1f ms, %d missed"
            % (delays["p50"], delays["p99"], delays["missed"]))

        # Exactly one SUCCESS transition per order, every duplicate recognised.
        check = self.q("""
            SELECT (SELECT count(*) FROM wxpay.orders WHERE out_trade_no ~ '^N[rl][0-9]-' AND state = 'SUCCESS'),
                   (SELECT count(*) FROM wxpay.order_events WHERE out_trade_no ~ '^N[rl][0-9]-'
                       AND new_state = 'SUCCESS'),
                   (SELECT count(DISTINCT out_trade_no) FROM wxpay.order_events
                     WHERE out_trade_no ~ '^N[rl][0-9]-' AND new_state = 'SUCCESS'),
                   (SELECT count(*) FILTER (WHERE outcome = 'accepted') FROM wxpay.notifications),
                   (SELECT count(*) FILTER (WHERE outcome = 'duplicate') FROM wxpay.notifications),
                   (SELECT count(*) FILTER (WHERE outcome = 'rejected') FROM wxpay.notifications)""")[0]
        paid, events, distinct, accepted, duplicate, rejected = check
        total = RUNS * n * len(layouts)
        once = paid == total and events == total and distinct == total and accepted == total \
            and duplicate == total and rejected == 0
        floor_tps = median([f["tps"] for f in floor])
        summary = {}
        for name, _ in layouts:
            runs = res[name]
            summary[name] = {"tps": median([e["tps"] for e in runs]), "runs": [e["tps"] for e in runs],
                             "p50": median([percentile(e["lat"], 50) for e in runs]),
                             "p99": median([percentile(e["lat"], 99) for e in runs]),
                             "cores": median([e["load"]["ours"] for e in runs]),
                             "others": median([e["load"]["others"] for e in runs])}
        self.details["notify"] = {"layouts": summary, "floor": [f["tps"] for f in floor], "floor_tps": floor_tps,
                                  "check": check, "n": n, "clients": clients, "late": late,
                                  "floor_cores": median([f["load"]["ours"] for f in floor])}
        targets = {"racing": 0.50, "late": 0.60}
        for name, label in (("racing", "each duplicate racing its original"),
                            ("late", "duplicates %d positions later" % late)):
            x = summary[name]
            self.add("3 notifications", "8 clients, half duplicates, %s: notifications/s (p50 / p99 ms)" % label,
                     "%.0f (%.2f / %.2f)" % (x["tps"], x["p50"], x["p99"]),
                     "durable insert of the body alone: %.0f/s" % floor_tps,
                     "%.0f%% of the floor" % (x["tps"] / floor_tps * 100),
                     ">= %d%% of the floor" % (targets[name] * 100), x["tps"] >= targets[name] * floor_tps,
                     key="notify_" + name)
        self.details["notify"]["delays"] = delays
        self.add("3 notifications", "paid event: commit to the listener's wake-up, during the replays "
                 "(%s events, p50 / p99 / max ms)" % fmt_int(delays["events"]),
                 "%.1f / %.1f / %.1f" % (delays["p50"], delays["p99"], delays["max"]),
                 "every event heard: %s" % ("yes" if delays["missed"] == 0 else "NO, %d missed" % delays["missed"]),
                 "", "p99 < 100 ms", delays["p99"] < 100 and delays["missed"] == 0, key="notify_delay")
        self.add("3 notifications", "exactly one SUCCESS transition per order (%s orders)" % fmt_int(total),
                 "%d paid, %d SUCCESS events" % (paid, events),
                 "%d accepted / %d duplicate / %d rejected" % (accepted, duplicate, rejected),
                 "exact" if once else "NOT exact", "exactly once", once, key="notify_once")

        missed = any(summary[name]["tps"] < targets[name] * floor_tps for name in targets)
        if missed:
            self.notification_waits(n, clients, per_client, late)
        if PROFILE and missed:
            log("   profiling notifications")
            self.load_notifications("NP-", n, 90_000_001, 0)
            self.q("SELECT setval('bench.nseq', 90000001, false)")
            data = self.pgbench_profiled("notify-prof", self.NOTIFY_SCRIPT, clients, per_client)
            self.perf_report("notify", "3. wxpay_handle_notify, 8 clients, racing duplicates (the 8 backends only)",
                             data, self_top=20)

    def notification_waits(self, n, clients, per_client, late):
        """Where the backends wait, sampled from pg_stat_activity during one
        more replay with late duplicates."""
        log("   sampling where the notification backends wait")
        self.load_notifications("NW-", n, 91_000_001, late)
        self.q("VACUUM ANALYZE wxpay.orders, bench.notify")
        self.q("SELECT setval('bench.nseq', %s, false)", (91_000_001,))
        res, waits, waiters = self.sample_waits(
            lambda: self.pgbench("notify-waits", self.NOTIFY_SCRIPT, clients, per_client, latencies=False))
        self.details["notify"]["waits"] = {"sampled_tps": res["tps"], "waits": waits[:8], "notify_waiters": waiters}

    def publication_delays(self, listener, expected):
        """For every paid event published during the replays: the time from
        its transaction's commit (track_commit_timestamp) to the first
        wxpay_order_paid notification whose seq covers it, as the listener
        received it."""
        deadline = time.time() + 30
        while time.time() < deadline:
            published = self.one("SELECT count(*) FROM wxpay.paid_events p JOIN wxpay.order_events e"
                                 " ON e.id = p.event_id WHERE e.out_trade_no ~ '^N[rl][0-9]-'")
            if published >= expected and listener.newest() >= self.one("SELECT max(seq) FROM wxpay.paid_events"):
                break
            time.sleep(0.1)
        rows = self.q("""
            SELECT p.seq, extract(epoch FROM pg_xact_commit_timestamp(((e.xid::text::bigint % 4294967296)::text)::xid))
              FROM wxpay.paid_events p JOIN wxpay.order_events e ON e.id = p.event_id
             WHERE e.out_trade_no ~ '^N[rl][0-9]-' ORDER BY p.seq""")
        heard = listener.heard()
        delays, missed, k = [], 0, 0
        for seq, committed in rows:
            while k < len(heard) and heard[k][1] < seq:
                k += 1
            if k == len(heard) or committed is None:
                missed += 1
                continue
            delays.append((heard[k][0] - float(committed)) * 1000.0)
        return {"events": len(rows), "missed": missed,
                "p50": percentile(delays, 50) if delays else float("nan"),
                "p99": percentile(delays, 99) if delays else float("nan"),
                "max": max(delays) if delays else float("nan")}

    # ------------------------------------------------------------ 4. reconciliation

    def query_bodies(self, mch, prefix, n):
        return [r[0] for r in self.q("""
            SELECT wxpay_to_xml(p || jsonb_build_object('sign', wxpay_sign(p, m.api_key)))
              FROM wxpay.merchants m,
                   LATERAL (SELECT i, jsonb_build_object('appid', m.appid, 'mch_id', m.mch_id,
                                'nonce_str', wxpay_nonce(), 'out_trade_no', %(pfx)s || i) AS p
                              FROM generate_series(1, %(n)s) AS i) s
             WHERE m.mch_id = %(mch)s ORDER BY i""", {"mch": mch, "pfx": prefix, "n": n})]

    def set_worker(self, concurrency, poll_interval):
        self.q("ALTER SYSTEM SET wxpay.max_concurrency = %s", (str(concurrency),))
        self.q("ALTER SYSTEM SET wxpay.poll_interval = %s", (poll_interval,))
        self.q("SELECT pg_reload_conf()")
        time.sleep(0.5)

    def reconcile_one(self, tag, sim, concurrency, n, raw_client=True, profile=False, before_wake=None):
        mch = MERCHANTS[sim.name][0]
        prefix = "R%s-" % tag
        # Orders with the worker asleep: poll_interval 1h puts them an hour out.
        self.set_worker(concurrency, "1h")
        self.q("ALTER SEQUENCE bench.seq RESTART")
        clients = 16
        made = self.pgbench("rec-orders-" + tag, self.UO_SCRIPT, clients, n // clients,
                            {"mch": mch, "pfx": prefix}, latencies=False)
        n = made["n"]
        for i in range(1, n + 1):
            sim.ctl("POST", "/_sim/pay", {"mch_id": mch, "out_trade_no": "%s%d" % (prefix, i), "notify": False})

        raw = None
        if raw_client:
            bodies = self.query_bodies(mch, prefix, n)
            self.check_answer(sim, "/pay/orderquery", bodies[0])
            sim.reset_stats()
            raw = self.curl("rec-curl-" + tag, bodies, sim.base + "/pay/orderquery", sim.ca, concurrency)
            raw["stats"] = sim.client_stats()

        self.set_worker(concurrency, "1s")
        rss_before = self.worker_rss()
        wpid = self.worker_pid()
        start_event = self.one("SELECT COALESCE(max(id), 0) FROM wxpay.order_events")
        sim.reset_stats()
        cpu0 = self.cpu_ticks(wpid), self.cpu_ticks(sim.pid)
        self.q("UPDATE wxpay.orders SET next_query_at = now() WHERE mch_id = %s AND out_trade_no LIKE %s"
               " AND state = 'NOTPAY'", (mch, prefix + "%"))
        if before_wake:
            before_wake()       # the orders are due, the worker still asleep
        ctx = self.perf("rec-" + tag, [wpid]) if profile else contextlib.nullcontext()
        with ctx as data:
            t0 = self.one("SELECT clock_timestamp() FROM pg_reload_conf()")    # wakes the worker
            wall0 = time.perf_counter()
            limit = sim.latency_ms and concurrency * 1000.0 / sim.latency_ms
            timeout = 60 + (2.0 * n / limit if limit else 0)
            done = 0
            # What the worker is doing, sampled every 10 ms from the activity
            # it reports (claiming, waiting for WeChat Pay, applying answers),
            # and how many requests the simulator answered in between.
            phases = {}
            answered = {}
            prev = None
            k = 0
            while time.perf_counter() - wall0 < timeout:
                row = self.q("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (wpid,))
                requests = sim.stats()["requests_total"]
                phase = "other"
                if row and row[0][0] == "active":
                    phase = {"wxpay: claiming due orders": "claim", "wxpay: waiting for WeChat Pay": "network",
                             "wxpay: applying answers": "apply", "wxpay: scheduling": "schedule"}.get(row[0][1], "other")
                phases[phase] = phases.get(phase, 0) + 1
                if prev is not None:
                    answered[prev[0]] = answered.get(prev[0], 0) + requests - prev[1]
                prev = (phase, requests)
                k += 1
                if k % 10 == 0:
                    done = self.one("SELECT count(*) FROM wxpay.order_events WHERE id > %s AND source = 'query'"
                                    " AND new_state = 'SUCCESS' AND out_trade_no LIKE %s",
                                    (start_event, prefix + "%"))
                    if done >= n:
                        break
                time.sleep(0.01)
        wall_loop = time.perf_counter() - wall0
        cpu1 = self.cpu_ticks(wpid), self.cpu_ticks(sim.pid)
        t_end = self.one("SELECT max(created_at) FROM wxpay.order_events WHERE id > %s AND source = 'query'",
                         (start_event,))
        elapsed = (t_end - t0).total_seconds()
        stats = sim.client_stats()
        queries = stats["requests"].get("/pay/orderquery", 0)
        handshakes = stats["tls_handshakes"]
        resumed = stats.get("tls_resumed", 0)
        rss_after = self.worker_rss()
        total_samples = sum(phases.values()) or 1
        shares = {p: v / total_samples for p, v in phases.items()}
        # Applying costs this much worker time per order.
        apply_s = shares.get("apply", 0.0) * elapsed
        res = {"tag": tag, "sim": sim.name, "latency_ms": sim.latency_ms, "concurrency": concurrency, "n": n,
               "done": done, "elapsed": elapsed, "qps": queries / elapsed if elapsed > 0 else 0,
               "orders_per_s": done / elapsed if elapsed > 0 else 0, "queries": queries,
               "handshakes": handshakes, "resumed": resumed, "rss_before": rss_before, "rss_after": rss_after,
               "phases": shares, "answered": answered,
               "raw": raw and {"rps": raw["rps"], "handshakes": raw["stats"]["tls_handshakes"]},
               "limit": limit or None, "apply_s": apply_s,
               "worker_cpu_s": (cpu1[0] - cpu0[0]) / os.sysconf("SC_CLK_TCK"),
               "sim_cpu_s": (cpu1[1] - cpu0[1]) / os.sysconf("SC_CLK_TCK"), "wall_loop": wall_loop,
               "retries": self.one("SELECT count(*) FILTER (WHERE query_count > 1) FROM wxpay.orders"
                                   " WHERE mch_id = %s AND out_trade_no LIKE %s", (mch, prefix + "%"))}
        if profile:
            res["perf"] = data
        log("   %s: %d orders in %.2f s = %.0f queries/s (%d handshakes; claim %.0f%%, network %.0f%%, apply %.0f%%)%s"
            % (tag, done, elapsed, res["qps"], handshakes, 100 * shares.get("claim", 0),
               100 * shares.get("network", 0), 100 * shares.get("apply", 0),
               "; raw curl %.0f/s" % raw["rps"] if raw else ""))
        return res

    def reconciliation(self):
        log("== 4. reconciliation")
        n = SIZES["rec_orders"]
        rss_start = self.worker_rss()
        # The runs with a target are repeated and the median run (by
        # queries/s) reported; the two at max_concurrency 1 are long, once.
        runs = [self.reconcile_one("L0C1", self.sims["sim0"], 1, n)]
        for tag, sim in (("L0C64", self.sims["sim0"]), ("L20C64", self.sims["sim20"])):
            repeats = sorted((self.reconcile_one("%s%s" % (tag, chr(ord("a") + k)), sim, 64, n)
                              for k in range(RUNS)), key=lambda r: r["qps"])
            median_run = repeats[len(repeats) // 2]
            median_run["all_qps"] = [r["qps"] for r in repeats]
            median_run["all_raw"] = [r["raw"]["rps"] for r in repeats if r["raw"]]
            runs.append(median_run)
        runs.insert(2, self.reconcile_one("L20C1", self.sims["sim20"], 1, SIZES["rec_orders_l20_c1"],
                                          raw_client=False))
        rss_end = self.worker_rss()
        # The worker's libcurl pattern alone, without and with a connection
        # cache as large as the concurrency.
        sim = self.sims["sim0"]
        pool = {}
        for maxconnects in (0, 64):
            cmd = [self.args.curl_pool, sim.base + "/pay/orderquery", sim.ca, "64", "10", "1000"]
            out = subprocess.run(cmd + ([str(maxconnects)] if maxconnects else []), capture_output=True,
                                 text=True, check=True).stdout
            pool[maxconnects] = int(out.strip())
        sets_maxconnects = any("CURLMOPT_MAXCONNECTS" in open(f).read()
                               for f in glob.glob(os.path.join(ROOT, "src", "*.c")))
        self.details["rec"] = {"runs": runs, "rss_start": rss_start, "rss_end": rss_end, "pool": pool,
                               "sets_maxconnects": sets_maxconnects}
        for r in runs:
            label = "%s orders, max_concurrency %d, simulator +%d ms: queries/s" % (
                fmt_int(r["n"]), r["concurrency"], r["latency_ms"])
            complete = r["done"] == r["n"] and r["queries"] == r["n"]
            if r["limit"]:
                frac = r["qps"] / r["limit"]
                baseline = "limit %d x 1000/%d = %.0f/s" % (r["concurrency"], r["latency_ms"], r["limit"])
                if r["raw"]:
                    baseline += "; curl %.0f/s" % r["raw"]["rps"]
                if r["concurrency"] >= 64:
                    target, met = ">= 2,000/s and >= 80% of limit", r["qps"] >= 2000 and frac >= 0.8 and complete
                else:
                    target, met = ">= 80% of limit", frac >= 0.8 and complete
                ratio = "%.0f%% of limit" % (frac * 100)
                if r["raw"]:
                    ratio += " (%.0f%% of curl)" % (100 * r["qps"] / r["raw"]["rps"])
            else:
                baseline = "curl, same requests and concurrency: %.0f/s" % r["raw"]["rps"]
                ratio = "%.0f%% of curl" % (r["qps"] / r["raw"]["rps"] * 100)
                if r["concurrency"] >= 64:
                    target, met = ">= 2,000/s", r["qps"] >= 2000 and complete
                else:
                    target, met = "(report)", None
            self.add("4 reconciliation", label, "%.0f (%.1f s)" % (r["qps"], r["elapsed"]), baseline, ratio,
                     target, met, key="rec_" + r["tag"])
        self.add("4 reconciliation", "libcurl alone, the worker's pattern (64 at once, 10 rounds of 1,000) with "
                 "the default connection cache: connections opened%s"
                 % (" (the worker sets CURLMOPT_MAXCONNECTS)" if sets_maxconnects else ""), "%d" % pool[0],
                 "with CURLMOPT_MAXCONNECTS 64: %d" % pool[64], "%.1fx" % (pool[0] / pool[64]), "(report)", None)
        self.add("4 reconciliation", "worker RSS in kB, before / after all runs (private part)",
                 "%d / %d (%d / %d)" % (rss_start[0], rss_end[0], rss_start[2], rss_end[2]),
                 "peak %d" % rss_end[1], "%+d kB (private %+d kB)" % (rss_end[0] - rss_start[0],
                                                                        rss_end[2] - rss_start[2]),
                 "(report)", None)

        missed = [r for r in runs if r["limit"] and r["qps"] < 0.8 * r["limit"]] + \
                 [r for r in runs if r["concurrency"] >= 64 and r["qps"] < 2000]
        if PROFILE and missed:
            log("   profiling the worker")
            r = self.reconcile_one("P", self.sims["sim0"], 64, SIZES["rec_profile_orders"], raw_client=False,
                                   profile=True)
            self.perf_report("rec", "4. the wxpay worker reconciling %s orders at max_concurrency 64 (worker only)"
                             % fmt_int(r["n"]), r["perf"], self_top=18)
        self.set_worker(16, "1h")

    # ------------------------------------------------------------ 5. the seed's way

    def server_cpu(self):
        """CPU seconds so far of the cluster (postmaster and every backend
        alive now) and the simulators."""
        pm = self.postmaster_pid()
        ticks = self.proc_cpu(pm, True)[0] + sum(self.proc_cpu(s.pid, True)[0] for s in self.sims.values())
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                t, ppid = self.proc_cpu(int(entry))
                if ppid == pm:
                    ticks += t
        return ticks / os.sysconf("SC_CLK_TCK")

    def app_run(self, mode, procs, n, tag):
        """procs application processes (bench/seed_app.py) creating n orders
        each, all started together once every one is connected and warm."""
        sim = self.sims["sim0"]
        mch, appid, key = MERCHANTS["sim0"]
        children = []
        for k in range(procs):
            cfg = {"mode": mode, "dsn": "host=%s port=%d user=postgres dbname=postgres" % (self.host, self.port),
                   "base": sim.base, "ca": sim.ca, "mch_id": mch, "appid": appid, "api_key": key,
                   "notify_url": NOTIFY_URL, "prefix": "A%s%s%d-" % (mode[0], tag, k), "n": n}
            children.append(subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "bench", "seed_app.py"),
                                              json.dumps(cfg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             text=True))
        for c in children:
            if c.stdout.readline().strip() != "ready":
                raise RuntimeError("a %s application process failed to start" % mode)
        sim.reset_stats()
        server0 = self.server_cpu()
        snap = self.cpu_snapshot()
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        out = [json.loads(c.stdout.readline()) for c in children]
        server = self.server_cpu() - server0
        load = self.load_between(snap, self.cpu_snapshot())
        for c in children:
            c.stdin.close()
            if c.wait() != 0:
                raise RuntimeError("a %s application process failed" % mode)
        wall = max(o["end"] for o in out) - min(o["start"] for o in out)
        lat = [x for o in out for x in o["lat"]]
        app = sum(o["cpu"] for o in out)
        stats = sim.client_stats()
        return {"tps": len(lat) / wall, "lat": lat, "n": len(lat), "wall": wall, "app_cpu": app,
                "server_cpu": server, "cpu_ms": 1000.0 * (app + server) / len(lat),
                "app_ms": 1000.0 * app / len(lat), "load": load,
                "requests": stats["requests_total"], "handshakes": stats["tls_handshakes"]}

    def seed_way(self):
        log("== 5. the seed's way: a Python application signing and posting itself, beside wxpay_unifiedorder")
        self.q("CREATE TABLE IF NOT EXISTS bench.seed_orders (mch_id text, out_trade_no text, total_fee integer"
               " NOT NULL, body text NOT NULL, state text NOT NULL DEFAULT 'NOTPAY', prepay_id text,"
               " prepay_at timestamptz, created_at timestamptz NOT NULL DEFAULT now(),"
               " PRIMARY KEY (mch_id, out_trade_no))")
        out = {}
        for r in range(RUNS):
            for procs in (1, 8):
                n = SIZES["seed_orders"] // procs
                for mode in ("ext", "seed"):
                    res = self.app_run(mode, procs, n, "%d%d" % (procs, r))
                    # Every process connected while warming up: no new handshake.
                    if res["requests"] != res["n"] or res["handshakes"] != 0:
                        raise RuntimeError("%s, %d processes: %d requests and %d TLS handshakes for %d orders"
                                           % (mode, procs, res["requests"], res["handshakes"], res["n"]))
                    out.setdefault((procs, mode), []).append(res)
                log("   run %d, %d process%s: wxpay_unifiedorder %.0f orders/s, %.3f ms CPU each; the seed's way "
                    "%.0f orders/s, %.3f ms CPU each" % (r + 1, procs, "es" if procs > 1 else "",
                                                         out[(procs, "ext")][-1]["tps"], out[(procs, "ext")][-1]["cpu_ms"],
                                                         out[(procs, "seed")][-1]["tps"],
                                                         out[(procs, "seed")][-1]["cpu_ms"]))
        summary = {}
        for (procs, mode), runs in out.items():
            summary[(procs, mode)] = {
                "tps": median([x["tps"] for x in runs]), "runs": [x["tps"] for x in runs],
                "p50": median([percentile(x["lat"], 50) for x in runs]),
                "p99": median([percentile(x["lat"], 99) for x in runs]),
                "cpu_ms": median([x["cpu_ms"] for x in runs]), "app_ms": median([x["app_ms"] for x in runs]),
                "others": median([x["load"]["others"] for x in runs]), "n": runs[0]["n"]}
        self.details["seed"] = summary
        for procs in (1, 8):
            e, s = summary[(procs, "ext")], summary[(procs, "seed")]
            label = "%d application process%s" % (procs, "es" if procs > 1 else "")
            self.add("5 seed's way", "%s, wxpay_unifiedorder via psycopg2: orders/s (p50 / p99 ms), CPU ms/order"
                     % label, "%.0f (%.2f / %.2f), %.3f" % (e["tps"], e["p50"], e["p99"], e["cpu_ms"]),
                     "the seed's way: %.0f/s (%.2f / %.2f), %.3f" % (s["tps"], s["p50"], s["p99"], s["cpu_ms"]),
                     "%.2fx throughput, %.2fx CPU" % (e["tps"] / s["tps"], e["cpu_ms"] / s["cpu_ms"]),
                     "(report)", None, key="seed_%d" % procs)

    # ------------------------------------------------------------ 6. cost as the tables grow

    def growth_sizes(self):
        default = "10000,100000" if QUICK else "10000,1000000"
        return [int(x) for x in os.environ.get("BENCH_GROWTH_SIZES", default).split(",")]

    def table_counts(self):
        """Rows in every table of schema wxpay."""
        tables = [r[0] for r in self.q("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n"
                                       " ON n.oid = c.relnamespace WHERE n.nspname = 'wxpay' AND c.relkind = 'r'"
                                       " ORDER BY 1")]
        return {t: self.one("SELECT count(*) FROM %s" % t) for t in tables}

    def growth_load(self, first, last):
        mch, appid, _ = MERCHANTS["sim0"]
        self.psql_file(os.path.join(ROOT, "bench", "growth_load.sql"),
                       {"mch": mch, "appid": appid, "first": first, "last": last})

    def growth_shape_check(self):
        """One order paid through the extension and one loaded in bulk must
        leave the same rows in every wxpay table."""
        sim = self.sims["sim0"]
        mch = MERCHANTS["sim0"][0]
        before = self.table_counts()
        self.q("SELECT wxpay_unifiedorder(%s, 'GS-1', 101, 'Bench Shop-Item', '203.0.113.7')", (mch,))
        reply = self.one("SELECT wxpay_handle_notify(%s)", (self.notification_bodies("GS-", 1)[0],))
        assert "SUCCESS" in reply, reply
        real = self.table_counts()
        self.growth_load(1, 1)          # order G1: a paid one
        bulk = self.table_counts()
        d_real = {t: real[t] - before[t] for t in real}
        d_bulk = {t: bulk[t] - real.get(t, 0) for t in bulk}
        if d_real != d_bulk:
            raise RuntimeError("bench/growth_load.sql no longer leaves what the extension leaves for a paid "
                               "order: through the extension %s, in bulk %s" % (d_real, d_bulk))
        return {t: v for t, v in d_real.items() if v}

    def growth_plans(self, tag):
        """The plan of every statement the extension runs for a notification
        (new and duplicate), a unified order and an order query, caught with
        auto_explain, and of the worker's own scans."""
        mch = MERCHANTS["sim0"][0]
        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        plans = []
        with conn.cursor() as cur:
            for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                            "SET auto_explain.log_nested_statements = on", "SET auto_explain.log_level = notice",
                            "SET client_min_messages = notice"):
                cur.execute(setting)
            otn = "GP%s-1" % tag
            body = self.notification_bodies("GP%s-" % tag, 1)[0]
            # The query before the notification: the simulator has not seen
            # this order paid (the notification is made here).
            calls = (("wxpay_unifiedorder", "SELECT wxpay_unifiedorder(%s, %s, 101, 'Bench Shop-Item', '203.0.113.7')",
                      (mch, otn)),
                     ("wxpay_orderquery", "SELECT wxpay_orderquery(%s, %s)", (mch, otn)),
                     ("wxpay_handle_notify (first delivery)", "SELECT wxpay_handle_notify(%s)", (body,)),
                     ("wxpay_handle_notify (duplicate)", "SELECT wxpay_handle_notify(%s)", (body,)))
            for label, sql, args in calls:
                del conn.notices[:]
                cur.execute(sql, args)
                for notice in conn.notices:
                    m = re.search(r"Query Text: (.*?)\n(.*)", notice, re.S)
                    if m and "wxpay" in m.group(1) and not m.group(1).lstrip().upper().startswith("SELECT WXPAY_"):
                        plans.append((label, " ".join(m.group(1).split()), m.group(2).rstrip()))
            cur.execute("SET auto_explain.log_min_duration = -1")
            # The plan the worker keeps: generic after a few executions.
            cur.execute("SET plan_cache_mode = force_generic_plan")
            sample = {"integer": "1000", "double precision": "70", "xid8": "pg_snapshot_xmin(pg_current_snapshot())"}
            for name, query, argtypes in self.q("SELECT name, query, argtypes FROM wxpay.worker_queries()"):
                types = [t.strip() for t in argtypes.split(",")] if argtypes else []
                cur.execute("PREPARE growth_q%s AS %s" % ("(%s)" % argtypes if argtypes else "", query))
                cur.execute("EXPLAIN (COSTS OFF) EXECUTE growth_q%s"
                            % ("(%s)" % ", ".join(sample[t] for t in types) if types else ""))
                plans.append(("worker: " + name, " ".join(query.split()), "\n".join(r[0] for r in cur.fetchall())))
                cur.execute("DEALLOCATE growth_q")
        conn.close()
        # A sequential scan counts when its table holds rows enough for an
        # index to matter: over an empty refunds table it is the right plan.
        rows = dict(self.q("SELECT relname, reltuples FROM pg_class WHERE relnamespace = 'wxpay'::regnamespace"
                           " AND relkind = 'r'"))
        scans = [(label, q) for label, q, plan in plans
                 for table in re.findall(r"Seq Scan on (\w+)", plan) if rows.get(table, 0) >= GROWTH_SCAN_ROWS]
        return {"plans": plans, "scans": scans}

    def growth_claim_buffers(self, out):
        """EXPLAIN (ANALYZE, BUFFERS) of the worker's claim while orders are
        due and the worker asleep, rolled back."""
        query, argtypes = self.q("SELECT query, argtypes FROM wxpay.worker_queries() WHERE name = 'claim_orders'")[0]
        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
        with conn.cursor() as cur:
            cur.execute("PREPARE growth_claim(%s) AS %s" % (argtypes, query))
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) EXECUTE growth_claim(1000, 70)")
            plan = "\n".join(r[0] for r in cur.fetchall())
        conn.rollback()
        conn.close()
        hit = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
        out["claim_plan"] = plan
        out["claim_buffers"] = (int(hit.group(1)) + int(hit.group(2) or 0)) if hit else None
        out["claim_ms"] = float(re.search(r"Execution Time: ([0-9.]+) ms", plan).group(1))
        out["claimed"] = int(re.search(r"Update on orders o \(actual rows=(\d+)", plan).group(1)) \
            if re.search(r"Update on orders o \(actual rows=(\d+)", plan) else None

    def growth_point(self, k, size):
        """Everything measured at one size, each beside its baseline."""
        sim = self.sims["sim0"]
        n_notify = SIZES["growth_notify_orders"]
        n_uo = SIZES["growth_uo_orders"]
        clients = 8
        notify, floor, uo, curl = [], [], [], []
        for r in range(RUNS):
            base = 200_000_000 + k * 10_000_000 + r * 1_000_000 + 1
            self.load_notifications("GN%d%d-" % (k, r), n_notify, base, 64)
            self.q("ANALYZE bench.notify")
            self.q("SELECT setval('bench.nseq', %s, false)", (base,))
            floor.append(self.pgbench("growth-floor-%d%d" % (k, r), self.FLOOR_SCRIPT, clients,
                                      2 * n_notify // clients, latencies=False)["tps"])
            self.q("SELECT setval('bench.nseq', %s, false)", (base,))
            notify.append(self.pgbench("growth-notify-%d%d" % (k, r), self.NOTIFY_SCRIPT, clients,
                                       2 * n_notify // clients, latencies=False)["tps"])
            uo.append(self.uo_ext(sim, "G%d%d" % (k, r), 4, n_uo)["tps"])
            curl.append(self.uo_curl(sim, "G%d%d" % (k, r), 4, n_uo)["rps"])
        out = {"size": size, "notify": median(notify), "floor": median(floor), "uo": median(uo),
               "curl": median(curl), "notify_runs": notify, "floor_runs": floor, "uo_runs": uo, "curl_runs": curl}
        # libcurl drops a connection idle for more than 118 s (CURLOPT_MAXAGE_CONN),
        # and loading a size takes minutes: a small untimed round first opens
        # the worker's 64 connections again, as at every other size, so the
        # timed round pays no TLS handshakes.
        self.reconcile_one("GW%d" % k, sim, 64, 128, raw_client=False)
        rec = self.reconcile_one("G%d" % k, sim, 64, SIZES["growth_rec_orders"],
                                 before_wake=lambda: self.growth_claim_buffers(out))
        out["rec"] = {"qps": rec["qps"], "curl": rec["raw"]["rps"], "elapsed": rec["elapsed"], "n": rec["n"],
                      "claim_share": rec["phases"].get("claim", 0.0), "done": rec["done"],
                      "handshakes": rec["handshakes"]}
        # A round claims up to 1,000 orders, queries and applies them.
        out["rec"]["round_s"] = rec["elapsed"] / math.ceil(rec["n"] / 1000.0)
        out.update(self.growth_plans("%d" % k))
        self.set_worker(16, "1h")      # orders made from here on wait an hour, as before
        out["finished"] = self.one("SELECT count(*) FROM wxpay.orders WHERE NOT wxpay.order_state_pending(state)")
        out["db_bytes"] = float(self.one("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                                         " WHERE c.relnamespace = 'wxpay'::regnamespace AND c.relkind = 'r'"))
        out["orders"] = self.one("SELECT count(*) FROM wxpay.orders")
        return out

    # ------------------------------------------ 3b. API v3 notifications
    # (the v3 notifications engineer's section: v3 beside v2 in one run)

    V3_NOTIFY_SCRIPT = ("SELECT status FROM bench.notify_v3 n, wxpay_handle_notify_v3(n.mch_id, n.headers, n.body)"
                        " WHERE n.id = (SELECT nextval('bench.nseq3'));\n")

    def v3_notification_bodies(self, prefix, n):
        """A v3 merchant (apiclient key and certificate, APIv3 key, a WeChat
        Pay public key) here and in the simulator's own code, n orders, and
        their TRANSACTION.SUCCESS notifications signed and encrypted by
        wxsim_v3 without a network round trip: (mch_id, headers, body)."""
        sys.path.insert(0, os.path.join(ROOT, "sim"))
        import wxsim
        import wxsim_v3
        from cryptography.hazmat.primitives import serialization
        mch, appid, apiv3_key = "1900000900", "wxbenchv3", "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
        sim = wxsim.Sim(None, None, None)
        merchant = wxsim.Merchant(mch, appid, MERCHANTS["sim0"][2], protocol="v3", apiv3_key=apiv3_key)
        sim.merchants[mch] = merchant
        keys = sim.v3.keys[mch] = wxsim_v3.PlatformKeys("public_key")
        if not self.one("SELECT count(*) FROM wxpay.merchants WHERE mch_id = %s", (mch,)):
            client = wxsim_v3.new_rsa_key()
            cert = wxsim_v3.platform_certificate(client).public_bytes(serialization.Encoding.PEM).decode()
            key = client.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()
            self.q("INSERT INTO wxpay.merchants (mch_id, appid, api_key, protocol, api_base, cert_pem, key_pem)"
                   " VALUES (%s, %s, %s, 'v3', 'http://127.0.0.1:9', %s, %s)",
                   (mch, appid, MERCHANTS["sim0"][2], cert, key))
            self.q("INSERT INTO wxpay.merchant_v3 (mch_id, apiv3_key) VALUES (%s, %s)", (mch, apiv3_key))
        self.q("DELETE FROM wxpay.wechatpay_keys WHERE mch_id = %s", (mch,))
        for k in keys.listing():
            self.q("INSERT INTO wxpay.wechatpay_keys (mch_id, serial, pem) VALUES (%s, %s, %s)",
                   (mch, k["serial"], k["pem"]))
        self.q("INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)"
               " SELECT %s, %s || i, 'APP', 'Bench Shop-Item', 100 + i %% 900, '203.0.113.7'"
               " FROM generate_series(1, %s) AS i", (mch, prefix, n))
        out = []
        for i in range(1, n + 1):
            order = wxsim.Order(mch, "%s%d" % (prefix, i), {"trade_type": "APP"}, 100 + i % 900, "wxbench")
            order.state = "SUCCESS"
            body = sim.v3.payment_notification(order)
            out.append((mch, json.dumps(dict(sim.v3.signed_headers(merchant, body.encode()))), body))
        return out

    def notifications_v3(self):
        """First deliveries (verify, decrypt or check, apply) of v3 and v2
        payment notifications, 8 clients, the same number of each in the
        same run; bodies are made just before each run (a v3 signature is
        good for 300 s)."""
        log("== 3b. API v3 notifications beside v2")
        n = max(SIZES["notify_orders"] // 5, 100)
        clients = 8
        self.q("CREATE TABLE IF NOT EXISTS bench.notify (id bigint PRIMARY KEY, body text NOT NULL)")
        self.q("CREATE TABLE bench.notify_v3 (id bigint PRIMARY KEY, mch_id text, headers jsonb, body text)")
        self.q("CREATE SEQUENCE IF NOT EXISTS bench.nseq")
        self.q("CREATE SEQUENCE bench.nseq3")
        mch2 = MERCHANTS["sim0"][0]
        tps = {"v2": [], "v3": []}
        for r in range(RUNS):
            base = 95_000_001 + r * 100_000
            self.q("INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip)"
                   " SELECT %s, %s || i, 'APP', 'Bench Shop-Item', 100 + i %% 900, '203.0.113.7'"
                   " FROM generate_series(1, %s) AS i", (mch2, "N2v%d-" % r, n))
            with self.db.cursor() as cur:
                cur.executemany("INSERT INTO bench.notify (id, body) VALUES (%s, %s)",
                                [(base + i, b) for i, b in enumerate(self.notification_bodies("N2v%d-" % r, n))])
                cur.executemany("INSERT INTO bench.notify_v3 (id, mch_id, headers, body) VALUES (%s, %s, %s, %s)",
                                [(base + i, m, h, b) for i, (m, h, b)
                                 in enumerate(self.v3_notification_bodies("N3v%d-" % r, n))])
            self.q("VACUUM ANALYZE wxpay.orders, bench.notify, bench.notify_v3")
            self.q("SELECT setval('bench.nseq', %s, false), setval('bench.nseq3', %s, false)", (base, base))
            tps["v2"].append(self.pgbench("notify-v2-%d" % r, self.NOTIFY_SCRIPT, clients, n // clients,
                                          latencies=False)["tps"])
            tps["v3"].append(self.pgbench("notify-v3-%d" % r, self.V3_NOTIFY_SCRIPT, clients, n // clients,
                                          latencies=False)["tps"])
            log("   run %d: v2 %.0f notifications/s, v3 %.0f/s" % (r + 1, tps["v2"][-1], tps["v3"][-1]))
        paid = self.q("SELECT count(*) FILTER (WHERE out_trade_no LIKE 'N3v%%'), count(*) FILTER (WHERE out_trade_no"
                      " LIKE 'N2v%%') FROM wxpay.orders WHERE state = 'SUCCESS' AND out_trade_no ~ '^N[23]v'")[0]
        total = RUNS * (n // clients) * clients
        v2, v3 = median(tps["v2"]), median(tps["v3"])
        self.details["notify_v3"] = {"n": n, "clients": clients, "runs": tps, "paid": paid}
        self.add("3 API v3 notifications", "8 clients, first deliveries, TRANSACTION.SUCCESS verified (RSA-2048 "
                 "public key), decrypted (AES-256-GCM) and applied: notifications/s",
                 "%.0f" % v3, "v2 (MD5 signature) in the same run: %.0f/s" % v2, "%.2fx v2" % (v3 / v2),
                 "(report)", None, key="notify_v3_vs_v2")
        self.add("3 API v3 notifications", "each v3 and v2 notification paid its order (%s of each)" % fmt_int(total),
                 "v3 %d, v2 %d paid" % paid, "", "", "all", paid[0] == total and paid[1] == total,
                 key="notify_v3_paid")

    def growth(self):
        log("== 6. cost as the tables grow")
        self.q("CREATE TABLE IF NOT EXISTS bench.notify (id bigint PRIMARY KEY, body text NOT NULL)")
        self.q("CREATE TABLE IF NOT EXISTS bench.notify_sink (id bigint, body text)")
        self.q("CREATE SEQUENCE IF NOT EXISTS bench.nseq")
        shape = self.growth_shape_check()
        loaded = 1
        points, skipped, loads, vacuums = [], [], [], []
        for k, size in enumerate(self.growth_sizes()):
            if size > loaded:
                have = shutil.disk_usage(self.work).free
                # Bytes per order so far: the wxpay tables and their indexes.
                used, orders = self.q("SELECT sum(pg_total_relation_size(c.oid)),"
                                      " (SELECT count(*) FROM wxpay.orders) FROM pg_class c"
                                      " WHERE c.relnamespace = 'wxpay'::regnamespace AND c.relkind = 'r'")[0]
                per_order = max(2500.0, float(used) / max(1, orders)) if orders > 1000 else 2500.0
                # The tables, their indexes and the WAL written while loading.
                need = (size - loaded) * per_order * 1.6
                if need > have - 5 * 2 ** 30:
                    skipped.append((size, need, have))
                    log("   %s orders skipped: they need about %.0f GB, %.0f GB are free"
                        % (fmt_int(size), need / 2 ** 30, have / 2 ** 30))
                    continue
                t0 = time.perf_counter()
                step = 1_000_000
                for first in range(loaded + 1, size + 1, step):
                    self.growth_load(first, min(size, first + step - 1))
                # What a DBA's cluster would have done long before: vacuum
                # (visibility map, free space map, hint bits) and a
                # checkpoint, so that neither autovacuum nor the writing out
                # of the load competes with the measurements.
                loads.append((size - loaded, time.perf_counter() - t0))
                t0 = time.perf_counter()
                self.q("VACUUM (ANALYZE) wxpay.orders, wxpay.order_events, wxpay.notifications")
                self.q("CHECKPOINT")
                vacuums.append((size, time.perf_counter() - t0))
                log("   loaded %s finished orders in %.0f s" % (fmt_int(size - loaded), loads[-1][1]))
                loaded = size
            x = self.growth_point(k, size)
            points.append(x)
            log("   %s finished orders: notifications %.0f/s (floor %.0f/s), unified order %.0f/s (curl %.0f/s), "
                "worker %.0f queries/s (curl %.0f/s), %.2f s per round, claim %d buffers %.2f ms; %d plans, %d scans"
                % (fmt_int(x["finished"]), x["notify"], x["floor"], x["uo"], x["curl"], x["rec"]["qps"],
                   x["rec"]["curl"], x["rec"]["round_s"], x["claim_buffers"] or -1, x["claim_ms"],
                   len(x["plans"]), len(x["scans"])))
        self.details["growth"] = {"points": points, "skipped": skipped, "loads": loads, "vacuums": vacuums,
                                  "shape": shape,
                                  "sizes": self.growth_sizes()}
        base = points[0]

        def rel(x, key, sub=None):
            """x's figure over its baseline, against the same at the smallest size."""
            if sub:
                return (x[sub][key] / x[sub]["curl"]) / (base[sub][key] / base[sub]["curl"])
            return (x[key] / x[{"notify": "floor", "uo": "curl"}[key]]) / \
                (base[key] / base[{"notify": "floor", "uo": "curl"}[key]])

        for x in points:
            label = "%s finished orders" % fmt_int(x["finished"])
            first = x is base
            target = "(baseline size)" if first else ">= 80% of the smallest size's"
            for key, what, against in (("notify", "notification replay, 8 clients, late duplicates: /s",
                                        "durable insert of the body alone"),
                                       ("uo", "unified order, 4 clients: orders/s", "curl")):
                other = x[{"notify": "floor", "uo": "curl"}[key]]
                r = rel(x, key)
                self.add("6 growth", "%s: %s" % (label, what), "%.0f" % x[key],
                         "%s: %.0f/s" % (against, other),
                         "%.0f%% of it%s" % (100 * x[key] / other, "" if first else "; %.2fx the smallest size's" % r),
                         target, None if first else r >= 0.8, key="growth_%s_%d" % (key, x["size"]))
            rr = rel(x, "qps", "rec")
            self.add("6 growth", "%s: worker, %s pending orders at max_concurrency 64: queries/s (s per round of "
                     "1,000)" % (label, fmt_int(x["rec"]["n"])), "%.0f (%.2f s)" % (x["rec"]["qps"], x["rec"]["round_s"]),
                     "curl, same requests: %.0f/s" % x["rec"]["curl"],
                     "%.0f%% of curl%s" % (100 * x["rec"]["qps"] / x["rec"]["curl"],
                                            "" if first else "; %.2fx the smallest size's" % rr),
                     target, None if first else rr >= 0.8, key="growth_rec_%d" % x["size"])
            self.add("6 growth", "%s: the worker's claim of %s due orders (EXPLAIN ANALYZE, rolled back)"
                     % (label, x["claimed"] if x["claimed"] is not None else "?"),
                     "%s buffers, %.2f ms" % (x["claim_buffers"], x["claim_ms"]),
                     "smallest size: %s buffers, %.2f ms" % (base["claim_buffers"], base["claim_ms"]),
                     "%.2fx the buffers" % (x["claim_buffers"] / base["claim_buffers"])
                     if x["claim_buffers"] and base["claim_buffers"] else "-", "(report)", None)
            self.add("6 growth", "%s: plans of the extension's statements and the worker's scans" % label,
                     "%d plans" % len(x["plans"]), "sequential scans of wxpay tables of %s rows or more"
                     % fmt_int(GROWTH_SCAN_ROWS),
                     "%d scans" % len(x["scans"]), "no scan", not x["scans"], key="growth_plans_%d" % x["size"])
        for size, need, have in skipped:
            self.add("6 growth", "%s finished orders" % fmt_int(size), "skipped",
                     "needs about %.0f GB of disk" % (need / 2 ** 30), "%.0f GB free" % (have / 2 ** 30),
                     "fits", False)

    # ------------------------------------------------------------ the simulator's own ceiling

    def sim_ceiling(self):
        log("== the simulator's ceiling (raw curl, 64 at once)")
        out = {}
        for name in ("sim0",):
            sim = self.sims[name]
            rates = []
            for r in range(RUNS):
                bodies = self.uo_bodies(MERCHANTS[name][0], "S%d-" % r, SIZES["ceiling_requests"])
                cpu0 = self.cpu_ticks(sim.pid)
                res = self.curl("ceiling-%d" % r, bodies, sim.base + "/pay/unifiedorder", sim.ca, 64)
                cpu = (self.cpu_ticks(sim.pid) - cpu0) / os.sysconf("SC_CLK_TCK")
                rates.append((res["rps"], cpu / res["wall"]))
            out[name] = {"rps": median([r[0] for r in rates]), "cpu": median([r[1] for r in rates]),
                         "n": SIZES["ceiling_requests"]}
        self.details["ceiling"] = out
        self.add("0 simulator", "simulator ceiling: /pay/unifiedorder answered per second",
                 "%.0f" % out["sim0"]["rps"], "curl --parallel 64, keep-alive",
                 "sim at %.0f%% of a core" % (out["sim0"]["cpu"] * 100), "(context)", None)

    # ------------------------------------------------------------ output

    def table(self):
        head = ("figure", "value", "baseline", "ratio", "target", "met")
        rows = [(r["figure"], r["value"], r["baseline"], r["ratio"], r["target"],
                 "-" if r["met"] is None else ("yes" if r["met"] else "NO")) for r in self.rows]
        return head, rows

    def print_table(self):
        head, rows = self.table()
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, head))
        print("\n" + line)
        print("-" * len(line))
        section = None
        for r, row in zip(self.rows, rows):
            if r["section"] != section:
                section = r["section"]
                print("[%s]" % section)
            print("  ".join("%-*s" % (w, str(c)) for w, c in zip(widths, row)))
        print()

    def machine(self):
        cpu = "unknown"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
        versions = {
            "PostgreSQL": self.one("SHOW server_version"),
            "curl": " ".join(w for w in subprocess.run(["curl", "--version"], capture_output=True, text=True)
                             .stdout.split("\n")[0].split() if w[0].isdigit() or w.startswith("OpenSSL"))[:40],
            "Python (simulator)": subprocess.run(["/usr/bin/python3", "--version"], capture_output=True,
                                                 text=True).stdout.strip(),
        }
        commit = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True,
                                text=True).stdout.strip()
        dirty = [l[3:] for l in subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "sql",
                                                "wxpay--1.0.sql", "wxpay.control"],
                                               capture_output=True, text=True).stdout.splitlines()]
        return {"commit": commit, "dirty": dirty,
                "cores": os.cpu_count(), "cpu": cpu, "mem_gib": mem_kb / 1048576, "kernel": platform.release(),
                "versions": versions, "load": os.getloadavg()}


def fmt_int(n):
    return "{:,}".format(n)


def run_bills(bench):
    """Section 7: importing and reconciling a day's bill (bench/bills.py)."""
    # By path: the simulator's sim/bills.py, imported by an earlier section,
    # holds the name "bills" in sys.modules.
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "bench_bills", os.path.join(os.path.dirname(os.path.abspath(__file__)), "bills.py"))
    bills = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bills)
    bills.run(bench)


def run_sharding(bench):
    """Section 8: sharded behind wxpay_proxy (bench/proxy_bench.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import proxy_bench
    proxy_bench.run(bench)


def fmt_rate(r):
    return "{:,.0f}".format(r)


def write_results(bench, path):
    import report
    report.write(bench, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--pgport", type=int, required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--sign-core", required=True)
    ap.add_argument("--rsa-core", help="bench/rsa_core.c built; its key is rsa_core_key.pem beside it")
    ap.add_argument("--curl-pool", required=True)
    ap.add_argument("--sim-pids", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--only", default="", help="comma-separated sections, for development")
    args = ap.parse_args()
    b = Bench(args)
    b.setup()
    b.machine_info = b.machine()
    only = set(args.only.split(",")) - {""}
    sections = ("sim_ceiling", "signing", "unified_order", "notifications", "notifications_v3", "reconciliation",
                "seed_way", "growth", "bills", "sharding")
    if only - set(sections):
        ap.error("unknown sections %s; the sections are %s" % (", ".join(sorted(only - set(sections))),
                                                               ", ".join(sections)))
    b.only = only
    external = {"bills": run_bills, "sharding": run_sharding}  # sections in files of their own
    failed = []
    for name in sections:
        if not only or name in only:
            before = b.cpu_snapshot()
            try:
                external[name](b) if name in external else getattr(b, name)()
            except Exception:
                # The other sections' figures are still worth writing down.
                import traceback
                traceback.print_exc()
                failed.append(name)
                b.add(name, "section %s failed (traceback in the output of make bench)" % name, "-", "-", "-",
                      "runs", False)
            b.load[name] = b.load_between(before, b.cpu_snapshot())
    b.elapsed = time.time() - b.started
    b.print_table()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    write_results(b, os.path.join(ROOT, args.results) if not os.path.isabs(args.results) else args.results)
    log("wrote %s in %.0f s of benchmarking" % (args.results, b.elapsed))
    if failed:
        sys.exit("bench: sections failed: %s" % ", ".join(failed))


if __name__ == "__main__":
    main()
