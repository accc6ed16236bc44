#!/usr/bin/python3
"""Tests of the simulator: its signing and refund encryption against the
vectors of the v2 API notes (wxpay-v2-api.md, shared with the project, not in this repository) (so it can serve as an independent check of
the extension), and its HTTPS behaviour end to end on an ephemeral port.

    cd sim && /usr/bin/python3 -m unittest -v test_wxsim
"""
import base64
import datetime
import gzip
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wxsim  # noqa: E402

KEY = "192006250b4c09247ec02edce69f6a2d"
OFFICIAL = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000",
            "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}
MD5_OFFICIAL = "9A0A8659F005D6984697E2CA0A9CF3B7"
HMAC_OFFICIAL = "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"


def aes_ecb_decrypt(data, key):
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()


def decrypt_req_info(req_info, api_key):
    plain = aes_ecb_decrypt(base64.b64decode(req_info), wxsim.refund_aes_key(api_key))
    return plain, {child.tag: child.text for child in wxsim.ET.fromstring(plain)}


class SigningVectors(unittest.TestCase):
    """the v2 API notes (wxpay-v2-api.md, shared with the project, not in this repository) sections 2.2, 2.3, 2.4 and 6."""

    def test_official_example(self):
        self.assertEqual(wxsim.canonical_string(OFFICIAL, KEY),
                         "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100"
                         "&nonce_str=ibuaiVcKdpRxkhJA&key=" + KEY)
        self.assertEqual(wxsim.sign(OFFICIAL, KEY), MD5_OFFICIAL)
        self.assertEqual(wxsim.sign(OFFICIAL, KEY, "HMAC-SHA256"), HMAC_OFFICIAL)

    def test_hmac_message_includes_the_key_suffix(self):
        self.assertNotEqual(wxsim.sign(OFFICIAL, KEY, "HMAC-SHA256"),
                            "F734F0E6B3509F9701F4A27CA72985EE10313DD0F96B71CAB42985D0F4F56376")

    def test_sdk_vectors(self):
        params = {"test1": "test1", "test2": "test2"}
        self.assertEqual(wxsim.sign(params, KEY), "1E3A8D73B5A4AEE787C0F68B5DAB8520")
        self.assertEqual(wxsim.sign(params, KEY, "HMAC-SHA256"),
                         "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659")
        mini_program = {"appId": "wxd678efh567hg6787", "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                        "package": "prepay_id=wx2017033010242291fcfe0db70013231072", "signType": "MD5",
                        "timeStamp": "1490840662"}
        self.assertEqual(wxsim.sign(mini_program, "qazwsxedcrfvtgbyhnujmikolp111111"),
                         "22D9B4E54AB1950F51E0649E8810ACD6")

    def test_empty_values_and_sign_are_left_out(self):
        self.assertEqual(wxsim.sign({**OFFICIAL, "attach": ""}, KEY), MD5_OFFICIAL)
        self.assertEqual(wxsim.sign({**OFFICIAL, "attach": ""}, KEY, "HMAC-SHA256"), HMAC_OFFICIAL)
        self.assertEqual(wxsim.sign({**OFFICIAL, "sign": "WHATEVER"}, KEY), MD5_OFFICIAL)

    def test_raw_utf8_and_spaces(self):
        chinese = {"appid": "wxd930ea5d5a258f4f", "body": "腾讯充值中心-QQ会员充值", "mch_id": "10000100",
                   "nonce_str": "ibuaiVcKdpRxkhJA", "out_trade_no": "20150806125346", "total_fee": "1"}
        self.assertEqual(wxsim.sign(chinese, KEY), "F5B9645FC05BD22DCE996D868916F5AC")
        self.assertEqual(wxsim.sign(chinese, KEY, "HMAC-SHA256"),
                         "617197460F94E400DCC9C9D7FC660D67FC6A55CC4E1B8BC59DA31C0DC711835E")
        spaced = {"appid": "wxd930ea5d5a258f4f", "body": "test body", "mch_id": "10000100",
                  "nonce_str": "ibuaiVcKdpRxkhJA"}
        self.assertEqual(wxsim.sign(spaced, KEY), "D22591D31E77380EA374579E9E9FDD1D")
        self.assertEqual(wxsim.sign(spaced, KEY, "HMAC-SHA256"),
                         "155E0E6E20C517F591A9CB85C9FEA0EEDF2B0F0B47FD72C0E85D9E27BC16D37C")

    def test_sign_type_is_signed(self):
        params = {**OFFICIAL, "sign_type": "HMAC-SHA256"}
        self.assertEqual(wxsim.sign(params, KEY), "8BBDF38FFD24E59C51589AE437932C6B")
        self.assertEqual(wxsim.sign(params, KEY, "HMAC-SHA256"),
                         "2C9DF1156522C0B2B03B4DBF3BCA5CACB602CBD5CA0F9E112458CF3E9855303B")

    def test_client_second_signing(self):
        app = {"appid": "wxd930ea5d5a258f4f", "noncestr": "ibuaiVcKdpRxkhJA", "package": "Sign=WXPay",
               "partnerid": "10000100", "prepayid": "wx201411101639507cbf6ffd8b0779950874",
               "timestamp": "1412000000"}
        self.assertEqual(wxsim.sign(app, KEY), "932C45ECCFFFEE0C49C26BD82515E1F5")
        jsapi = {"appId": "wxd930ea5d5a258f4f", "nonceStr": "ibuaiVcKdpRxkhJA",
                 "package": "prepay_id=wx201411101639507cbf6ffd8b0779950874", "signType": "MD5",
                 "timeStamp": "1412000000"}
        self.assertEqual(wxsim.sign(jsapi, KEY), "5ECC3B83367556DBD94BB5045E3BAD60")
        self.assertEqual(wxsim.sign({**jsapi, "signType": "HMAC-SHA256"}, KEY, "HMAC-SHA256"),
                         "E48780BF60CD1ABA38B8898D8EF4A98BE915B6998D5E1A5B4DB2CCDD0F9F9765")


class RefundEncryptionVectors(unittest.TestCase):
    """the v2 API notes (wxpay-v2-api.md, shared with the project, not in this repository) section 5.2."""

    PLAIN = (b"<root><out_refund_no><![CDATA[1234]]></out_refund_no>"
             b"<refund_status><![CDATA[SUCCESS]]></refund_status></root>")
    REQ_INFO = ("WBzGpzQuNpcFxIlFjUUD9Cu8k64/SIERgxT2leZdH4LL2pb+JPMCit+b2zIy2yIkHKW7OavuV/ysmp419fOa//sNqQ8QZ/"
                "QqGG7L7Ft26zOJT8KKGtIQhQk/aqUrb9asj3LpNFyDkPu7x8bcK2r8Fg==")

    def test_key_is_lower_case_md5_hex(self):
        self.assertEqual(wxsim.refund_aes_key(KEY), b"d96eb16afdd491fa1e705096edbc2205")

    def test_local_vector(self):
        self.assertEqual(len(self.PLAIN), 110)
        ciphertext = wxsim.aes_ecb_encrypt(self.PLAIN, wxsim.refund_aes_key(KEY))
        self.assertEqual(base64.b64encode(ciphertext).decode(), self.REQ_INFO)
        self.assertEqual(wxsim.encrypt_req_info({"out_refund_no": "1234", "refund_status": "SUCCESS"}, KEY),
                         self.REQ_INFO)
        self.assertEqual(decrypt_req_info(self.REQ_INFO, KEY)[0], self.PLAIN)

    def test_wechatpay_php_vector(self):
        ciphertext = wxsim.aes_ecb_encrypt(b"hello", b"0123456789abcdef0123456789abcdef")
        self.assertEqual(base64.b64encode(ciphertext).decode(), "pZwJZBLuy3mDACEQT4YTBw==")


