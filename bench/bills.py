"""Section 7 of the benchmark: importing and reconciling a day's bill.

A 1,000,000-row ALL bill (gzip, BOM, CRLF, back-ticks, as WeChat Pay writes
it) for a merchant with as many paid orders, 1 in 10,000 of them missing
here (planted discrepancies the reconciliation must find), imported with
wxpay_bill_import: inflated, hashed, parsed and validated, stored whole and
as typed rows, the summary checked, then reconciled
(wxpay.bill_reconcile).  The floor is COPY of the same typed rows into a
plain table (bill_rows' columns, no index, no constraint) in the same run.
Memory: the importing backend's private memory (RssAnon, sampled every
10 ms; shared buffers are not counted) at a tenth of the size and at full
size.
"""
import gzip
import io
import os
import statistics
import sys
import threading
import time

MCH = "1900009999"
DAY = "2026-11-30"
HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
          "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
          "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
MISSING_EVERY = 10000
# The same formulas in SQL (orders) and here (the bill).
FEE_SQL = "mod(i * 7919, 100000) + 1"


def fee_of(i):
    return (i * 7919) % 100000 + 1


def yuan(fen, decimals=2):
    return "%d.%02d%s" % (fen // 100, fen % 100, "0" * (decimals - 2))


def service_fee(fen):
    return (fen * 6 + 500) // 1000


def clock(i, n):
    s = i * 86399 // n
    return "%s %02d:%02d:%02d" % (DAY, s // 3600, s // 60 % 60, s % 60)


def make_files(n, scratch):
    """The gzip bill and the COPY text of its typed rows."""
    lines = [HEADER]
    copy = io.StringIO()
    total = fees = 0
    for i in range(1, n + 1):
        fen = fee_of(i)
        sf = service_fee(fen)
        total += fen
        fees += sf
        t = clock(i, n)
        txn = "42%026d" % i
        no = "B%07d" % i
        line = ("`%s,`wxbench000000001,`%s,`0,`,`%s,`%s,`oBench%08d,`APP,`SUCCESS,`CMC,`CNY,`%s,`0.00,`0,`0,"
                "`0.00,`0.00,`,`,`Bench goods,`,`%s,`0.60%%,`%s,`0.00,`"
                % (t, MCH, txn, no, i, yuan(fen), yuan(sf, 5), yuan(fen)))
        lines.append(line)
        copy.write("1\t%d\tpayment\t%s+08\twxbench000000001\t0\t\\N\t%s\t%s\toBench%08d\tAPP\tSUCCESS\tCMC\tCNY\t"
                   "%d\t0\t\\N\t\\N\t\\N\t\\N\t0\t0\t\\N\t\\N\tBench goods\t\\N\t%d.000\t0.60%%\t%d\t0\t\\N\t%s\n"
                   % (i + 1, t, txn, no, i, fen, sf, fen, line))
    lines.append(SUMMARY)
    lines.append("`%d.0,`%s,`0.00,`0.0,`%s,`%s,`0.00" % (n, yuan(total), yuan(fees, 5), yuan(total)))
    text = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()
    copy_path = os.path.join(scratch, "bill-%d.copy" % n)
    with open(copy_path, "w") as f:
        f.write(copy.getvalue())
    body = gzip.compress(text, 6, mtime=0)
    body_path = os.path.join(scratch, "bill-%d.gz" % n)
    with open(body_path, "wb") as f:
        f.write(body)
    os.chmod(body_path, 0o644)
    return body, body_path, len(text), copy_path


class RssSampler(threading.Thread):
    """The peak RssAnon (kB) of a process while it runs."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.path = "/proc/%d/status" % pid
        self.peak = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            with open(self.path) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak = max(self.peak, int(line.split()[1]))
            time.sleep(0.01)


def setup(b, n):
    b.q("TRUNCATE wxpay.bill_rows, wxpay.fund_flow_rows, wxpay.bill_chunks, wxpay.bills CASCADE")
    if b.one("SELECT count(*) FROM wxpay.merchants WHERE mch_id = %s", (MCH,)) == 0:
        b.q("INSERT INTO wxpay.merchants (mch_id, appid, api_key, api_base) VALUES (%s, 'wxbench000000001',"
            " '192006250b4c09247ec02edce69f6a2d', 'http://127.0.0.1:9')", (MCH,))
    # The orders as paid ones, straight in (the state machine's triggers
    # are not what is measured); every MISSING_EVERY-th is not ours.
    b.q("SET session_replication_role = replica")
    b.q("DELETE FROM wxpay.orders WHERE mch_id = %s", (MCH,))
    sql = ("INSERT INTO wxpay.orders (mch_id, out_trade_no, trade_type, body, total_fee, spbill_create_ip, state,"
           " transaction_id, paid_at)"
           " SELECT %(mch)s, 'B' || lpad(i::text, 7, '0'), 'APP', 'Bench goods', {fee}, '127.0.0.1', 'SUCCESS',"
           " '42' || lpad(i::text, 26, '0'),"
           " timestamptz '{day} 00:00:00+08' + make_interval(secs => i * 86399 / %(n)s)"
           " FROM generate_series(1::bigint, %(n)s) i WHERE mod(i, {every}) <> 0").format(fee=FEE_SQL, day=DAY, every=MISSING_EVERY)
    b.q(sql, {"mch": MCH, "n": n})
    b.q("RESET session_replication_role")
    b.q("VACUUM ANALYZE wxpay.orders")


def import_once(b, body_path):
    """Seconds to import and reconcile, the bill's discrepancies and rows,
    and the backend's peak private memory (kB).  The server reads the gzip
    file itself, as it would receive an HTTP body: once."""
    b.q("TRUNCATE wxpay.bill_rows, wxpay.fund_flow_rows, wxpay.bill_chunks, wxpay.bills CASCADE")
    b.q("CHECKPOINT")
    pid = b.one("SELECT pg_backend_pid()")
    sampler = RssSampler(pid)
    sampler.start()
    t0 = time.perf_counter()
    answer = b.one("SELECT wxpay_bill_import(%s, %s, 'ALL', pg_read_binary_file(%s))", (MCH, DAY, body_path))
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    return wall, int(answer["discrepancies"]), int(answer["rows"]), sampler.peak


def copy_once(b, path):
    b.q("DROP TABLE IF EXISTS bench_bill_floor")
    b.q("CREATE TABLE bench_bill_floor (LIKE wxpay.bill_rows)")
    b.q("CHECKPOINT")
    with open(path) as f, b.db.cursor() as cur:
        t0 = time.perf_counter()
        cur.copy_expert("COPY bench_bill_floor FROM STDIN", f)
        return time.perf_counter() - t0


def reconcile_once(b):
    bill = b.one("SELECT bill_id FROM wxpay.bills WHERE mch_id = %s", (MCH,))
    t0 = time.perf_counter()
    b.one("SELECT wxpay.bill_reconcile(%s)", (bill,))
    return time.perf_counter() - t0


def fmt_int(n):
    return "{:,}".format(n)


def log(message):
    print("bench: " + message, file=sys.stderr, flush=True)


def run(b):
    median = statistics.median
    n = 20000 if b.quick else 1000000
    small = n // 10
    log("bills: making a %s-row bill and a %s-row one" % (fmt_int(n), fmt_int(small)))
    body, body_path, text_size, copy_path = make_files(n, b.scratch)
    small_body, small_path, small_text, _ = make_files(small, b.scratch)
    setup(b, small)
    small_wall, _, _, small_peak = import_once(b, small_path)
    setup(b, n)
    imports, copies, reconciles, peaks = [], [], [], []
    for _ in range(b.runs):
        copies.append(copy_once(b, copy_path))
        wall, found, rows, peak = import_once(b, body_path)
        assert rows == n, rows
        assert found == n // MISSING_EVERY + 1, found   # the unknown payments and the day's total
        imports.append(wall)
        peaks.append(peak)
        reconciles.append(reconcile_once(b))
    # What the last import left on disk (the tables were empty before it).
    rows_bytes = b.one("SELECT pg_total_relation_size('wxpay.bill_rows')")
    chunk_bytes = b.one("SELECT pg_total_relation_size('wxpay.bill_chunks')")
    b.q("DROP TABLE IF EXISTS bench_bill_floor")
    imp, cp, rec = median(imports), median(copies), median(reconciles)
    ours, floor = n / imp, n / cp
    b.details["bills"] = {"n": n, "small": small, "gzip": len(body), "text": text_size, "import": imports,
                          "copy": copies, "reconcile": reconciles, "peak_kb": max(peaks),
                          "small_peak_kb": small_peak, "small_gzip": len(small_body), "small_text": small_text,
                          "small_wall": small_wall}
    b.add("7 bills", "import + reconcile of a %s-row ALL bill (gzip): rows/s" % fmt_int(n), fmt_int(int(ours)),
          "COPY of the same rows into a plain table: %s rows/s" % fmt_int(int(floor)),
          "%.0f%% of the COPY floor" % (100 * ours / floor), ">= 50% of COPY", ours >= 0.5 * floor)
    b.add("7 bills", "of which reconciliation (wxpay.bill_reconcile against %s orders): s" % fmt_int(n),
          "%.2f" % rec, "import and reconcile: %.2f s" % imp, "%.0f%%" % (100 * rec / imp), "(report)", None)
    b.add("7 bills", "disk taken by the %s-row bill: bill_rows (with its indexes) / bill_chunks (the file, lz4)" % fmt_int(n),
          "%.0f MB / %.0f MB" % (rows_bytes / 1e6, chunk_bytes / 1e6), "the file: %.0f MB of text" % (text_size / 1e6),
          "%.1fx the file" % ((rows_bytes + chunk_bytes) / text_size), "(report)", None)
    # Growth allowed: the gzip body held (at most twice) and 16 MB of
    # slack; the text (ten times larger) is never held whole.
    growth_kb = max(peaks) - small_peak
    allowed_kb = 2 * (len(body) - len(small_body)) // 1024 + 16 * 1024
    b.add("7 bills", "backend private memory (peak RssAnon), %s rows vs %s" % (fmt_int(n), fmt_int(small)),
          "%.0f MB" % (max(peaks) / 1024), "%.0f MB" % (small_peak / 1024),
          "+%.0f MB for 10x the rows (gzip body %.0f MB, text %.0f MB)" % (growth_kb / 1024, len(body) / 1e6,
                                                                          text_size / 1e6),
          "growth <= 2x the gzip body's + 16 MB", growth_kb <= allowed_kb)


def section(b):
    d = b.details.get("bills")
    if not d:
        return []
    return [["## 7. Daily bills", "",
             "A %s-row ALL bill as WeChat Pay writes it (UTF-8 BOM, CRLF, every field back-ticked; %.0f MB of text, "
             "%.1f MB gzip), for a merchant whose %s paid orders are in `wxpay.orders` but for 1 in %s, is imported with "
             "`wxpay_bill_import` (the path `wxpay_downloadbill` takes after the transfer): inflated in 256 kB pieces, "
             "hashed, parsed and validated row by row, stored whole in 1 MB chunks (lz4) and as typed rows through COPY's "
             "machinery (its binary format: the values typed by the parser), the summary checked against the rows, then reconciled (`wxpay.bill_reconcile` counts "
             "`wxpay.bill_discrepancies`: the %d unknown payments and the day's total). The floor is `COPY ... FROM STDIN` "
             "of the same typed rows into a plain table with bill_rows' columns (no primary key, no CHECK) from the same "
             "connection. Medians of %d interleaved runs, a CHECKPOINT before each: import %s s, COPY %s s, of which "
             "reconciliation %s s."
             % ("{:,}".format(d["n"]), d["text"] / 1e6, d["gzip"] / 1e6, "{:,}".format(d["n"]),
                "{:,}".format(MISSING_EVERY), d["n"] // MISSING_EVERY, len(d["import"]),
                " / ".join("%.2f" % x for x in d["import"]), " / ".join("%.2f" % x for x in d["copy"]),
                " / ".join("%.2f" % x for x in d["reconcile"])),
             "",
             "Memory: the backend's private memory (RssAnon from /proc, sampled every 10 ms; shared buffers are "
             "shared memory and not in it) peaked at %.0f MB for %s rows and %.0f MB for %s rows (%.1f MB of gzip). "
             "The bill's text is never held whole: what grows with the bill is the gzip body itself, which the server "
             "reads here with `pg_read_binary_file` (as it receives one HTTP body) and holds while it is inflated."
             % (d["peak_kb"] / 1024, "{:,}".format(d["n"]), d["small_peak_kb"] / 1024, "{:,}".format(d["small"]),
                d["small_gzip"] / 1e6)]]
