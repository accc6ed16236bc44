#!/usr/bin/python3
"""Tests of the simulator's API v3 (wxsim_v3.py): its primitives against the
vectors of wxpay-v3-api.md §8, and end to end on an ephemeral port: our
Authorization checked, answers and notifications signed and encrypted,
probes, skew, certificate rotation and the migration to the public key;
the v3 bills and their unsigned download (bills_v3.py).

    cd sim && /usr/bin/python3 -m unittest -v test_wxsim_v3
"""
import base64
import datetime
import gzip
import hashlib
import http.client
import http.server
import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wxsim_v3 as v3  # noqa: E402
import test_wxsim  # noqa: E402
from test_wxsim import start_sim, wait_for  # noqa: E402

VECTORS = os.path.join(HERE, "..", "test", "vectors", "v3")
APIV3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
# How long to poll for what the simulator does in the background (a
# notification delivered): generous, for a loaded machine; a test that
# passes returns as soon as its condition holds.
LONG_WAIT = 120


def vector(name):
    with open(os.path.join(VECTORS, name), "rb") as f:
        return f.read()


class Primitives(unittest.TestCase):
    """The simulator signs and encrypts exactly as the official vectors say."""

    def test_official_paysign_and_request(self):
        key = serialization.load_pem_private_key(vector("doc_merchant_key.pem"), None)
        message = v3.lines("wx2421b1c4370ec43b", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242",
                           "prepay_id=wx201410272009395522657a690389285100")
        self.assertTrue(v3.rsa_sign(key, message).startswith("mI35pfNEQV6777ke/1T+LJLQDNTm7yeo"))
        close = v3.lines("POST", "/v3/pay/transactions/out-trade-no/1217752501201407033233368018/close",
                         "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", '{"mchid":"1230000109"}')
        self.assertTrue(v3.rsa_sign(key, close).endswith("cKN3ug=="))

    def test_official_verification(self):
        pub = serialization.load_pem_public_key(vector("doc_wechatpay_pub.pem"))
        message = v3.lines("1722850421", "d824f2e086d3c1df967785d13fcd22ef",
                           '{"code_url":"weixin://wxpay/bizpayurl?pr=JyC91EIz1"}')
        sig = ("mfI1CPqvBrgcXfgXMFjdNIhBf27ACE2YyeWsWV9ZI7T7RU0vHvbQpu9Z32ogzc+k8ZC5n3kz7h70eWKjgqNdKQF0eRp8mVKlmf"
               "zMLBVHbssB9jEZEDXThOX1XFqX7s7ymia1hoHQxQagPGzkdWxtlZPZ4ZPvr1RiqkgAu6Is8MZgXXrRoBKqjmSdrP1N7uxzJ/cjf"
               "Siis9FiLjuADoqmQ1P7p2N876YPAol7Rn0+GswwAwxldbdLrmVSjfytfSBJFqTMHn4itojgxSWWN1byuckQt8hSTEv/Lg97Qo"
               "eGniYP17T80pJeQyL3b+295FPHSO2AtvCgyIbKMZ0BALilAA==")
        self.assertTrue(v3.rsa_verify(pub, message, sig))
        self.assertFalse(v3.rsa_verify(pub, message, v3.PROBE_PREFIX + sig[19:]))

    def test_serial_keeps_a_leading_zero(self):
        cert = x509.load_pem_x509_certificate(vector("serial_leading_zero_cert.pem"))
        self.assertEqual(v3.serial_hex(cert), "0A1B2C3D4E5F60718293A4B5C6D7E8F901234567")

    def test_gcm_round_trip_and_a1(self):
        resource = v3.gcm_encrypt(APIV3_KEY, "message", "associatedData")
        self.assertEqual(len(resource["nonce"]), 12)
        plain = AESGCM(APIV3_KEY.encode()).decrypt(resource["nonce"].encode(),
                                                   base64.b64decode(resource["ciphertext"]), b"associatedData")
        self.assertEqual(plain, b"message")
        a1 = AESGCM(APIV3_KEY.encode()).decrypt(b"uluk4a9R25RW", base64.b64decode("ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="),
                                                b"associatedData")
        self.assertEqual(a1, b"message")

    def test_authorization_parsing(self):
        good = ('WECHATPAY2-SHA256-RSA2048 mchid="1900007291",nonce_str="593B",signature="c2ln",'
                'timestamp="1554208460",serial_no="408B"')
        self.assertEqual(v3.parse_authorization(good)["serial_no"], "408B")
        self.assertIsNone(v3.parse_authorization(good.replace("RSA2048", "RSA")))
        self.assertIsNone(v3.parse_authorization(good.replace(',serial_no="408B"', "")))
        self.assertIsNone(v3.parse_authorization(None))