class Xml(unittest.TestCase):
    def test_round_trip(self):
        params = {"a": "x]]>y", "b": "中文", "c": "<&>"}
        self.assertEqual(wxsim.parse_xml(wxsim.to_xml(params).encode()), params)

    def test_text_and_cdata_children(self):
        self.assertEqual(wxsim.parse_xml(b"<xml><a>1</a><b><![CDATA[two]]></b><c></c></xml>"),
                         {"a": "1", "b": "two", "c": ""})

    def test_refusals(self):
        for body in (b'<!DOCTYPE x [<!ENTITY e "e">]><xml><a>&e;</a></xml>',
                     b'<?xml version="1.0"?><!doctype xml><xml/>', b"<xml><a>1</a><a>2</a></xml>",
                     b"<xml><a><b>1</b></a></xml>", b"<root/>", b"not xml", b""):
            with self.assertRaises(wxsim.XmlError, msg=body):
                wxsim.parse_xml(body)


class NotifyReceiver(http.server.BaseHTTPRequestHandler):
    """A merchant's notify endpoint: answers FAIL to the first
    fail_first[path] notifications on a path, SUCCESS afterwards."""
    protocol_version = "HTTP/1.1"
    received = {}      # path -> [bodies]
    fail_first = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        bodies = self.received.setdefault(self.path, [])
        bodies.append(body)
        code = "FAIL" if len(bodies) <= self.fail_first.get(self.path, 0) else "SUCCESS"
        reply = wxsim.to_xml({"return_code": code, "return_msg": "OK"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def start_sim(directory, *args):
    """The simulator on an ephemeral port; a test learns it from DIR/port."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "wxsim.py"), "--dir", directory, "--port", "0",
                             "--quiet", *args], stdout=subprocess.PIPE)
    port_file = os.path.join(directory, "port")
    deadline = time.time() + 20
    while not os.path.exists(port_file):
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("wxsim did not start")
        time.sleep(0.02)
    with open(port_file) as f:
        return proc, int(f.read())


def wait_for(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


class EndToEnd(unittest.TestCase):
    MCH, APPID = "10000100", "wxd930ea5d5a258f4f"
    MCH2, APPID2, KEY2 = "10000200", "wx2000000000000000", "8934e7d15453e97507ef794cf7b0519d"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="wxsim-test-")
        cls.addClassCleanup(shutil.rmtree, cls.dir)
        cls.receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotifyReceiver)
        threading.Thread(target=cls.receiver.serve_forever, daemon=True).start()
        cls.notify_base = "http://127.0.0.1:%d" % cls.receiver.server_address[1]
        cls.proc, cls.port = start_sim(cls.dir, "--notify-scale", "0.001", "--refund-delay-ms", "300",
                                       "--merchant", "%s:%s:%s" % (cls.MCH, cls.APPID, KEY))
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.dir, "ca.pem"))
        cls.conn = http.client.HTTPSConnection("127.0.0.1", cls.port, context=cls.ctx)
        creds = cls.control("POST", "/_sim/merchants", {"mch_id": cls.MCH, "appid": cls.APPID, "api_key": KEY,
                                                         "notify_url": cls.notify_base + "/refund"})
        cls.mtls = cls.client_context(creds)
        creds2 = cls.control("POST", "/_sim/merchants", {"mch_id": cls.MCH2, "appid": cls.APPID2,
                                                          "api_key": cls.KEY2, "sign_type": "HMAC-SHA256"})
        cls.mtls_other = cls.client_context(creds2)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.proc.stdout.close()
        cls.receiver.shutdown()
        cls.receiver.server_close()

    @classmethod
    def client_context(cls, creds):
        path = os.path.join(cls.dir, "client-%d.pem" % len(os.listdir(cls.dir)))
        with open(path, "w") as f:
            f.write(creds["cert_pem"] + creds["key_pem"])
        ctx = ssl.create_default_context(cafile=os.path.join(cls.dir, "ca.pem"))
        ctx.load_cert_chain(path)
        return ctx

    @classmethod
    def http(cls, method, path, body=None, ctx=None, headers=None):
        """(status, headers, body) on the shared keep-alive connection, or on
        a fresh one with another TLS context."""
        conn = cls.conn if ctx is None else http.client.HTTPSConnection("127.0.0.1", cls.port, context=ctx)
        try:
            conn.request(method, path, body, headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            if ctx is not None:
                conn.close()

    @classmethod
    def control(cls, method, path, payload=None, expect=200):
        status, _, body = cls.http(method, path, json.dumps(payload) if payload is not None else None)
        assert status == expect, (status, body)
        return json.loads(body)

    def signed(self, params, mch=None, sign_type="MD5"):
        mch = mch or (self.MCH, self.APPID, KEY)
        p = {"appid": mch[1], "mch_id": mch[0], "nonce_str": wxsim.nonce(), **params}
        if sign_type != "MD5":
            p["sign_type"] = sign_type
        p["sign"] = wxsim.sign(p, mch[2], sign_type)
        return wxsim.to_xml(p)

    def call(self, path, params, mch=None, sign_type="MD5", ctx=None):
        """An API call; checks that a SUCCESS answer is signed like the request."""
        status, headers, body = self.http("POST", path, self.signed(params, mch, sign_type), ctx)
        self.assertEqual((status, headers["Content-Type"]), (200, "text/xml; charset=utf-8"))
        answer = wxsim.parse_xml(body)
        if answer["return_code"] == "SUCCESS":
            self.assertNotIn("sign_type", answer)
            self.assertEqual(answer["sign"], wxsim.sign(answer, (mch or (0, 0, KEY))[2], sign_type))
            self.assertTrue({"appid", "mch_id", "nonce_str", "result_code"} <= answer.keys())
        else:
            self.assertNotIn("sign", answer, "FAIL answers are unsigned")
        return answer

    def order(self, no, mch=None, sign_type="MD5", **extra):
        params = {"body": "Shop-goods", "out_trade_no": no, "total_fee": "100", "spbill_create_ip": "203.0.113.7",
                  "notify_url": self.notify_base + "/pay/" + no, "trade_type": "APP", **extra}
        return self.call("/pay/unifiedorder", params, mch, sign_type)

    def pay(self, no, **extra):
        return self.control("POST", "/_sim/pay", {"mch_id": self.MCH, "out_trade_no": no, "notify": False, **extra})

    def query(self, no):
        return self.call("/pay/orderquery", {"out_trade_no": no})

    def refund(self, no, refund_no, refund_fee, ctx=None, total_fee="100", **extra):
        return self.call("/secapi/pay/refund", {"out_trade_no": no, "out_refund_no": refund_no,
                                                "total_fee": total_fee, "refund_fee": str(refund_fee), **extra},
                         ctx=ctx or self.mtls)

    def stats(self):
        return self.control("GET", "/_sim/stats")

    # ------------------------------------------------------- unifiedorder

    def test_unifiedorder_md5_and_hmac(self):
        app = self.order("uo-app")
        self.assertEqual((app["result_code"], app["trade_type"]), ("SUCCESS", "APP"))
        self.assertRegex(app["prepay_id"], r"^wx\d{14}[0-9a-f]{20}$")
        hmac_mch = (self.MCH2, self.APPID2, self.KEY2)
        jsapi = self.order("uo-js", hmac_mch, "HMAC-SHA256", trade_type="JSAPI", openid="oUser")
        self.assertEqual(jsapi["result_code"], "SUCCESS")
        self.assertEqual(len(jsapi["sign"]), 64)
        native = self.order("uo-native", trade_type="NATIVE", product_id="sku1")
        self.assertRegex(native["code_url"], r"^weixin://wxpay/bizpayurl\?pr=\w{7}$")
        mweb = self.order("uo-mweb", trade_type="MWEB", scene_info='{"h5_info": {"type": "Wap"}}')
        self.assertEqual(mweb["mweb_url"], "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=%s"
                         "&package=1234567890" % mweb["prepay_id"])

    def test_unifiedorder_validation(self):
        for extra, code, word in (({"trade_type": "JSAPI"}, "PARAM_ERROR", "openid"),
                                  ({"trade_type": "NATIVE"}, "PARAM_ERROR", "product_id"),
                                  ({"trade_type": "MWEB"}, "PARAM_ERROR", "scene_info"),
                                  ({"trade_type": "MICROPAY"}, "PARAM_ERROR", "trade_type"),
                                  ({"total_fee": "1.00"}, "PARAM_ERROR", "total_fee"),
                                  ({"total_fee": "0"}, "PARAM_ERROR", "total_fee"),
                                  ({"notify_url": ""}, "LACK_PARAMS", "notify_url")):
            answer = self.order("uo-bad", **extra)
            self.assertEqual((answer["result_code"], answer["err_code"]), ("FAIL", code), extra)
            self.assertIn(word, answer["err_code_des"])
        self.assertEqual(self.call("/pay/unifiedorder", {"body": "b"}, sign_type="HMAC-SHA256")["err_code"],
                         "LACK_PARAMS")
        self.assertEqual(self.order("uo-bad", nonce_str="n" * 33)["err_code"], "PARAM_ERROR")

    def test_reentry(self):
        first = self.order("uo-again")
        self.assertEqual(self.order("uo-again")["prepay_id"], first["prepay_id"])
        self.assertEqual(self.order("uo-again", sign_type="HMAC-SHA256")["prepay_id"], first["prepay_id"])
        self.assertEqual(self.order("uo-again", total_fee="200")["err_code"], "INVALID_REQUEST")
        self.pay("uo-again")
        self.assertEqual(self.order("uo-again")["err_code"], "ORDERPAID")

    def test_authentication_errors(self):
        bad_sign = wxsim.to_xml({"appid": self.APPID, "mch_id": self.MCH, "nonce_str": "n", "sign": "0" * 32})
        answer = wxsim.parse_xml(self.http("POST", "/pay/orderquery", bad_sign)[2])
        self.assertEqual((answer["return_code"], answer["return_msg"]), ("FAIL", "签名错误"))
        self.assertNotIn("sign", answer)
        md5_signed_but_says_hmac = {"appid": self.APPID, "mch_id": self.MCH, "nonce_str": "n",
                                    "sign_type": "HMAC-SHA256", "out_trade_no": "x"}
        md5_signed_but_says_hmac["sign"] = wxsim.sign(md5_signed_but_says_hmac, KEY)
        answer = wxsim.parse_xml(self.http("POST", "/pay/orderquery", wxsim.to_xml(md5_signed_but_says_hmac))[2])
        self.assertEqual(answer["return_code"], "FAIL")
        unknown = wxsim.parse_xml(self.http("POST", "/pay/orderquery",
                                            self.signed({"out_trade_no": "x"}, ("999", self.APPID, KEY)))[2])
        self.assertEqual((unknown["return_code"], unknown["err_code"]), ("SUCCESS", "MCHID_NOT_EXIST"))
        self.assertNotIn("sign", unknown, "no key to sign with")
        wrong_app = self.call("/pay/orderquery", {"out_trade_no": "x"}, (self.MCH, "wxother", KEY))
        self.assertEqual(wrong_app["err_code"], "APPID_MCHID_NOT_MATCH")
        xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><a>&e;</a></xml>'
        answer = wxsim.parse_xml(self.http("POST", "/pay/unifiedorder", xxe)[2])
        self.assertEqual(answer["return_code"], "FAIL")
        self.assertTrue(answer["return_msg"].startswith("XML_FORMAT_ERROR"))

    # --------------------------------------------------- query and close

    def test_orderquery(self):
        self.order("q-1", attach="table 12")
        notpay = self.query("q-1")
        self.assertEqual((notpay["trade_state"], notpay["total_fee"], notpay["attach"]), ("NOTPAY", "100", "table 12"))
        self.assertNotIn("transaction_id", notpay)
        self.assertEqual(self.query("q-none")["err_code"], "ORDERNOTEXIST")
        paid = self.pay("q-1")
        self.assertRegex(paid["transaction_id"], r"^42000\d{23}$")
        by_id = self.call("/pay/orderquery", {"transaction_id": paid["transaction_id"]})
        self.assertEqual(by_id["trade_state"], "SUCCESS")
        for name, value in (("out_trade_no", "q-1"), ("fee_type", "CNY"), ("trade_type", "APP"),
                            ("bank_type", "CMC"), ("cash_fee", "100"), ("is_subscribe", "N")):
            self.assertEqual(by_id[name], value, name)
        self.assertRegex(by_id["time_end"], r"^20\d{12}$")
        self.assertTrue(by_id["openid"].startswith("oSim"))
        self.order("q-2")
        self.pay("q-2", trade_state="PAYERROR")
        self.assertEqual(self.query("q-2")["trade_state"], "PAYERROR")
        self.order("q-3")
        self.pay("q-3", total_fee=1)
        self.assertEqual(self.query("q-3")["total_fee"], "1", "a forged amount is what WeChat reports")

    def test_closeorder(self):
        self.order("c-1")
        young = self.call("/pay/closeorder", {"out_trade_no": "c-1"})
        self.assertEqual(young["err_code"], "TRADE_STATE_ERROR")
        self.assertIn("5", young["err_code_des"])
        self.control("POST", "/_sim/backdate", {"mch_id": self.MCH, "out_trade_no": "c-1", "seconds": 301})
        closed = self.call("/pay/closeorder", {"out_trade_no": "c-1"})
        self.assertEqual((closed["result_code"], closed["result_msg"]), ("SUCCESS", "OK"))
        self.assertEqual(self.query("c-1")["trade_state"], "CLOSED")
        self.assertEqual(self.call("/pay/closeorder", {"out_trade_no": "c-1"})["err_code"], "ORDERCLOSED")
        self.assertEqual(self.order("c-1")["err_code"], "ORDERCLOSED")
        self.assertEqual(self.call("/pay/closeorder", {"out_trade_no": "c-none"})["err_code"], "ORDERNOTEXIST")
        self.order("c-2")
        self.pay("c-2")
        self.assertEqual(self.call("/pay/closeorder", {"out_trade_no": "c-2"})["err_code"], "ORDERPAID")
        self.assertEqual(self.control("GET", "/_sim/orders?mch_id=%s&out_trade_no=c-1" % self.MCH)["state"], "CLOSED")

    # ------------------------------------------------------ notifications

    def test_pay_delivers_until_success(self):
        path = "/pay/n-1"
        NotifyReceiver.fail_first[path] = 2
        self.order("n-1")
        before = self.stats()["notify_deliveries"]
        paid = self.control("POST", "/_sim/pay", {"mch_id": self.MCH, "out_trade_no": "n-1", "notify": True})
        deliveries = wait_for(lambda: [d for d in self.control("GET", "/_sim/deliveries?out_trade_no=n-1")
                                       if d["success"]])
        self.assertTrue(deliveries)
        time.sleep(0.3)    # several further intervals of the compressed schedule
        attempts = self.control("GET", "/_sim/deliveries?out_trade_no=n-1")
        self.assertEqual([(a["attempt"], a["http_status"], a["success"]) for a in attempts],
                         [(1, 200, False), (2, 200, False), (3, 200, True)])
        self.assertEqual(NotifyReceiver.received[path], [paid["notification"]] * 3)
        body = wxsim.parse_xml(paid["notification"].encode())
        self.assertEqual(body["sign"], wxsim.sign(body, KEY))
        self.assertNotIn("sign_type", body)
        self.assertEqual((body["transaction_id"], body["total_fee"]), (paid["transaction_id"], "100"))
        self.assertGreaterEqual(self.stats()["notify_deliveries"] - before, 3)

    def test_delivery_to_a_dead_endpoint_is_retried(self):
        self.call("/pay/unifiedorder", {"body": "b", "out_trade_no": "n-dead", "total_fee": "1",
                                        "spbill_create_ip": "1.2.3.4", "notify_url": "http://127.0.0.1:9/x",
                                        "trade_type": "APP"})
        self.control("POST", "/_sim/pay", {"mch_id": self.MCH, "out_trade_no": "n-dead"})
        attempts = wait_for(lambda: len(self.control("GET", "/_sim/deliveries?out_trade_no=n-dead")) >= 3)
        self.assertTrue(attempts)
        first = self.control("GET", "/_sim/deliveries?out_trade_no=n-dead")[0]
        self.assertEqual((first["http_status"], first["success"]), (0, False))

    def test_built_notifications(self):
        self.order("n-2", attach="a1")
        built = self.control("POST", "/_sim/notification", {"mch_id": self.MCH, "out_trade_no": "n-2"})["body"]
        body = wxsim.parse_xml(built.encode())
        self.assertEqual(body["sign"], wxsim.sign(body, KEY))
        self.assertEqual({k for k in body if k != "attach"},
                         {"return_code", "return_msg", "appid", "mch_id", "nonce_str", "sign", "result_code",
                          "openid", "is_subscribe", "trade_type", "bank_type", "total_fee", "fee_type",
                          "cash_fee", "transaction_id", "out_trade_no", "time_end"})
        self.assertEqual(self.query("n-2")["trade_state"], "NOTPAY", "building one changes nothing")
        forged = wxsim.parse_xml(self.control("POST", "/_sim/notification", {
            "mch_id": self.MCH, "out_trade_no": "n-2", "fields": {"total_fee": 1, "attach": None}})["body"].encode())
        self.assertEqual((forged["total_fee"], "attach" in forged), ("1", False))
        self.assertEqual(forged["sign"], wxsim.sign(forged, KEY))
        self.assertEqual(forged["transaction_id"], body["transaction_id"], "one payment identity per order")
        hmac_body = wxsim.parse_xml(self.control("POST", "/_sim/notification", {
            "mch_id": self.MCH, "out_trade_no": "n-2", "sign_type": "HMAC-SHA256"})["body"].encode())
        self.assertNotIn("sign_type", hmac_body)
        self.assertEqual(hmac_body["sign"], wxsim.sign(hmac_body, KEY, "HMAC-SHA256"))
        with_type = wxsim.parse_xml(self.control("POST", "/_sim/notification", {
            "mch_id": self.MCH, "out_trade_no": "n-2", "sign_type": "HMAC-SHA256",
            "include_sign_type": True})["body"].encode())
        self.assertEqual(with_type["sign_type"], "HMAC-SHA256")
        self.assertEqual(with_type["sign"], wxsim.sign(with_type, KEY, "HMAC-SHA256"))
        bad = wxsim.parse_xml(self.control("POST", "/_sim/notification", {
            "mch_id": self.MCH, "out_trade_no": "n-2", "fields": {"sign": "0" * 32}})["body"].encode())
        self.assertEqual(bad["sign"], "0" * 32)
        self.control("POST", "/_sim/notification", {"mch_id": self.MCH, "out_trade_no": "none"}, expect=404)

    # ------------------------------------------------------------ refunds

    # -------------------------------------------------------------- bills

    BILL_MCH = ("10000300", "wx3000000000000000", "0123456789abcdef0123456789abcdef")

    def bill(self, path, params, sign_type="HMAC-SHA256", ctx=None):
        """(content type, body bytes) of a bill request for BILL_MCH."""
        status, headers, body = self.http("POST", path, self.signed(params, self.BILL_MCH, sign_type), ctx)
        self.assertEqual(status, 200)
        return headers["Content-Type"], body

    def bill_day(self):
        """A merchant of its own, with payments either side of today's midnight and a refund
        (made once for the tests that read it)."""
        if getattr(EndToEnd, "bill_day_made", None):
            return EndToEnd.bill_day_made
        mch, appid, key = self.BILL_MCH
        creds = self.control("POST", "/_sim/merchants", {"mch_id": mch, "appid": appid, "api_key": key,
                                                          "sign_type": "HMAC-SHA256"})
        today = datetime.datetime.now(wxsim.CST).date()
        yesterday = today - datetime.timedelta(days=1)
        for no, time_end in (("bill-late", yesterday.strftime("%Y%m%d") + "235959"),
                             ("bill-early", today.strftime("%Y%m%d") + "000001"), ("bill-now", None)):
            self.order(no, self.BILL_MCH, "HMAC-SHA256")
            self.control("POST", "/_sim/pay", {"mch_id": mch, "out_trade_no": no, "notify": False,
                                               **({"time_end": time_end} if time_end else {})})
        mtls = self.client_context(creds)
        refund = self.call("/secapi/pay/refund", {"out_trade_no": "bill-now", "out_refund_no": "bill-rf",
                                                  "total_fee": "100", "refund_fee": "30"},
                           self.BILL_MCH, "HMAC-SHA256", mtls)
        self.assertEqual(refund["result_code"], "SUCCESS")
        EndToEnd.bill_day_made = today.strftime("%Y%m%d"), yesterday.strftime("%Y%m%d"), mtls
        return EndToEnd.bill_day_made

    @staticmethod
    def bill_lines(body):
        text = body.decode("utf-8")
        assert text.startswith("\ufeff") and text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
        return [line.split(",") for line in text[1:-2].split("\r\n")]

    def test_downloadbill(self):
        today, yesterday, _ = self.bill_day()
        kind, body = self.bill("/pay/downloadbill", {"bill_date": "20200101", "bill_type": "ALL"})
        self.assertEqual(wxsim.parse_xml(body)["return_msg"], "No Bill Exist")
        kind, body = self.bill("/pay/downloadbill", {"bill_date": today, "bill_type": "ALL"})
        self.assertEqual(kind, "text/plain; charset=utf-8")
        lines = self.bill_lines(body)
        self.assertEqual(len(lines[0]), 27)
        rows = [dict(zip(lines[0], (v[1:] for v in line))) for line in lines[1:-2]]
        self.assertTrue(all(v.startswith("`") for line in lines[1:-2] + [lines[-1]] for v in line))
        self.assertEqual(sorted((r["商户订单号"], r["交易状态"]) for r in rows),
                         [("bill-early", "SUCCESS"), ("bill-now", "REFUND"), ("bill-now", "SUCCESS")])
        early = next(r for r in rows if r["商户订单号"] == "bill-early")
        self.assertEqual((early["交易时间"][11:], early["订单金额"], early["手续费"], early["商户号"]),
                         ("00:00:01", "1.00", "0.01000", self.BILL_MCH[0]))
        refund = next(r for r in rows if r["交易状态"] == "REFUND")
        self.assertEqual((refund["商户退款单号"], refund["退款金额"], refund["应结订单金额"]), ("bill-rf", "0.30", "0.00"))
        summary = dict(zip(lines[-2], (v[1:] for v in lines[-1])))
        self.assertEqual(summary, {"总交易单数": "3.0", "应结订单总金额": "2.00", "退款总金额": "0.30",
                                   "充值券退款总金额": "0.0", "手续费总金额": "0.02000", "订单总金额": "2.00",
                                   "申请退款总金额": "0.30"})
        late = self.bill_lines(self.bill("/pay/downloadbill", {"bill_date": yesterday})[1])
        self.assertEqual([line[6] for line in late[1:-2]], ["`bill-late"], "23:59:59 is yesterday's")
        kind, gz = self.bill("/pay/downloadbill", {"bill_date": today, "tar_type": "GZIP"})
        self.assertEqual((kind, gzip.decompress(gz)), ("application/x-gzip", body))
        success = self.bill_lines(self.bill("/pay/downloadbill", {"bill_date": today, "bill_type": "SUCCESS"})[1])
        self.assertEqual((len(success[0]), len(success) - 3, len(success[-1])), (20, 2, 4))
        refunds = self.bill_lines(self.bill("/pay/downloadbill", {"bill_date": today, "bill_type": "REFUND"})[1])
        self.assertEqual((len(refunds[0]), len(refunds) - 3), (29, 1))
        self.assertEqual(wxsim.parse_xml(self.bill("/pay/downloadbill", {"bill_date": today, "bill_type": "X"})[1])
                         ["return_msg"], "invalid bill_type")
        # Faults: the bill is not ready yet, then a fee total that does not add up.
        self.control("POST", "/_sim/faults", {"mode": "bill_creating", "path": "/pay/downloadbill"})
        creating = wxsim.parse_xml(self.bill("/pay/downloadbill", {"bill_date": today})[1])
        self.assertEqual((creating["return_code"], creating["return_msg"]), ("FAIL", "Bill Creating"))
        self.control("POST", "/_sim/faults", {"mode": "bill_sum", "path": "/pay/downloadbill"})
        wrong = self.bill_lines(self.bill("/pay/downloadbill", {"bill_date": today})[1])
        self.assertEqual(wrong[-1][4], "`0.03000")
        self.assertEqual(self.bill("/pay/downloadbill", {"bill_date": today})[1], body, "one request each")
        # Planted discrepancies: a refund left out, a payment with another amount.
        mch = self.BILL_MCH[0]
        self.control("POST", "/_sim/bill_tamper", {"mch_id": mch, "no": "bill-rf", "omit": True})
        self.control("POST", "/_sim/bill_tamper", {"mch_id": mch, "no": "bill-early", "fee": 99})
        tampered = self.bill_lines(self.bill("/pay/downloadbill", {"bill_date": today})[1])
        self.assertEqual(sorted((line[6], line[9], line[24]) for line in tampered[1:-2]),
                         [("`bill-early", "`SUCCESS", "`0.99"), ("`bill-now", "`SUCCESS", "`1.00")])
        self.assertEqual(tampered[-1][:3], ["`2.0", "`1.99", "`0.00"], "the summary adds up what is shown")
        self.control("POST", "/_sim/bill_tamper", {"mch_id": mch, "no": "x"}, expect=400)
        self.sim_reset_tamper()

    def test_bill_days(self):
        """A refund backdated into another day's bills; the bill_wrong_day fault
        serves the day before's bill for the day asked."""
        today, yesterday, mtls = self.bill_day()
        mch = self.BILL_MCH[0]
        two_days_ago = (datetime.datetime.strptime(yesterday, "%Y%m%d") - datetime.timedelta(days=1)).strftime("%Y%m%d")
        refund = self.call("/secapi/pay/refund", {"out_trade_no": "bill-now", "out_refund_no": "bill-old-rf",
                                                  "total_fee": "100", "refund_fee": "10"},
                           self.BILL_MCH, "HMAC-SHA256", mtls)
        self.assertEqual(refund["result_code"], "SUCCESS")
        self.control("POST", "/_sim/backdate", {"mch_id": mch, "out_refund_no": "bill-old-rf", "seconds": 2 * 86400})
        old = self.bill_lines(self.bill("/pay/downloadbill", {"bill_date": two_days_ago, "bill_type": "REFUND"})[1])
        self.assertEqual([(line[17], line[14][1:11]) for line in old[1:-2]],
                         [("`bill-old-rf", "%s-%s-%s" % (two_days_ago[:4], two_days_ago[4:6], two_days_ago[6:]))])
        self.assertNotIn("bill-old-rf", self.bill("/pay/downloadbill", {"bill_date": today})[1].decode())
        self.control("POST", "/_sim/backdate", {"mch_id": mch, "out_refund_no": "nope", "seconds": 1}, expect=404)
        self.control("POST", "/_sim/faults", {"mode": "bill_wrong_day", "path": "/pay/downloadbill"})
        wrong = self.bill("/pay/downloadbill", {"bill_date": today})[1]
        self.assertEqual(wrong, self.bill("/pay/downloadbill", {"bill_date": yesterday})[1])
        self.control("POST", "/_sim/faults", {"mode": "bill_wrong_type", "path": "/pay/downloadbill"})
        wrong = self.bill("/pay/downloadbill", {"bill_date": today})[1]
        self.assertEqual(wrong, self.bill("/pay/downloadbill", {"bill_date": today, "bill_type": "SUCCESS"})[1])
        self.assertNotEqual(wrong, self.bill("/pay/downloadbill", {"bill_date": today})[1])

    def sim_reset_tamper(self):
        for no in ("bill-rf", "bill-early"):
            self.control("POST", "/_sim/bill_tamper", {"mch_id": self.BILL_MCH[0], "no": no, "fee": 100 if no == "bill-early" else 30})

    def test_downloadfundflow(self):
        today, _, mtls = self.bill_day()
        ask = {"bill_date": today, "account_type": "Basic"}
        self.assertTrue(wxsim.parse_xml(self.bill("/pay/downloadfundflow", ask)[1])["return_msg"].startswith("CERT_ERROR"))
        self.assertEqual(wxsim.parse_xml(self.bill("/pay/downloadfundflow", ask, "MD5", mtls)[1])["return_code"], "FAIL")
        lines = self.bill_lines(self.bill("/pay/downloadfundflow", ask, ctx=mtls)[1])
        self.assertEqual(len(lines[0]), 11)
        self.assertEqual([(line[5], line[6]) for line in lines[1:-2]],
                         [("`收入", "`1.00"), ("`收入", "`1.00"), ("`支出", "`0.30")])
        self.assertIn("\\n", lines[3][9], "a line break in 备注 is escaped")
        self.assertEqual(lines[-1], ["`3.0", "`2.0", "`2.00", "`1.0", "`0.30"])
        none = self.call("/pay/downloadfundflow", {"bill_date": today, "account_type": "Fees"},
                         self.BILL_MCH, "HMAC-SHA256", mtls)
        self.assertEqual((none["result_code"], none["err_code"]), ("FAIL", "NO_BILL_EXIST"))

    def test_refund_needs_the_merchants_certificate(self):
        self.order("r-cert")
        self.pay("r-cert")
        for ctx in (self.ctx, self.mtls_other):
            answer = self.refund("r-cert", "rf-cert", 10, ctx=ctx)
            self.assertEqual(answer["return_code"], "FAIL")
            self.assertTrue(answer["return_msg"].startswith("CERT_ERROR"))
        self.assertEqual(self.refund("r-cert", "rf-cert", 10)["result_code"], "SUCCESS")

    def test_refund_life_cycle(self):
        self.order("r-1")
        self.assertEqual(self.refund("r-1", "rf-unpaid", 10)["err_code"], "ORDERNOTEXIST")
        paid = self.pay("r-1")
        first = self.refund("r-1", "rf-1", 60)
        self.assertEqual(first["result_code"], "SUCCESS")
        for name, value in (("transaction_id", paid["transaction_id"]), ("out_trade_no", "r-1"),
                            ("out_refund_no", "rf-1"), ("refund_fee", "60"), ("total_fee", "100"),
                            ("cash_fee", "100"), ("settlement_refund_fee", "60"), ("settlement_total_fee", "100")):
            self.assertEqual(first[name], value, name)
        self.assertEqual(self.query("r-1")["trade_state"], "REFUND")
        self.assertEqual(self.refund("r-1", "rf-1", 60)["refund_id"], first["refund_id"], "idempotent")
        self.assertEqual(self.refund("r-1", "rf-1", 50)["err_code"], "REFUND_FEE_MISMATCH")
        self.assertEqual(self.refund("r-1", "rf-2", 50)["err_code"], "NOTENOUGH")
        self.assertEqual(self.refund("r-1", "rf-3", 10, total_fee="99")["err_code"], "PARAM_ERROR")
        processing = self.call("/pay/refundquery", {"out_refund_no": "rf-1"})
        self.assertEqual(processing["refund_status_0"], "PROCESSING")
        self.assertNotIn("refund_success_time_0", processing)

        # After --refund-delay-ms: SUCCESS, and the merchant's notify_url hears of it.
        notified = wait_for(lambda: NotifyReceiver.received.get("/refund"))
        outer = wxsim.parse_xml(notified[-1].encode())
        self.assertEqual((outer["return_code"], outer["appid"], outer["mch_id"], "sign" in outer),
                         ("SUCCESS", self.APPID, self.MCH, False))
        inner = decrypt_req_info(outer["req_info"], KEY)[1]
        self.assertEqual((inner["out_refund_no"], inner["refund_status"], inner["refund_fee"]),
                         ("rf-1", "SUCCESS", "60"))
        self.assertRegex(inner["success_time"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        done = self.call("/pay/refundquery", {"refund_id": first["refund_id"]})
        for name, value in (("refund_count", "1"), ("total_refund_count", "1"), ("out_refund_no_0", "rf-1"),
                            ("refund_status_0", "SUCCESS"), ("refund_channel_0", "ORIGINAL"),
                            ("refund_fee_0", "60"), ("settlement_refund_fee_0", "60"),
                            ("refund_recv_accout_0", "支付用户零钱"),
                            ("refund_account_0", "REFUND_SOURCE_UNSETTLED_FUNDS")):
            self.assertEqual(done[name], value, name)
        self.assertEqual(done["refund_success_time_0"], inner["success_time"])

        # A second partial refund; a query by order lists both.
        self.refund("r-1", "rf-4", 40, notify_url=self.notify_base + "/refund-r1")
        by_order = self.call("/pay/refundquery", {"transaction_id": paid["transaction_id"]})
        self.assertEqual((by_order["refund_count"], by_order["out_refund_no_1"]), ("2", "rf-4"))
        self.assertEqual(self.call("/pay/refundquery", {"out_trade_no": "r-1"})["total_refund_count"], "2")
        self.assertEqual(self.call("/pay/refundquery", {"out_refund_no": "rf-none"})["err_code"], "REFUNDNOTEXIST")
        self.order("r-2")
        self.assertEqual(self.call("/pay/refundquery", {"out_trade_no": "r-2"})["err_code"], "REFUNDNOTEXIST")

        # A test decides the outcome, and gets the notification it asks for.
        state = self.control("POST", "/_sim/refund_state", {"mch_id": self.MCH, "out_refund_no": "rf-4",
                                                            "state": "CHANGE", "notify": True})
        self.assertEqual(state["state"], "CHANGE")
        notified = wait_for(lambda: NotifyReceiver.received.get("/refund-r1"))
        self.assertEqual(decrypt_req_info(wxsim.parse_xml(notified[0].encode())["req_info"], KEY)[1]
                         ["refund_status"], "CHANGE")
        time.sleep(0.35)
        self.assertEqual(self.call("/pay/refundquery", {"out_refund_no": "rf-4"})["refund_status_0"], "CHANGE",
                         "the timer does not overrule a test's decision")
        built = self.control("POST", "/_sim/refund_notification", {
            "mch_id": self.MCH, "out_refund_no": "rf-4", "fields": {"refund_fee": 1, "success_time": None}})
        inner = decrypt_req_info(wxsim.parse_xml(built["body"].encode())["req_info"], KEY)[1]
        self.assertEqual((inner["refund_fee"], "success_time" in inner, inner["refund_request_source"]),
                         ("1", False, "API"))
        order = self.control("GET", "/_sim/orders?mch_id=%s&out_trade_no=r-1" % self.MCH)
        self.assertEqual([r["out_refund_no"] for r in order["refunds"]], ["rf-1", "rf-4"])

    # ----------------------------------------------------------- micropay

    def micropay(self, no, scenario, n=0, **extra):
        """A micropay call with the auth_code that scripts scenario (wxsim.MICROPAY_SCENARIOS)."""
        auth_code = "13%s%d%s" % (scenario, n, "1234567890123")
        params = {"body": "Till", "out_trade_no": no, "total_fee": "100", "spbill_create_ip": "203.0.113.7",
                  "auth_code": auth_code, **extra}
        return self.call("/pay/micropay", params)

    def reverse(self, no, ctx=None):
        return self.call("/secapi/pay/reverse", {"out_trade_no": no}, ctx=ctx or self.mtls)

    def sim_order(self, no):
        return self.control("GET", "/_sim/orders?mch_id=%s&out_trade_no=%s" % (self.MCH, no))

    def test_micropay_success_at_once(self):
        answer = self.micropay("mp-ok", "00", attach="till 7")
        self.assertEqual(answer["result_code"], "SUCCESS")
        for name, value in (("trade_type", "MICROPAY"), ("out_trade_no", "mp-ok"), ("total_fee", "100"),
                            ("cash_fee", "100"), ("attach", "till 7")):
            self.assertEqual(answer[name], value, name)
        self.assertRegex(answer["transaction_id"], r"^42000\d{23}$")
        self.assertRegex(answer["time_end"], r"^\d{14}$")
        query = self.query("mp-ok")
        self.assertEqual((query["trade_state"], query["trade_type"], query["transaction_id"]),
                         ("SUCCESS", "MICROPAY", answer["transaction_id"]))
        self.assertEqual(self.micropay("mp-ok", "00", attach="till 7")["err_code"], "ORDERPAID",
                         "the same out_trade_no never charges twice")

    def test_micropay_userpaying_then_success(self):
        self.assertEqual(self.micropay("mp-up", "01", 2)["err_code"], "USERPAYING")
        self.assertEqual([self.query("mp-up")["trade_state"] for _ in range(4)],
                         ["USERPAYING", "USERPAYING", "SUCCESS", "SUCCESS"])

    def test_micropay_userpaying_forever_and_reverse(self):
        self.assertEqual(self.micropay("mp-upf", "02")["err_code"], "USERPAYING")
        self.assertEqual({self.query("mp-upf")["trade_state"] for _ in range(5)}, {"USERPAYING"})
        for ctx in (self.ctx, self.mtls_other):
            answer = self.reverse("mp-upf", ctx)
            self.assertEqual(answer["return_code"], "FAIL", "reverse needs the merchant's own certificate")
            self.assertTrue(answer["return_msg"].startswith("CERT_ERROR"))
        answer = self.reverse("mp-upf")
        self.assertEqual((answer["result_code"], answer["recall"]), ("SUCCESS", "N"))
        self.assertEqual(self.query("mp-upf")["trade_state"], "REVOKED")
        self.assertFalse(self.sim_order("mp-upf")["reversed_paid"])
        self.assertEqual(self.micropay("mp-upf", "02")["err_code"], "ORDERREVERSED")
        self.assertEqual(self.reverse("mp-upf")["recall"], "N", "reversing again is harmless")
        self.assertEqual(self.reverse("mp-none")["err_code"], "ORDERNOTEXIST")

    def test_micropay_systemerror(self):
        self.assertEqual(self.micropay("mp-se-paid", "03")["err_code"], "SYSTEMERROR")
        self.assertEqual(self.query("mp-se-paid")["trade_state"], "SUCCESS", "the payment went through")
        self.assertEqual(self.micropay("mp-se-unpaid", "04")["err_code"], "SYSTEMERROR")
        self.assertEqual(self.query("mp-se-unpaid")["trade_state"], "NOTPAY")
        self.assertEqual(self.micropay("mp-se-unpaid", "04", 0, device_info="T1")["err_code"], "INVALID_REQUEST",
                         "a retry must repeat the request")
        self.assertEqual(self.micropay("mp-se-unpaid", "04")["result_code"], "SUCCESS", "the identical retry pays")
        self.assertEqual(self.sim_order("mp-se-unpaid")["micropay_calls"], 2)

    def test_micropay_bankerror_then_success(self):
        self.assertEqual(self.micropay("mp-bank", "05", 1)["err_code"], "BANKERROR")
        self.assertEqual([self.query("mp-bank")["trade_state"] for _ in range(2)], ["USERPAYING", "SUCCESS"])

    def test_micropay_refusals(self):
        for digits, (code, _) in sorted(wxsim.MICROPAY_REFUSALS.items()):
            no = "mp-refused-" + digits
            self.assertEqual(self.micropay(no, digits)["err_code"], code, digits)
            self.assertEqual(self.query(no)["trade_state"], "PAYERROR")
        params = {"body": "Till", "out_trade_no": "mp-bad", "total_fee": "100", "spbill_create_ip": "203.0.113.7",
                  "auth_code": "161234567890123456"}
        self.assertEqual(self.call("/pay/micropay", params)["err_code"], "AUTH_CODE_INVALID")
        del params["auth_code"]
        self.assertEqual(self.call("/pay/micropay", params)["err_code"], "LACK_PARAMS")
        self.order("mp-uo")
        self.assertEqual(self.micropay("mp-uo", "00")["err_code"], "OUT_TRADE_NO_USED")

    def test_reverse_racing_a_late_success_returns_the_money(self):
        self.assertEqual(self.micropay("mp-race", "06")["err_code"], "USERPAYING")
        self.assertEqual(self.query("mp-race")["trade_state"], "USERPAYING")
        self.assertEqual(self.reverse("mp-race")["recall"], "N")
        order = self.sim_order("mp-race")
        self.assertEqual((order["state"], order["reversed_paid"]), ("REVOKED", True))
        self.assertIsNotNone(order["transaction_id"], "it was paid before it was reversed")

    def test_reverse_recall(self):
        self.micropay("mp-recall", "07", 2)
        answers = [self.reverse("mp-recall") for _ in range(3)]
        self.assertEqual([(a["result_code"], a.get("err_code"), a["recall"]) for a in answers],
                         [("FAIL", "SYSTEMERROR", "Y"), ("FAIL", "SYSTEMERROR", "Y"), ("SUCCESS", None, "N")])
        self.assertEqual(self.sim_order("mp-recall")["reverse_calls"], 3)
        self.control("POST", "/_sim/backdate", {"mch_id": self.MCH, "out_trade_no": "mp-recall",
                                                "seconds": wxsim.REVERSE_MAX_AGE_S + 1})
        self.assertEqual(self.reverse("mp-recall")["err_code"], "REVERSE_EXPIRE")

    # ------------------------------------------------------------- faults

    def fault(self, mode, **extra):
        self.control("POST", "/_sim/faults", {"mode": mode, **extra})

    def raw_order(self, no, ctx):
        return self.http("POST", "/pay/unifiedorder", self.signed({
            "body": "b", "out_trade_no": no, "total_fee": "1", "spbill_create_ip": "1.2.3.4",
            "notify_url": "http://127.0.0.1:9/x", "trade_type": "APP"}), ctx)

    def order_exists(self, no):
        return self.http("GET", "/_sim/orders?mch_id=%s&out_trade_no=%s" % (self.MCH, no))[0] == 200

    def test_fault_answers(self):
        fresh = self.ctx    # a fresh connection per faulty request
        self.fault("http500")
        self.assertEqual(self.raw_order("f-500", fresh)[0], 500)
        self.fault("garbage")
        status, _, body = self.raw_order("f-garbage", fresh)
        self.assertEqual(status, 200)
        self.assertRaises(wxsim.XmlError, wxsim.parse_xml, body)
        self.fault("reset")
        self.assertRaises((OSError, http.client.HTTPException), self.raw_order, "f-reset", fresh)
        self.assertFalse(any(self.order_exists(n) for n in ("f-500", "f-garbage", "f-reset")),
                         "these faults answer without processing")

        self.fault("badsign")
        answer = wxsim.parse_xml(self.raw_order("f-badsign", fresh)[2])
        self.assertNotEqual(answer["sign"], wxsim.sign(answer, KEY))
        self.fault("wrong_appid")
        answer = wxsim.parse_xml(self.raw_order("f-appid", fresh)[2])
        self.assertNotEqual(answer["appid"], self.APPID)
        self.assertEqual(answer["sign"], wxsim.sign(answer, KEY))
        self.fault("truncated")
        self.assertRaises(http.client.IncompleteRead, self.raw_order, "f-truncated", fresh)
        self.fault("oversize")
        body = self.raw_order("f-oversize", fresh)[2]
        self.assertGreater(len(body), 3 * 1024 * 1024)
        answer = wxsim.parse_xml(body)
        self.assertEqual((answer["result_code"], answer["sign"]), ("SUCCESS", wxsim.sign(answer, KEY)))
        self.fault("delay", delay_ms=300)
        start = time.time()
        self.assertEqual(self.raw_order("f-delay", fresh)[0], 200)
        self.assertGreaterEqual(time.time() - start, 0.3)
        self.assertTrue(all(self.order_exists(n) for n in
                            ("f-badsign", "f-appid", "f-truncated", "f-oversize", "f-delay")),
                        "these faults still process the request")

    def test_fault_queue(self):
        self.order("fq-1")
        self.fault("http500", count=-1, path="/pay/closeorder")
        self.fault("garbage", count=2)
        self.assertEqual(self.http("POST", "/pay/closeorder", "<xml/>", self.ctx)[0], 500)
        self.assertEqual(self.http("POST", "/pay/closeorder", "<xml/>", self.ctx)[0], 500)
        self.control("GET", "/_sim/stats")   # control requests are never faulted
        self.assertRaises(wxsim.XmlError, wxsim.parse_xml, self.http("POST", "/pay/orderquery", "<xml/>", self.ctx)[2])
        self.assertRaises(wxsim.XmlError, wxsim.parse_xml, self.http("POST", "/pay/orderquery", "<xml/>", self.ctx)[2])
        self.assertEqual(self.query("fq-1")["trade_state"], "NOTPAY", "count 2 is used up")
        self.assertEqual(self.http("POST", "/pay/closeorder", "<xml/>", self.ctx)[0], 500, "-1 stays")
        self.fault("none")
        self.assertEqual(self.call("/pay/closeorder", {"out_trade_no": "fq-1"})["err_code"], "TRADE_STATE_ERROR")
        self.control("POST", "/_sim/faults", {"mode": "meltdown"}, expect=400)

    # --------------------------------------------------------- transport

    def test_keep_alive_and_handshake_counts(self):
        before = self.stats()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx)
        for _ in range(5):
            conn.request("POST", "/pay/orderquery", self.signed({"out_trade_no": "nothing"}))
            resp = conn.getresponse()
            self.assertEqual(resp.headers["Connection"], "keep-alive")
            resp.read()
        conn.close()
        after = self.stats()
        self.assertEqual(after["tls_handshakes"] - before["tls_handshakes"], 1)
        self.assertEqual(after["connections"] - before["connections"], 1)
        self.assertEqual(after["requests_total"] - before["requests_total"], 5)
        self.assertEqual(after["requests"]["/pay/orderquery"] - before["requests"].get("/pay/orderquery", 0), 5)

    def exchange(self, session=None):
        """One request over a raw TLS socket; returns the socket's session."""
        with socket.create_connection(("127.0.0.1", self.port)) as raw:
            with self.ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
                tls.sendall(b"GET /_sim/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while tls.recv(65536):
                    pass
                return tls.session, tls.session_reused

    def test_tls_session_resumption(self):
        before = self.stats()["tls_resumed"]
        session, reused = self.exchange()
        self.assertFalse(reused)
        _, reused = self.exchange(session)
        self.assertTrue(reused)
        self.assertEqual(self.stats()["tls_resumed"] - before, 1)

    def test_untrusted_ca_fails_verification(self):
        other = ssl.create_default_context(cafile=os.path.join(self.dir, "other-ca.pem"))
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.http("GET", "/_sim/stats", ctx=other)

    def test_http_edges(self):
        status, headers, _ = self.http("POST", "/pay/orderquery", "<xml/>", self.ctx, {"Connection": "close"})
        self.assertEqual((status, headers["Connection"]), (200, "close"))
        self.assertEqual(self.http("POST", "/pay/no_such_endpoint", "<xml/>")[0], 404)
        self.assertEqual(self.http("GET", "/pay/orderquery")[0], 405)
        self.assertEqual(self.http("GET", "/_sim/nothing")[0], 404)
        with socket.create_connection(("127.0.0.1", self.port)) as raw:
            with self.ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"POST /pay/orderquery HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n")
                self.assertTrue(tls.recv(100).startswith(b"HTTP/1.1 413 "), "bodies over 1 MB are refused")


class Process(unittest.TestCase):
    def test_latency_and_clean_exit(self):
        directory = tempfile.mkdtemp(prefix="wxsim-test-")
        self.addCleanup(shutil.rmtree, directory)
        proc, port = start_sim(directory, "--latency-ms", "200", "--merchant", "1:wx1:%s" % KEY)
        try:
            ctx = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
            start = time.time()
            conn.request("POST", "/pay/orderquery", "<xml/>")
            conn.getresponse().read()
            self.assertGreaterEqual(time.time() - start, 0.2)
            conn.request("GET", "/_sim/stats")
            self.assertEqual(json.loads(conn.getresponse().read())["requests_total"], 1)
            conn.close()
            with open(os.path.join(directory, "pid")) as f:
                self.assertEqual(int(f.read()), proc.pid)
        finally:
            proc.terminate()
        self.assertEqual(proc.wait(10), 0)
        with proc.stdout:
            self.assertRegex(proc.stdout.read().decode(), r"^wxsim listening on https://127\.0\.0\.1:%d\n" % port)
        self.assertFalse(os.path.exists(os.path.join(directory, "port")))
        # A second start reuses the certificates.
        with open(os.path.join(directory, "ca.pem")) as f:
            ca = f.read()
        proc, _ = start_sim(directory)
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        with open(os.path.join(directory, "ca.pem")) as f:
            self.assertEqual(f.read(), ca)


if __name__ == "__main__":
    unittest.main()
