#!/usr/bin/python3
"""wxsim: a WeChat Pay merchant API v2 simulator on loopback HTTPS.

Plays api.mch.weixin.qq.com for pg_wxpay's tests, demo and benchmarks: it
checks request signatures (MD5 and HMAC-SHA256), keeps orders and refunds
in memory, answers signed XML like the real API, requires a client
certificate on /secapi/, delivers payment and (AES-encrypted) refund
notifications on the documented retry schedule, time-compressed, and
injects faults on demand.  Control endpoints live under /_sim/ and speak
JSON.  See sim/README.md.
"""
import argparse
import asyncio
import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import random
import secrets
import signal
import ssl
import string
import time
import urllib.parse
import xml.etree.ElementTree as ET

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

MAX_BODY = 1024 * 1024
CST = datetime.timezone(datetime.timedelta(hours=8))
# Documented retry schedule (seconds before each attempt), first one at once.
NOTIFY_SCHEDULE = [0, 15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600,
                   10800, 10800, 10800, 21600, 21600]


# ---------------------------------------------------------------- signing

def canonical(params, key):
    pairs = sorted((k, v) for k, v in params.items() if k != "sign" and v != "")
    return "&".join("%s=%s" % kv for kv in pairs) + ("&" if pairs else "") + "key=" + key


def sign(params, key, sign_type="MD5"):
    data = canonical(params, key).encode()
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode(), data, hashlib.sha256).hexdigest().upper()
    return hashlib.md5(data).hexdigest().upper()


# -------------------------------------------------------------------- XML

def to_xml(params):
    def cdata(v):
        return "<![CDATA[" + v.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return "<xml>" + "".join("<%s>%s</%s>" % (k, cdata(str(v)), k)
                             for k, v in params.items()) + "</xml>"


