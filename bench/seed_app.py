#!/usr/bin/python3
"""One application process of bench section 5 ("the seed's way").

Two ways of creating unified orders, the same application otherwise:

  seed  the way /work/shared/seed/python-wechat-pay.md does it (and most
        shops): sign in Python (hashlib, sorted "k=v" joined with '&'),
        build the XML, POST it with a keep-alive requests.Session (TLS
        verification on, the simulator's CA), parse the answer with
        xmltodict and record the order in the shop's own PostgreSQL table:
        the row is inserted and committed before the request is sent and
        updated with the prepay_id after it (two commits, like the
        extension's two durable writes).  Like the seed it does not verify
        the answer's signature and keeps no history.
  ext   the same application calling wxpay_unifiedorder through psycopg2.

Protocol with bench.py: prints "ready" once connected (and warmed with one
order), waits for "go" on stdin, creates its orders, prints one JSON line
(latencies in ms, loop wall and CPU seconds), then waits for stdin to close
so that its backend is still there when bench.py reads the backends' CPU.
"""
import hashlib
import json
import random
import resource
import string
import sys
import time

import psycopg2
import requests
import xmltodict


def nonce_str(size=32):
    """The seed's nonce."""
    charsets = string.ascii_uppercase + string.digits
    return "".join(random.choice(charsets) for _ in range(size))


def sign(payload, sign_key):
    """The seed's MD5 signature (empty values left out, as WeChat Pay asks)."""
    lst = sorted("%s=%s" % (k, v) for k, v in payload.items() if v != "")
    raw_str = "&".join(lst) + "&key=%s" % sign_key
    return hashlib.md5(raw_str.encode("utf8")).hexdigest().upper()


class SeedShop:
    def __init__(self, cfg, db):
        self.cfg = cfg
        self.db = db
        self.session = requests.Session()
        self.url = cfg["base"] + "/pay/unifiedorder"

    def order(self, out_trade_no):
        c = self.cfg
        with self.db.cursor() as cur:
            cur.execute("INSERT INTO bench.seed_orders (mch_id, out_trade_no, total_fee, body)"
                        " VALUES (%s, %s, 101, 'Bench Shop-Item')", (c["mch_id"], out_trade_no))
        self.db.commit()
        payload = {
            "appid": c["appid"], "mch_id": c["mch_id"], "nonce_str": nonce_str(),
            "body": "Bench Shop-Item", "out_trade_no": out_trade_no, "total_fee": "101",
            "spbill_create_ip": "203.0.113.7", "notify_url": c["notify_url"], "trade_type": "APP",
            "time_expire": time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + 8 * 3600 + 7200)),
        }
        payload["sign"] = sign(payload, c["api_key"])
        req_xml = xmltodict.unparse({"xml": payload}, full_document=False)
        # verify per request: a Session's own verify loses to REQUESTS_CA_BUNDLE.
        res = self.session.post(self.url, data=req_xml.encode("utf8"), verify=c["ca"],
                                headers={"Content-Type": "text/xml; charset=utf-8"})
        res.encoding = "utf8"
        res_obj = xmltodict.parse(res.text, disable_entities=True)["xml"]
        if res_obj.get("return_code") != "SUCCESS" or res_obj.get("result_code") != "SUCCESS":
            raise RuntimeError("unifiedorder failed: %s" % res.text[:300])
        with self.db.cursor() as cur:
            cur.execute("UPDATE bench.seed_orders SET prepay_id = %s, prepay_at = now()"
                        " WHERE mch_id = %s AND out_trade_no = %s",
                        (res_obj["prepay_id"], c["mch_id"], out_trade_no))
        self.db.commit()


class ExtShop:
    def __init__(self, cfg, db):
        self.cfg = cfg
        self.db = db

    def order(self, out_trade_no):
        with self.db.cursor() as cur:
            cur.execute("SELECT wxpay_unifiedorder(%s, %s, 101, 'Bench Shop-Item', '203.0.113.7')",
                        (self.cfg["mch_id"], out_trade_no))
            cur.fetchone()
        self.db.commit()


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    cfg = json.loads(sys.argv[1])
    db = psycopg2.connect(cfg["dsn"])
    shop = (SeedShop if cfg["mode"] == "seed" else ExtShop)(cfg, db)
    prefix = cfg["prefix"]
    shop.order(prefix + "w")            # connections and TLS session up, plans cached
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    lat = []
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    for i in range(cfg["n"]):
        s = time.perf_counter()
        shop.order("%s%d" % (prefix, i))
        lat.append((time.perf_counter() - s) * 1000.0)
    wall = time.perf_counter() - t0
    print(json.dumps({"lat": lat, "wall": wall, "cpu": cpu_seconds() - cpu0,
                      "start": t0, "end": t0 + wall}), flush=True)
    sys.stdin.read()
    db.close()


if __name__ == "__main__":
    main()