class V3Receiver(http.server.BaseHTTPRequestHandler):
    """A v3 notify endpoint that verifies like a merchant should: 401 for
    anything that does not verify (probes included), 204 otherwise."""
    protocol_version = "HTTP/1.1"
    keys = {}          # serial -> public key
    received = {}      # path -> [(headers, body)]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.setdefault(self.path, []).append((dict(self.headers), body))
        key = self.keys.get(self.headers.get("Wechatpay-Serial"))
        ts = self.headers.get("Wechatpay-Timestamp", "0")
        ok = key is not None and abs(time.time() - int(ts)) <= 300 and v3.rsa_verify(
            key, v3.lines(ts, self.headers.get("Wechatpay-Nonce", ""), body),
            self.headers.get("Wechatpay-Signature", ""))
        reply = b"" if ok else b'{"code":"FAIL","message":"verification failed"}'
        self.send_response(204 if ok else 401)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class V3EndToEnd(unittest.TestCase):
    CERT_MCH, PUBKEY_MCH, APPID = "1900007291", "1900007292", "wxd678efh567hg6787"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="wxsim-v3-test-")
        cls.addClassCleanup(shutil.rmtree, cls.dir)
        cls.receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), V3Receiver)
        threading.Thread(target=cls.receiver.serve_forever, daemon=True).start()
        cls.notify_base = "http://127.0.0.1:%d" % cls.receiver.server_address[1]
        cls.proc, cls.port = start_sim(cls.dir, "--notify-scale", "0.001", "--refund-delay-ms", "200")
        cls.addClassCleanup(cls.proc.kill)     # also when setUpClass fails
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.dir, "ca.pem"))
        cls.conn = http.client.HTTPSConnection("127.0.0.1", cls.port, context=cls.ctx)
        cls.creds = {}
        for mch, mode in ((cls.CERT_MCH, "certificate"), (cls.PUBKEY_MCH, "public_key")):
            cls.creds[mch] = cls.control("POST", "/_sim/merchants", {
                "mch_id": mch, "appid": cls.APPID, "api_key": "x" * 32, "protocol": "v3",
                "apiv3_key": APIV3_KEY, "key_mode": mode, "notify_url": cls.notify_base + "/refund"})
            cls.learn_keys(cls.creds[mch]["wechatpay_keys"])

    # The v2 tests' teardown and helpers, unbound: they use this class's
    # simulator, receiver and connection.
    tearDownClass = test_wxsim.EndToEnd.__dict__["tearDownClass"]
    http = test_wxsim.EndToEnd.__dict__["http"]
    control = test_wxsim.EndToEnd.__dict__["control"]

    @classmethod
    def learn_keys(cls, listing):
        for k in listing:
            pem = k["pem"].encode()
            V3Receiver.keys[k["serial"]] = (x509.load_pem_x509_certificate(pem).public_key()
                                            if k["kind"] == "certificate" else serialization.load_pem_public_key(pem))

    def call(self, mch, method, url, obj=None, *, ts=None, serial=None, headers=None, verify=True):
        """A signed v3 request: (status, headers, body, parsed JSON or None)."""
        body = json.dumps(obj, separators=(",", ":")) if obj is not None else ""
        key = serialization.load_pem_private_key(self.creds[mch]["key_pem"].encode(), None)
        ts = str(int(time.time())) if ts is None else str(ts)
        nonce = "593BEC0C930BF1AFEB40B4A08C8FB242"
        sig = v3.rsa_sign(key, v3.lines(method, url, ts, nonce, body))
        auth = ('WECHATPAY2-SHA256-RSA2048 mchid="%s",nonce_str="%s",timestamp="%s",serial_no="%s",signature="%s"'
                % (mch, nonce, ts, serial or self.creds[mch]["serial_no"], sig))
        h = {"Authorization": auth, "Accept": "application/json", "User-Agent": "test_wxsim_v3",
             "Content-Type": "application/json", **(headers or {})}
        status, rh, raw = self.http(method, url, body.encode() if body else None, headers={k: v for k, v in h.items() if v})
        if verify and status in (200, 204):
            self.assertTrue(self.verified(rh, raw), "answer does not verify: %r" % rh)
        return status, rh, raw, (json.loads(raw) if raw and "json" in rh.get("Content-Type", "") else None)

    @staticmethod
    def verified(headers, raw):
        key = V3Receiver.keys.get(headers.get("Wechatpay-Serial"))
        return key is not None and v3.rsa_verify(key, v3.lines(headers["Wechatpay-Timestamp"],
                                                               headers["Wechatpay-Nonce"], raw),
                                                  headers["Wechatpay-Signature"])

    def prepay(self, mch, kind, no, **extra):
        body = {"appid": self.APPID, "mchid": mch, "description": "Image形象店-深圳腾大-QQ公仔", "out_trade_no": no,
                "notify_url": self.notify_base + "/pay/" + no, "amount": {"total": 100, "currency": "CNY"}, **extra}
        return self.call(mch, "POST", "/v3/pay/transactions/" + kind, body)

    def test_prepay_of_every_type(self):
        s, h, _, j = self.prepay(self.CERT_MCH, "jsapi", "v3-jsapi", payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})
        self.assertEqual((s, h["Wechatpay-Serial"]), (200, self.creds[self.CERT_MCH]["serial_no"] and
                                                      self.creds[self.CERT_MCH]["wechatpay_keys"][0]["serial"]))
        self.assertTrue(j["prepay_id"].startswith("wx"))
        self.assertEqual(self.prepay(self.CERT_MCH, "app", "v3-app")[3].keys(), {"prepay_id"})
        self.assertTrue(self.prepay(self.CERT_MCH, "native", "v3-native")[3]["code_url"].startswith("weixin://"))
        h5 = self.prepay(self.PUBKEY_MCH, "h5", "v3-h5", scene_info={"payer_client_ip": "203.0.113.7",
                                                                     "h5_info": {"type": "Wap"}})
        self.assertTrue(h5[1]["Wechatpay-Serial"].startswith("PUB_KEY_ID_"))
        self.assertIn("h5_url", h5[3])
        status, _, _, err = self.prepay(self.CERT_MCH, "jsapi", "v3-jsapi-no-openid")
        self.assertEqual((status, err["code"]), (400, "PARAM_ERROR"))
        status, _, _, err = self.prepay(self.CERT_MCH, "app", "v3-app", description="other")
        self.assertEqual((status, err["code"]), (400, "INVALID_REQUEST"))

    def test_authorization_is_checked(self):
        url = "/v3/pay/transactions/out-trade-no/none?mchid=" + self.CERT_MCH
        self.assertEqual(self.call(self.CERT_MCH, "GET", url, serial="ABCDEF")[3]["code"], "SIGN_ERROR")
        self.assertEqual(self.call(self.CERT_MCH, "GET", url, ts=int(time.time()) - 400)[0], 401)
        status, _, _, err = self.call(self.CERT_MCH, "GET", url, headers={"User-Agent": None})
        self.assertEqual((status, err["code"]), (400, "INVALID_REQUEST"))
        # Signed for another URL: WeChat Pay shows what it reconstructed.
        key = serialization.load_pem_private_key(self.creds[self.CERT_MCH]["key_pem"].encode(), None)
        sig = v3.rsa_sign(key, v3.lines("GET", "/v3/other", "1", "n", ""))
        auth = ('WECHATPAY2-SHA256-RSA2048 mchid="%s",nonce_str="n",timestamp="%d",serial_no="%s",signature="%s"'
                % (self.CERT_MCH, int(time.time()), self.creds[self.CERT_MCH]["serial_no"], sig))
        status, headers, raw = self.http("GET", url, headers={"Authorization": auth, "Accept": "*/*",
                                                              "User-Agent": "t"})
        err = json.loads(raw)
        self.assertEqual((status, err["code"], err["detail"]["sign_information"]["url"]), (401, "SIGN_ERROR", url))
        self.assertNotIn("Wechatpay-Signature", headers, "error answers are unsigned")

    def test_query_close_and_notification(self):
        no = "v3-paid"
        self.prepay(self.CERT_MCH, "native", no)
        q = self.call(self.CERT_MCH, "GET", "/v3/pay/transactions/out-trade-no/%s?mchid=%s" % (no, self.CERT_MCH))
        self.assertEqual((q[0], q[3]["trade_state"], q[3]["amount"]["total"]), (200, "NOTPAY", 100))
        self.assertEqual(self.call(self.CERT_MCH, "GET", "/v3/pay/transactions/out-trade-no/x?mchid=%s"
                                   % self.CERT_MCH)[3]["code"], "ORDER_NOT_EXIST")
        # One probe, then a skewed timestamp, then the genuine notification.
        paid = self.control("POST", "/_sim/pay", {"mch_id": self.CERT_MCH, "out_trade_no": no, "probes": 1,
                                                  "skew_s": -600})
        # Polled until the genuine attempt succeeded, as long as a loaded
        # machine needs (a few seconds would fail under load).
        attempts = wait_for(lambda: [a for a in self.control("GET", "/_sim/deliveries?out_trade_no=" + no)
                                     if a["success"]], LONG_WAIT)
        self.assertTrue(attempts)
        attempts = self.control("GET", "/_sim/deliveries?out_trade_no=" + no)
        self.assertEqual([(a["attempt"], a["http_status"]) for a in attempts], [(1, 401), (2, 401), (3, 204)])
        received = V3Receiver.received["/pay/" + no]
        self.assertTrue(received[0][0]["Wechatpay-Signature"].startswith(v3.PROBE_PREFIX))
        self.assertLess(int(received[1][0]["Wechatpay-Timestamp"]), time.time() - 500)
        self.assertEqual(received[2][0]["Wechatpay-Signature"], paid["headers"]["Wechatpay-Signature"])
        envelope = json.loads(received[2][1])
        self.assertEqual((envelope["event_type"], envelope["resource"]["associated_data"]),
                         ("TRANSACTION.SUCCESS", "transaction"))
        r = envelope["resource"]
        plain = json.loads(AESGCM(APIV3_KEY.encode()).decrypt(r["nonce"].encode(), base64.b64decode(r["ciphertext"]),
                                                             b"transaction"))
        self.assertEqual((plain["out_trade_no"], plain["amount"]["total"], plain["transaction_id"]),
                         (no, 100, paid["transaction_id"]))
        by_id = self.call(self.CERT_MCH, "GET", "/v3/pay/transactions/id/%s?mchid=%s"
                          % (paid["transaction_id"], self.CERT_MCH))
        self.assertEqual(by_id[3]["trade_state"], "SUCCESS")
        self.assertEqual(self.call(self.CERT_MCH, "POST", "/v3/pay/transactions/out-trade-no/%s/close" % no,
                                   {"mchid": self.CERT_MCH})[3]["code"], "ORDER_PAID")
        self.prepay(self.CERT_MCH, "app", "v3-close")
        closed = self.call(self.CERT_MCH, "POST", "/v3/pay/transactions/out-trade-no/v3-close/close",
                           {"mchid": self.CERT_MCH})
        self.assertEqual((closed[0], closed[2]), (204, b""))

    def test_refund_and_its_notification(self):
        no = "v3-refunded"
        self.prepay(self.PUBKEY_MCH, "app", no)
        self.control("POST", "/_sim/pay", {"mch_id": self.PUBKEY_MCH, "out_trade_no": no, "notify": False})
        # Its own notify_url: another test's refund notification, however
        # late, is not taken for this one's.
        body = {"out_trade_no": no, "out_refund_no": "v3-r1", "amount": {"refund": 40, "total": 100, "currency": "CNY"},
                "notify_url": self.notify_base + "/refund/v3-r1"}
        s, _, _, r = self.call(self.PUBKEY_MCH, "POST", "/v3/refund/domestic/refunds", body)
        self.assertEqual((s, r["status"], r["amount"]["refund"]), (200, "PROCESSING", 40))
        delivered = wait_for(lambda: V3Receiver.received.get("/refund/v3-r1"), LONG_WAIT)
        self.assertTrue(delivered)
        envelope = json.loads(delivered[-1][1])
        self.assertEqual(envelope["event_type"], "REFUND.SUCCESS")
        q = self.call(self.PUBKEY_MCH, "GET", "/v3/refund/domestic/refunds/v3-r1")
        self.assertEqual(q[3]["status"], "SUCCESS")
        self.assertEqual(self.call(self.PUBKEY_MCH, "GET", "/v3/refund/domestic/refunds/none")[3]["code"],
                         "RESOURCE_NOT_EXISTS")
        body["amount"]["refund"] = 70
        body["out_refund_no"] = "v3-r2"
        self.assertEqual(self.call(self.PUBKEY_MCH, "POST", "/v3/refund/domestic/refunds", body)[3]["code"],
                         "NOT_ENOUGH")

    def test_certificates_rotation_and_migration(self):
        mch = "1900007293"
        creds = self.control("POST", "/_sim/merchants", {"mch_id": mch, "appid": self.APPID, "api_key": "x" * 32,
                                                         "protocol": "v3", "apiv3_key": APIV3_KEY})
        self.creds[mch] = creds
        self.learn_keys(creds["wechatpay_keys"])
        first = creds["wechatpay_keys"][0]["serial"]
        s, h, _, j = self.call(mch, "GET", "/v3/certificates")
        self.assertEqual((s, h["Wechatpay-Serial"], [d["serial_no"] for d in j["data"]]), (200, first, [first]))
        enc = j["data"][0]["encrypt_certificate"]
        pem = AESGCM(APIV3_KEY.encode()).decrypt(enc["nonce"].encode(), base64.b64decode(enc["ciphertext"]),
                                                 b"certificate")
        self.assertEqual(v3.serial_hex(x509.load_pem_x509_certificate(pem)), first)
        rotated = self.control("POST", "/_sim/v3/keys", {"mch_id": mch, "action": "rotate"})
        self.learn_keys(rotated["wechatpay_keys"])
        self.assertNotEqual(rotated["signing"], first)
        s, h, _, j = self.call(mch, "GET", "/v3/certificates")
        self.assertEqual((h["Wechatpay-Serial"], len(j["data"])), (rotated["signing"], 2))
        # Migration: the public key is added, then signs, then certificates go.
        added = self.control("POST", "/_sim/v3/keys", {"mch_id": mch, "action": "add_public_key"})
        self.learn_keys(added["wechatpay_keys"])
        self.assertEqual(added["signing"], rotated["signing"])
        switched = self.control("POST", "/_sim/v3/keys", {"mch_id": mch, "action": "sign_with",
                                                          "sign_with": "public_key"})
        self.assertTrue(switched["signing"].startswith("PUB_KEY_ID_"))
        # During the migration an answer is signed with the key the request's
        # Wechatpay-Serial names, the certificate when it names none.
        for named, signer in ((switched["signing"], switched["signing"]), (rotated["signing"], rotated["signing"]),
                              (None, rotated["signing"])):
            h = self.call(mch, "GET", "/v3/certificates", headers={"Wechatpay-Serial": named})[1]
            self.assertEqual(h["Wechatpay-Serial"], signer, "request naming %s" % named)
        shown = self.control("POST", "/_sim/v3/keys", {"mch_id": mch, "action": "show"})
        self.assertEqual((shown["last_request_serial"], shown["last_answer_serial"]), (None, rotated["signing"]))
        self.control("POST", "/_sim/v3/keys", {"mch_id": mch, "action": "drop_certificates"})
        s, h, _, err = self.call(mch, "GET", "/v3/certificates")
        self.assertEqual((s, err["code"]), (404, "RESOURCE_NOT_EXISTS"))
        s, h, _, err = self.call(self.PUBKEY_MCH, "GET", "/v3/certificates")
        self.assertEqual((s, err["code"]), (404, "RESOURCE_NOT_EXISTS"))

    def test_answer_faults(self):
        url = "/v3/pay/transactions/out-trade-no/none?mchid=" + self.CERT_MCH
        self.prepay(self.CERT_MCH, "app", "v3-faults")
        url = "/v3/pay/transactions/out-trade-no/v3-faults?mchid=" + self.CERT_MCH
        self.control("POST", "/_sim/v3/faults", {"mode": "probe"})
        _, h, raw, _ = self.call(self.CERT_MCH, "GET", url, verify=False)
        self.assertTrue(h["Wechatpay-Signature"].startswith(v3.PROBE_PREFIX))
        self.assertFalse(self.verified(h, raw))
        self.control("POST", "/_sim/v3/faults", {"mode": "skew", "skew_s": 400})
        before = int(time.time())
        _, h, raw, _ = self.call(self.CERT_MCH, "GET", url)
        self.assertGreaterEqual(int(h["Wechatpay-Timestamp"]), before + 400)
        self.control("POST", "/_sim/v3/faults", {"mode": "badsign"})
        _, h, raw, _ = self.call(self.CERT_MCH, "GET", url, verify=False)
        self.assertFalse(self.verified(h, raw))
        self.assertTrue(self.call(self.CERT_MCH, "GET", url)[0] == 200, "faults are used up")
        # string_amount: signed as usual, the amounts JSON strings.
        self.control("POST", "/_sim/v3/faults", {"mode": "string_amount"})
        _, h, raw, obj = self.call(self.CERT_MCH, "GET", url)
        self.assertTrue(self.verified(h, raw))
        self.assertEqual(obj["amount"]["total"], "100")
        self.assertEqual(self.call(self.CERT_MCH, "GET", url)[3]["amount"]["total"], 100)

    def test_outcome_faults(self):
        self.prepay(self.CERT_MCH, "app", "v3-outcome")
        self.control("POST", "/_sim/pay", {"mch_id": self.CERT_MCH, "out_trade_no": "v3-outcome", "notify": False})
        refund = {"out_trade_no": "v3-outcome", "amount": {"refund": 10, "total": 100, "currency": "CNY"}}
        # A fault for another path waits; http500 and http429 are refused unprocessed.
        self.control("POST", "/_sim/v3/faults", {"mode": "lost", "path": "/v3/certificates"})
        for mode, status, code in (("http500", 500, "SYSTEM_ERROR"), ("http429", 429, "FREQUENCY_LIMITED")):
            self.control("POST", "/_sim/v3/faults", {"mode": mode, "path": "/v3/refund/domestic/refunds"})
            got, h, _, obj = self.call(self.CERT_MCH, "POST", "/v3/refund/domestic/refunds",
                                       dict(refund, out_refund_no="v3-o-" + mode))
            self.assertEqual((got, obj["code"]), (status, code))
            self.assertNotIn("Wechatpay-Signature", h, "error answers are unsigned")
            self.assertEqual(self.call(self.CERT_MCH, "GET", "/v3/refund/domestic/refunds/v3-o-" + mode)[0], 404,
                             "%s: not processed" % mode)
        # refuse: unprocessed, with the status and code asked for.
        self.control("POST", "/_sim/v3/faults", {"mode": "refuse", "status": 401, "code": "SIGN_ERROR",
                                                 "path": "/v3/refund/domestic/refunds"})
        got, h, _, obj = self.call(self.CERT_MCH, "POST", "/v3/refund/domestic/refunds",
                                   dict(refund, out_refund_no="v3-o-refuse"))
        self.assertEqual((got, obj["code"]), (401, "SIGN_ERROR"))
        self.assertEqual(self.call(self.CERT_MCH, "GET", "/v3/refund/domestic/refunds/v3-o-refuse")[0], 404)
        # lost: processed, the answer a 500.
        self.control("POST", "/_sim/v3/faults", {"mode": "lost", "path": "/v3/refund/domestic/refunds"})
        got, _, _, obj = self.call(self.CERT_MCH, "POST", "/v3/refund/domestic/refunds",
                                   dict(refund, out_refund_no="v3-o-lost", notify_url=self.notify_base + "/refund/v3-o-lost"))
        self.assertEqual((got, obj["code"]), (500, "SYSTEM_ERROR"))
        got, _, _, obj = self.call(self.CERT_MCH, "GET", "/v3/refund/domestic/refunds/v3-o-lost")
        # It exists (PROCESSING, or SUCCESS once --refund-delay-ms passed:
        # on a loaded machine that can be before this query).
        self.assertEqual(got, 200, "lost: the refund was made")
        self.assertIn(obj["status"], ("PROCESSING", "SUCCESS"))
        self.assertEqual(self.control("POST", "/_sim/v3/faults", {"mode": "none"})["queue"], [])
        # Its notification comes, to its own notify_url.
        self.assertTrue(wait_for(lambda: V3Receiver.received.get("/refund/v3-o-lost"), LONG_WAIT))

    # ----------------------------------------------------------- bills

    def paid_today(self, no):
        self.prepay(self.PUBKEY_MCH, "app", no)
        self.control("POST", "/_sim/pay", {"mch_id": self.PUBKEY_MCH, "out_trade_no": no, "notify": False})
        return datetime.datetime.now(v3.CST).date().isoformat()

    def bill(self, what, query):
        """A signed bill request: (status, its JSON)."""
        status, _, _, obj = self.call(self.PUBKEY_MCH, "GET", "/v3/bill/%s?%s" % (what, query))
        return status, obj

    def download(self, url, mch=None):
        """The download_url fetched with a v3 Authorization: (status, headers, bytes)."""
        parsed = urllib.parse.urlsplit(url)
        return self.call(mch or self.PUBKEY_MCH, "GET", parsed.path + "?" + parsed.query, verify=False)[:3]

    def test_trade_bill_and_its_download(self):
        day = self.paid_today("v3-bill-1")
        status, offer = self.bill("tradebill", "bill_date=%s&bill_type=ALL" % day)
        self.assertEqual((status, offer["hash_type"]), (200, "SHA1"), "a signed answer (verified by call)")
        self.assertTrue(offer["download_url"].startswith("https://127.0.0.1:%d/v3/billdownload/file?token=" % self.port),
                        "the download_url is on the host asked")
        status, headers, data = self.download(offer["download_url"])
        self.assertEqual(status, 200)
        self.assertNotIn("Wechatpay-Signature", headers, "the file is not signed")
        self.assertEqual(hashlib.sha1(data).hexdigest(), offer["hash_value"], "hash_value is the file's SHA-1")
        text = data.decode()
        self.assertTrue(text.startswith("\ufeff交易时间") and "`v3-bill-1," in text, "the trade bill of v2's format")
        self.assertEqual(self.download(offer["download_url"])[0], 400, "a download_url works once")
        # gzip: hash_value is the SHA-1 of the uncompressed bill.
        status, offer = self.bill("tradebill", "bill_date=%s&bill_type=ALL&tar_type=GZIP" % day)
        self.assertTrue(offer["download_url"].endswith("&tartype=gzip"))
        status, headers, data = self.download(offer["download_url"])
        self.assertEqual((status, headers["Content-Type"]), (200, "application/x-gzip"))
        self.assertNotEqual(hashlib.sha1(data).hexdigest(), offer["hash_value"])
        self.assertEqual(gzip.decompress(data).decode(), text, "the same bill")
        self.assertEqual(hashlib.sha1(gzip.decompress(data)).hexdigest(), offer["hash_value"])
        # The download is authenticated like any v3 request, for the merchant offered it.
        _, offer = self.bill("tradebill", "bill_date=%s" % day)
        parsed = urllib.parse.urlsplit(offer["download_url"])
        self.assertEqual(self.http("GET", parsed.path + "?" + parsed.query,
                                   headers={"Accept": "*/*", "User-Agent": "t"})[0], 401)
        self.assertEqual(self.download(offer["download_url"], self.CERT_MCH)[0], 400, "another merchant's token")
        # Fund flow: BASIC has the day's payment; FEES has nothing.
        status, offer = self.bill("fundflowbill", "bill_date=%s&account_type=BASIC" % day)
        data = self.download(offer["download_url"])[2]
        self.assertTrue(data.decode().startswith("\ufeff记账时间") and hashlib.sha1(data).hexdigest() == offer["hash_value"])
        self.assertEqual(self.bill("fundflowbill", "bill_date=%s&account_type=FEES" % day)[1]["code"], "NO_STATEMENT_EXIST")

    def test_bill_refusals_and_faults(self):
        day = self.paid_today("v3-bill-2")
        self.assertEqual(self.bill("tradebill", "bill_date=2000-01-01")[1]["code"], "NO_STATEMENT_EXIST",
                         "a day without trades")
        status, err = self.bill("tradebill", "bill_date=%s" % day.replace("-", ""))
        self.assertEqual((status, err["code"]), (400, "INVALID_REQUEST"), "v3 days are yyyy-MM-dd")
        self.assertEqual(self.bill("tradebill", "bill_date=%s&bill_type=EVERYTHING" % day)[1]["code"], "PARAM_ERROR")
        self.control("POST", "/_sim/v3/faults", {"mode": "bill_creating", "path": "/v3/bill/tradebill"})
        status, err = self.bill("tradebill", "bill_date=%s" % day)
        self.assertEqual((status, err["code"]), (400, "STATEMENT_CREATING"))
        self.assertEqual(self.bill("tradebill", "bill_date=%s" % day)[0], 200, "then the bill")
        # bill_corrupt: the bytes received are not the ones hashed, yet still a bill.
        self.control("POST", "/_sim/v3/faults", {"mode": "bill_corrupt"})
        _, offer = self.bill("tradebill", "bill_date=%s" % day)
        data = self.download(offer["download_url"])[2]
        self.assertNotEqual(hashlib.sha1(data).hexdigest(), offer["hash_value"])
        self.assertTrue(data.decode().startswith("\ufeff交易时间") and "`Wxd678efh567hg6787" in data.decode(), "one letter changed")
        self.control("POST", "/_sim/v3/faults", {"mode": "bill_foreign_host"})
        self.assertTrue(self.bill("tradebill", "bill_date=%s" % day)[1]["download_url"].startswith(
            "https://bills.elsewhere.example/v3/billdownload/file?token="))
        self.control("POST", "/_sim/v3/faults", {"mode": "bill_expired"})
        _, offer = self.bill("tradebill", "bill_date=%s" % day)
        status, _, raw = self.download(offer["download_url"])
        self.assertEqual((status, json.loads(raw)["code"]), (400, "INVALID_REQUEST"), "an expired download_url")
        self.control("POST", "/_sim/v3/faults", {"mode": "bill_hash_upper"})
        _, offer = self.bill("tradebill", "bill_date=%s" % day)
        self.assertEqual(offer["hash_value"], hashlib.sha1(self.download(offer["download_url"])[2]).hexdigest().upper())
        self.control("POST", "/_sim/v3/faults", {"mode": "bill_sum", "path": "/v3/bill/fundflowbill"})
        _, offer = self.bill("fundflowbill", "bill_date=%s" % day)
        data = self.download(offer["download_url"])[2]
        self.assertEqual(hashlib.sha1(data).hexdigest(), offer["hash_value"], "a wrong sum, hashed as served")
        self.assertEqual(self.control("POST", "/_sim/v3/faults", {"mode": "none"})["queue"], [])


if __name__ == "__main__":
    unittest.main()