def from_xml(body):
    """Flat dict of the root's children; None for anything unsafe or bad."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        return None
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        return None
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    return {child.tag: child.text or "" for child in root}


# ---------------------------------------------------------------- crypto

def refund_encrypt(plain, api_key):
    key = hashlib.md5(api_key.encode()).hexdigest().encode()
    pad = 16 - len(plain) % 16
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    data = enc.update(plain + bytes([pad]) * pad) + enc.finalize()
    return base64.b64encode(data).decode()


def make_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def issue(subject_cn, key, issuer_cert=None, issuer_key=None, ca=False, sans=None, client=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


class Pki:
    """The simulator's CA, its server certificate, and merchant client certs."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        paths = [os.path.join(directory, f) for f in ("ca.pem", "ca.key", "server.pem", "server.key", "other-ca.pem")]
        if not all(os.path.exists(p) for p in paths):
            ca_key = make_key()
            ca = issue("wxsim test CA", ca_key, ca=True)
            srv_key = make_key()
            srv = issue("localhost", srv_key, ca, ca_key, sans=[
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))])
            other_key = make_key()
            other = issue("wxsim untrusted CA", other_key, ca=True)
            for path, data in zip(paths, (pem_cert(ca), pem_key(ca_key), pem_cert(srv), pem_key(srv_key),
                                          pem_cert(other))):
                with open(path + ".tmp", "w") as f:
                    f.write(data)
                os.rename(path + ".tmp", path)
        with open(paths[0], "rb") as f:
            self.ca = x509.load_pem_x509_certificate(f.read())
        with open(paths[1], "rb") as f:
            self.ca_key = serialization.load_pem_private_key(f.read(), None)

    def client_cert(self, mch_id):
        key = make_key()
        return pem_cert(issue(mch_id, key, self.ca, self.ca_key, client=True)), pem_key(key)

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.dir, "server.pem"), os.path.join(self.dir, "server.key"))
        ctx.load_verify_locations(os.path.join(self.dir, "ca.pem"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def client_context(self):
        return ssl.create_default_context(cafile=os.path.join(self.dir, "ca.pem"))


# ------------------------------------------------------------------ state

def now_cst():
    return datetime.datetime.now(CST)


def nonce(n=32):
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(n))


class ApiError(Exception):
    """A business error: return_code SUCCESS, result_code FAIL."""

    def __init__(self, code, des):
        super().__init__(code)
        self.code, self.des = code, des


class CommError(Exception):
    """A communication error: return_code FAIL, unsigned."""


class Sim:
    def __init__(self, args, pki):
        self.args = args
        self.pki = pki
        self.merchants = {}
        self.orders = {}
        self.refunds = {}
        self.faults = []
        self.deliveries = {}
        self.reset_stats()
        self.client_ssl = pki.client_context()

    def reset_stats(self):
        self.stats = {"connections": 0, "tls_handshakes": 0, "tls_resumed": 0,
                      "requests_total": 0, "requests": {}, "notify_deliveries": 0}

    # ------------------------------------------------------------ faults

    def take_fault(self, path):
        for f in self.faults:
            if f.get("path") in (None, path):
                if f["count"] > 0:
                    f["count"] -= 1
                    if f["count"] == 0:
                        self.faults.remove(f)
                return f
        return None

    # ---------------------------------------------------------- requests

    def authenticate(self, mch, params, peer_cn, path):
        sign_type = params.get("sign_type", "MD5")
        if sign_type not in ("MD5", "HMAC-SHA256"):
            raise CommError("sign_type invalid")
        if path.startswith("/secapi/") and peer_cn != mch["mch_id"]:
            raise CommError("CERT_ERROR: a client certificate of this merchant is required")
        expected = sign(params, mch["api_key"], sign_type)
        if not hmac.compare_digest(expected, params.get("sign", "").upper()):
            raise CommError("签名错误 (SIGNERROR)")
        if params.get("appid") != mch["appid"]:
            raise ApiError("APPID_MCHID_NOT_MATCH", "appid and mch_id do not match")
        n = params.get("nonce_str", "")
        if not n or len(n) > 32:
            raise ApiError("PARAM_ERROR", "nonce_str is required, at most 32 characters")
        return sign_type

    @staticmethod
    def need(params, *names):
        for name in names:
            if not params.get(name):
                raise ApiError("LACK_PARAMS", "missing %s" % name)

    def unifiedorder(self, mch, p):
        self.need(p, "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type")
        if not p["total_fee"].isdigit() or int(p["total_fee"]) <= 0:
            raise ApiError("PARAM_ERROR", "total_fee must be a positive integer")
        required = {"JSAPI": "openid", "NATIVE": "product_id", "MWEB": "scene_info"}
        if p["trade_type"] not in ("APP", "JSAPI", "NATIVE", "MWEB"):
            raise ApiError("PARAM_ERROR", "invalid trade_type")
        if p["trade_type"] in required and not p.get(required[p["trade_type"]]):
            raise ApiError("PARAM_ERROR", "trade_type %s requires %s" % (p["trade_type"], required[p["trade_type"]]))
        params = {k: v for k, v in p.items() if k not in ("sign", "nonce_str", "sign_type")}
        key = (mch["mch_id"], p["out_trade_no"])
        order = self.orders.get(key)
        if order is not None:
            if order["state"] in ("SUCCESS", "REFUND"):
                raise ApiError("ORDERPAID", "order already paid")
            if order["state"] in ("CLOSED", "REVOKED"):
                raise ApiError("ORDERCLOSED", "order closed")
            if order["params"] != params:
                raise ApiError("INVALID_REQUEST", "repeated out_trade_no with different parameters")
        else:
            order = {"mch_id": mch["mch_id"], "out_trade_no": p["out_trade_no"], "params": params,
                     "total_fee": int(p["total_fee"]), "state": "NOTPAY", "created": time.time(),
                     "prepay_id": "wx%s%s" % (now_cst().strftime("%Y%m%d%H%M%S"), secrets.token_hex(10)),
                     "refunds": []}
            self.orders[key] = order
        out = {"trade_type": p["trade_type"], "prepay_id": order["prepay_id"]}
        if p["trade_type"] == "NATIVE":
            out["code_url"] = "weixin://wxpay/bizpayurl?pr=" + nonce(7)
        if p["trade_type"] == "MWEB":
            out["mweb_url"] = ("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=%s&package=1234567890"
                               % order["prepay_id"])
        return out

    def find_order(self, mch, p):
        if p.get("transaction_id"):
            for o in self.orders.values():
                if o["mch_id"] == mch["mch_id"] and o.get("transaction_id") == p["transaction_id"]:
                    return o
        elif p.get("out_trade_no"):
            o = self.orders.get((mch["mch_id"], p["out_trade_no"]))
            if o:
                return o
        else:
            raise ApiError("PARAM_ERROR", "transaction_id or out_trade_no is required")
        raise ApiError("ORDERNOTEXIST", "order does not exist")

    def trade_fields(self, order):
        out = {"trade_state": order["state"], "trade_state_desc": order["state"].lower(),
               "out_trade_no": order["out_trade_no"], "total_fee": str(order.get("reported_fee", order["total_fee"])),
               "fee_type": "CNY", "trade_type": order["params"]["trade_type"]}
        if order["params"].get("attach"):
            out["attach"] = order["params"]["attach"]
        if order.get("transaction_id"):
            out.update({"transaction_id": order["transaction_id"], "time_end": order["time_end"],
                        "openid": order["openid"], "bank_type": "CMC", "is_subscribe": "N",
                        "cash_fee": out["total_fee"]})
        return out

    def orderquery(self, mch, p):
        return self.trade_fields(self.find_order(mch, p))

    def closeorder(self, mch, p):
        self.need(p, "out_trade_no")
        order = self.find_order(mch, p)
        if order["state"] in ("SUCCESS", "REFUND"):
            raise ApiError("ORDERPAID", "order paid")
        if order["state"] == "CLOSED":
            raise ApiError("ORDERCLOSED", "order already closed")
        if time.time() - order["created"] < self.args.close_min_age_s:
            raise ApiError("TRADE_STATE_ERROR", "an order can be closed 5 minutes after it was created")
        order["state"] = "CLOSED"
        return {"result_msg": "OK"}

    def refund(self, mch, p):
        self.need(p, "out_refund_no", "total_fee", "refund_fee")
        order = self.find_order(mch, p)
        if order["state"] not in ("SUCCESS", "REFUND"):
            raise ApiError("ORDERNOTEXIST", "order is not paid")
        if p["total_fee"] != str(order["total_fee"]):
            raise ApiError("PARAM_ERROR", "total_fee does not match the order")
        fee = int(p["refund_fee"])
        key = (mch["mch_id"], p["out_refund_no"])
        r = self.refunds.get(key)
        if r is not None:
            if r["refund_fee"] != fee or r["out_trade_no"] != order["out_trade_no"]:
                raise ApiError("REFUND_FEE_MISMATCH", "refund_fee differs from the earlier request")
        else:
            refunded = sum(x["refund_fee"] for x in order["refunds"] if x["state"] != "REFUNDCLOSE")
            if refunded + fee > order["total_fee"]:
                raise ApiError("NOTENOUGH", "refund amount exceeds what is left")
            r = {"mch_id": mch["mch_id"], "out_refund_no": p["out_refund_no"], "out_trade_no": order["out_trade_no"],
                 "refund_fee": fee, "refund_id": "503%026d" % random.randrange(10 ** 26), "state": "PROCESSING",
                 "notify_url": p.get("notify_url") or mch.get("notify_url")}
            self.refunds[key] = r
            order["refunds"].append(r)
            order["state"] = "REFUND"
            asyncio.get_running_loop().call_later(self.args.refund_delay_ms / 1000, self.complete_refund, r)
        return {"transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
                "out_refund_no": r["out_refund_no"], "refund_id": r["refund_id"], "refund_fee": str(fee),
                "settlement_refund_fee": str(fee), "total_fee": str(order["total_fee"]),
                "settlement_total_fee": str(order["total_fee"]), "fee_type": "CNY",
                "cash_fee": str(order["total_fee"]), "cash_refund_fee": str(fee)}

    def complete_refund(self, r):
        """The bank's answer after --refund-delay-ms, unless a test decided first."""
        if r["state"] == "PROCESSING":
            self.set_refund_state(r, "SUCCESS", True)

    def set_refund_state(self, r, state, notify):
        r["state"] = state
        if state == "SUCCESS":
            r["success_time"] = now_cst().strftime("%Y-%m-%d %H:%M:%S")
        if notify and r.get("notify_url"):
            self.spawn_delivery(r["notify_url"], self.refund_notification(r), r["out_refund_no"])

    def refundquery(self, mch, p):
        keys = ("refund_id", "out_refund_no", "transaction_id", "out_trade_no")
        if not any(p.get(k) for k in keys):
            raise ApiError("PARAM_ERROR", "one of %s is required" % ", ".join(keys))
        mine = [r for r in self.refunds.values() if r["mch_id"] == mch["mch_id"]]
        for k in keys:
            if p.get(k):
                if k in ("refund_id", "out_refund_no"):
                    found = [r for r in mine if r[k] == p[k]]
                else:
                    order = self.find_order(mch, {k: p[k]})
                    found = list(order["refunds"])
                break
        if not found:
            raise ApiError("REFUNDNOTEXIST", "refund does not exist")
        order = self.orders[(mch["mch_id"], found[0]["out_trade_no"])]
        out = {"transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
               "total_fee": str(order["total_fee"]), "cash_fee": str(order["total_fee"]),
               "refund_count": str(len(found)), "total_refund_count": str(len(found))}
        for n, r in enumerate(found):
            out.update({"out_refund_no_%d" % n: r["out_refund_no"], "refund_id_%d" % n: r["refund_id"],
                        "refund_channel_%d" % n: "ORIGINAL", "refund_fee_%d" % n: str(r["refund_fee"]),
                        "settlement_refund_fee_%d" % n: str(r["refund_fee"]),
                        "refund_status_%d" % n: r["state"],
                        "refund_account_%d" % n: "REFUND_SOURCE_UNSETTLED_FUNDS",
                        "refund_recv_accout_%d" % n: "支付用户零钱"})
            if r.get("success_time"):
                out["refund_success_time_%d" % n] = r["success_time"]
        return out

    ENDPOINTS = {"/pay/unifiedorder": "unifiedorder", "/pay/orderquery": "orderquery",
                 "/pay/closeorder": "closeorder", "/secapi/pay/refund": "refund",
                 "/pay/refundquery": "refundquery"}

    def answer(self, path, body, peer_cn, fault):
        """The XML answer of an API endpoint."""
        p = from_xml(body)
        if p is None:
            return to_xml({"return_code": "FAIL", "return_msg": "XML_FORMAT_ERROR"})
        mch = self.merchants.get(p.get("mch_id", ""))
        if mch is None:
            return to_xml({"return_code": "FAIL", "return_msg": "MCHID_NOT_EXIST"})
        sign_type = p.get("sign_type", "MD5")
        try:
            sign_type = self.authenticate(mch, p, peer_cn, path)
            out = {"result_code": "SUCCESS", **getattr(self, self.ENDPOINTS[path])(mch, p)}
        except CommError as e:
            return to_xml({"return_code": "FAIL", "return_msg": str(e)})
        except ApiError as e:
            out = {"result_code": "FAIL", "err_code": e.code, "err_code_des": e.des}
        except (ValueError, KeyError) as e:
            out = {"result_code": "FAIL", "err_code": "PARAM_ERROR", "err_code_des": str(e)}
        resp = {"return_code": "SUCCESS", "return_msg": "OK", "appid": mch["appid"], "mch_id": mch["mch_id"],
                "nonce_str": nonce(16), **out}
        if fault and fault["mode"] == "wrong_appid":
            resp["appid"] = "wx0000000000000000"
        resp["sign"] = sign(resp, mch["api_key"], sign_type)
        if fault and fault["mode"] == "badsign":
            resp["sign"] = sign(resp, "not-the-merchant-key-0123456789ab", sign_type)
        return to_xml(resp)

    # ----------------------------------------------------- notifications

    def notification(self, order, fields=None, sign_type=None, include_sign_type=False):
        mch = self.merchants[order["mch_id"]]
        st = sign_type or mch.get("sign_type", "MD5")
        body = {"return_code": "SUCCESS", "return_msg": "OK", "appid": mch["appid"], "mch_id": mch["mch_id"],
                "nonce_str": nonce(), "result_code": "SUCCESS",
                **{k: v for k, v in self.trade_fields(order).items() if k not in ("trade_state", "trade_state_desc")}}
        if include_sign_type:
            body["sign_type"] = st
        for k, v in (fields or {}).items():
            if v is None:
                body.pop(k, None)
            else:
                body[k] = str(v)
        body["sign"] = sign(body, mch["api_key"], st)
        return to_xml(body)

    def refund_notification(self, r, fields=None):
        mch = self.merchants[r["mch_id"]]
        order = self.orders[(r["mch_id"], r["out_trade_no"])]
        plain = {"transaction_id": order["transaction_id"], "out_trade_no": r["out_trade_no"],
                 "refund_id": r["refund_id"], "out_refund_no": r["out_refund_no"],
                 "total_fee": str(order["total_fee"]), "settlement_total_fee": str(order["total_fee"]),
                 "refund_fee": str(r["refund_fee"]), "settlement_refund_fee": str(r["refund_fee"]),
                 "refund_status": r["state"], "success_time": r.get("success_time", ""),
                 "refund_recv_accout": "支付用户零钱", "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS",
                 "refund_request_source": "API"}
        plain.update({k: str(v) for k, v in (fields or {}).items()})
        inner = "<root>" + to_xml(plain)[5:-6] + "</root>"
        return to_xml({"return_code": "SUCCESS", "appid": mch["appid"], "mch_id": mch["mch_id"],
                       "nonce_str": nonce(), "req_info": refund_encrypt(inner.encode(), mch["api_key"])})

    def spawn_delivery(self, url, body, key):
        asyncio.get_running_loop().create_task(self.deliver(url, body, key))

    async def deliver(self, url, body, key):
        attempts = self.deliveries.setdefault(key, [])
        for n, delay in enumerate(NOTIFY_SCHEDULE):
            await asyncio.sleep(delay * self.args.notify_scale)
            status, reply, ok = await self.post(url, body)
            self.stats["notify_deliveries"] += 1
            attempts.append({"attempt": n + 1, "at": time.time(), "http_status": status,
                             "response": reply[:500], "success": ok})
            if ok:
                return

    async def post(self, url, body):
        u = urllib.parse.urlsplit(url)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                u.hostname, u.port or (443 if u.scheme == "https" else 80),
                ssl=self.client_ssl if u.scheme == "https" else None), 5)
            data = body.encode()
            writer.write(("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n"
                          "Connection: close\r\n\r\n" % (u.path or "/", u.netloc, len(data))).encode() + data)
            raw = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            head, _, reply = raw.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            answer = from_xml(reply) or {}
            return status, reply.decode("utf-8", "replace"), status == 200 and answer.get("return_code") == "SUCCESS"
        except (OSError, asyncio.TimeoutError, ValueError, IndexError, ssl.SSLError) as e:
            return 0, "%s: %s" % (type(e).__name__, e), False

    # ------------------------------------------------------------ control

    def control(self, method, path, query, payload):
        q = dict(urllib.parse.parse_qsl(query))
        if path == "/_sim/merchants" and method == "POST":
            m = {k: payload[k] for k in ("mch_id", "appid", "api_key")}
            m["sign_type"] = payload.get("sign_type") or "MD5"
            m["notify_url"] = payload.get("notify_url")
            self.merchants[m["mch_id"]] = m
            cert, key = self.pki.client_cert(m["mch_id"])
            return {"cert_pem": cert, "key_pem": key}
        if path == "/_sim/pay" and method == "POST":
            order = self.orders[(payload["mch_id"], payload["out_trade_no"])]
            order["state"] = payload.get("trade_state", "SUCCESS")
            if order["state"] in ("SUCCESS", "REFUND"):
                order.setdefault("transaction_id", "42000%023d" % random.randrange(10 ** 23))
                order.setdefault("time_end", now_cst().strftime("%Y%m%d%H%M%S"))
                order.setdefault("openid", order["params"].get("openid") or "oSim" + nonce(24))
            if payload.get("total_fee") is not None:
                order["reported_fee"] = int(payload["total_fee"])
            body = self.notification(order)
            if payload.get("notify", True) and order["state"] == "SUCCESS":
                self.spawn_delivery(order["params"]["notify_url"], body, order["out_trade_no"])
            return {"transaction_id": order.get("transaction_id"), "notification": body}
        if path == "/_sim/notification" and method == "POST":
            order = dict(self.orders[(payload["mch_id"], payload["out_trade_no"])])
            order.setdefault("transaction_id", "42000%023d" % random.randrange(10 ** 23))
            order.setdefault("time_end", now_cst().strftime("%Y%m%d%H%M%S"))
            order.setdefault("openid", order["params"].get("openid") or "oSim" + nonce(24))
            self.orders[(payload["mch_id"], payload["out_trade_no"])].update(
                {k: order[k] for k in ("transaction_id", "time_end", "openid")})
            order["state"] = "SUCCESS"
            return {"body": self.notification(order, payload.get("fields"), payload.get("sign_type"),
                                              payload.get("include_sign_type", False))}
        if path == "/_sim/refund_state" and method == "POST":
            r = self.refunds[(payload["mch_id"], payload["out_refund_no"])]
            self.set_refund_state(r, payload["state"], payload.get("notify", False))
            return {"state": r["state"]}
        if path == "/_sim/refund_notification" and method == "POST":
            r = self.refunds[(payload["mch_id"], payload["out_refund_no"])]
            return {"body": self.refund_notification(r, payload.get("fields"))}
        if path == "/_sim/backdate" and method == "POST":
            self.orders[(payload["mch_id"], payload["out_trade_no"])]["created"] -= payload["seconds"]
            return {}
        if path == "/_sim/faults" and method == "POST":
            if payload.get("mode", "none") == "none":
                self.faults.clear()
            else:
                count = payload.get("count", 1)
                self.faults.append({"mode": payload["mode"], "count": float("inf") if count < 0 else count,
                                    "delay_ms": payload.get("delay_ms", 0), "path": payload.get("path")})
            return {"queued": len(self.faults)}
        if path == "/_sim/stats" and method == "GET":
            return self.stats
        if path == "/_sim/stats/reset" and method == "POST":
            self.reset_stats()
            return {}
        if path == "/_sim/orders" and method == "GET":
            o = self.orders.get((q.get("mch_id"), q.get("out_trade_no")))
            if o is None:
                return None
            return {**{k: v for k, v in o.items() if k != "refunds"},
                    "refunds": [{k: v for k, v in r.items()} for r in o["refunds"]]}
        if path == "/_sim/deliveries" and method == "GET":
            return self.deliveries.get(q.get("out_trade_no") or q.get("out_refund_no"), [])
        if path == "/_sim/reset" and method == "POST":
            self.orders.clear()
            self.refunds.clear()
            self.faults.clear()
            self.deliveries.clear()
            self.reset_stats()
            return {}
        raise KeyError(path)


# ------------------------------------------------------------------- HTTP

async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    if length > MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length) if length else b""
    return method, target, headers, body


def response(status, body, ctype="text/xml; charset=utf-8", close=False):
    data = body.encode() if isinstance(body, str) else body
    reason = {200: "OK", 404: "Not Found", 400: "Bad Request", 500: "Internal Server Error"}.get(status, "OK")
    return ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (status, reason, ctype, len(data), "Connection: close\r\n" if close else "")).encode() + data


async def serve_api(sim, writer, path, body, peer_cn):
    """Answer an API request, applying the next matching fault."""
    sim.stats["requests_total"] += 1
    sim.stats["requests"][path] = sim.stats["requests"].get(path, 0) + 1
    fault = sim.take_fault(path)
    mode = fault["mode"] if fault else None
    if sim.args.latency_ms:
        await asyncio.sleep(sim.args.latency_ms / 1000)
    if mode == "delay":
        await asyncio.sleep(fault["delay_ms"] / 1000)
    if mode == "reset":
        writer.transport.abort()
        return False
    if mode == "http500":
        writer.write(response(500, "internal error", "text/plain"))
        return True
    if mode == "garbage":
        writer.write(response(200, b"\x00\xffthis is not xml at all{"))
        return True
    xml = sim.answer(path, body, peer_cn, fault)
    if mode == "oversize":
        xml = xml[:-6] + "<pad><![CDATA[" + "x" * (3 * 1024 * 1024) + "]]></pad></xml>"
    if mode == "truncated":
        data = xml.encode()
        writer.write(("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n"
                      % (len(data) + 100)).encode() + data[: len(data) // 2])
        await writer.drain()
        writer.transport.abort()
        return False
    writer.write(response(200, xml))
    return True


async def handle(sim, reader, writer):
    sim.stats["connections"] += 1
    sslobj = writer.get_extra_info("ssl_object")
    peer_cn = None
    if sslobj is not None:
        sim.stats["tls_handshakes"] += 1
        if sslobj.session_reused:
            sim.stats["tls_resumed"] += 1
        cert = sslobj.getpeercert()
        if cert:
            peer_cn = dict(x[0] for x in cert.get("subject", ())).get("commonName")
    try:
        while True:
            try:
                method, target, headers, body = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                break
            except ValueError:
                writer.write(response(400, "bad request", "text/plain", close=True))
                break
            path, _, query = target.partition("?")
            close = headers.get("connection", "").lower() == "close"
            if path.startswith("/_sim/"):
                try:
                    payload = json.loads(body) if body else {}
                    out = sim.control(method, path, query, payload)
                    writer.write(response(200, json.dumps(out, ensure_ascii=False), "application/json"))
                except (KeyError, ValueError, TypeError) as e:
                    writer.write(response(404, json.dumps({"error": str(e)}), "application/json"))
            elif path in Sim.ENDPOINTS and method == "POST":
                if not await serve_api(sim, writer, path, body, peer_cn):
                    break
            else:
                writer.write(response(404, "not found", "text/plain"))
            await writer.drain()
            if close:
                break
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        if not writer.transport.is_closing():
            writer.close()


async def main():
    ap = argparse.ArgumentParser(description="WeChat Pay v2 simulator")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--notify-scale", type=float, default=0.01)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--refund-delay-ms", type=float, default=1000)
    ap.add_argument("--close-min-age-s", type=float, default=300)
    ap.add_argument("--merchant", action="append", default=[], help="MCH:APPID:KEY")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    pki = Pki(args.dir)
    sim = Sim(args, pki)
    for spec in args.merchant:
        mch, appid, key = spec.split(":", 2)
        sim.merchants[mch] = {"mch_id": mch, "appid": appid, "api_key": key, "sign_type": "MD5", "notify_url": None}
    server = await asyncio.start_server(lambda r, w: handle(sim, r, w), args.host, args.port,
                                        ssl=pki.server_context(), backlog=1024)
    port = server.sockets[0].getsockname()[1]
    for name, value in (("port", port), ("pid", os.getpid())):
        tmp = os.path.join(args.dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write("%s\n" % value)
        os.rename(tmp, os.path.join(args.dir, name))
    print("wxsim listening on https://%s:%d" % (args.host, port), flush=True)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
