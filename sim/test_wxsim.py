"""Tests of the simulator itself: its signing and encryption against the
published vectors (so it is an independent check of the extension), and
its HTTP behaviour end to end on an ephemeral port."""
import base64
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wxsim  # noqa: E402

KEY = "192006250b4c09247ec02edce69f6a2d"
OFFICIAL = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000",
            "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}


class Vectors(unittest.TestCase):
    def test_official(self):
        self.assertEqual(wxsim.sign(OFFICIAL, KEY), "9A0A8659F005D6984697E2CA0A9CF3B7")
        self.assertEqual(wxsim.sign(OFFICIAL, KEY, "HMAC-SHA256"),
                         "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6")

    def test_edge_cases(self):
        self.assertEqual(wxsim.sign({**OFFICIAL, "attach": "", "sign": "X"}, KEY), "9A0A8659F005D6984697E2CA0A9CF3B7")
        self.assertEqual(wxsim.sign({**OFFICIAL, "sign_type": "HMAC-SHA256"}, KEY, "HMAC-SHA256"),
                         "2C9DF1156522C0B2B03B4DBF3BCA5CACB602CBD5CA0F9E112458CF3E9855303B")
        self.assertEqual(wxsim.sign({"test1": "test1", "test2": "test2"}, KEY), "1E3A8D73B5A4AEE787C0F68B5DAB8520")

    def test_refund_encryption_matches_local_vector(self):
        plain = (b"<root><out_refund_no><![CDATA[1234]]></out_refund_no>"
                 b"<refund_status><![CDATA[SUCCESS]]></refund_status></root>")
        self.assertEqual(wxsim.refund_encrypt(plain, KEY),
                         "WBzGpzQuNpcFxIlFjUUD9Cu8k64/SIERgxT2leZdH4LL2pb+JPMCit+b2zIy2yIkHKW7OavuV/"
                         "ysmp419fOa//sNqQ8QZ/QqGG7L7Ft26zOJT8KKGtIQhQk/aqUrb9asj3LpNFyDkPu7x8bcK2r8Fg==")

    def test_xml_round_trip_and_refusal(self):
        params = {"a": "x]]>y", "b": "中文"}
        self.assertEqual(wxsim.from_xml(wxsim.to_xml(params)), params)
        self.assertIsNone(wxsim.from_xml('<!DOCTYPE x [<!ENTITY e "e">]><xml><a>&e;</a></xml>'))


class Server(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "wxsim.py"),
                                     "--dir", cls.dir, "--port", "0", "--quiet", "--close-min-age-s", "0",
                                     "--refund-delay-ms", "200"])
        for _ in range(100):
            if os.path.exists(os.path.join(cls.dir, "port")):
                break
            time.sleep(0.1)
        cls.port = int(open(os.path.join(cls.dir, "port")).read())
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.dir, "ca.pem"))
        creds = cls.control("POST", "/_sim/merchants",
                            {"mch_id": "10000100", "appid": "wxd930ea5d5a258f4f", "api_key": KEY})
        cls.cert = os.path.join(cls.dir, "client.pem")
        with open(cls.cert, "w") as f:
            f.write(creds["cert_pem"] + creds["key_pem"])

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait()

    @classmethod
    def request(cls, method, path, body, ctx=None):
        conn = http.client.HTTPSConnection("127.0.0.1", cls.port, context=ctx or cls.ctx)
        try:
            conn.request(method, path, body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    @classmethod
    def control(cls, method, path, payload=None):
        return json.loads(cls.request(method, path, json.dumps(payload) if payload is not None else None)[1])

    def call(self, path, params, sign_type="MD5", ctx=None):
        p = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "nonce_str": wxsim.nonce(), **params}
        if sign_type != "MD5":
            p["sign_type"] = sign_type
        p["sign"] = wxsim.sign(p, KEY, sign_type)
        status, body = self.request("POST", path, wxsim.to_xml(p), ctx)
        self.assertEqual(status, 200)
        answer = wxsim.from_xml(body)
        if answer["return_code"] == "SUCCESS":
            self.assertEqual(answer["sign"], wxsim.sign(answer, KEY, sign_type), "answers are signed alike")
        return answer

    def order(self, no, **extra):
        return self.call("/pay/unifiedorder", {"body": "b", "out_trade_no": no, "total_fee": "100",
                                               "spbill_create_ip": "1.2.3.4", "notify_url": "http://127.0.0.1:9/n",
                                               "trade_type": "APP", **extra})

    def test_unifiedorder_rules(self):
        first = self.order("t-1")
        self.assertEqual(first["result_code"], "SUCCESS")
        self.assertEqual(self.order("t-1")["prepay_id"], first["prepay_id"])
        self.assertEqual(self.order("t-1", total_fee="200")["err_code"], "INVALID_REQUEST")
        self.assertEqual(self.order("t-2", trade_type="JSAPI")["err_code"], "PARAM_ERROR")
        self.assertEqual(self.call("/pay/unifiedorder", {"body": "b"}, "HMAC-SHA256")["err_code"], "LACK_PARAMS")

    def test_bad_signature_is_an_unsigned_fail(self):
        p = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "nonce_str": "n", "sign": "0" * 32}
        answer = wxsim.from_xml(self.request("POST", "/pay/orderquery", wxsim.to_xml(p))[1])
        self.assertEqual(answer["return_code"], "FAIL")
        self.assertNotIn("sign", answer)

    def test_pay_query_close_refund(self):
        self.order("t-3")
        self.assertEqual(self.call("/pay/orderquery", {"out_trade_no": "t-3"})["trade_state"], "NOTPAY")
        self.control("POST", "/_sim/pay", {"mch_id": "10000100", "out_trade_no": "t-3", "notify": False})
        q = self.call("/pay/orderquery", {"out_trade_no": "t-3"})
        self.assertEqual((q["trade_state"], q["total_fee"]), ("SUCCESS", "100"))
        self.assertEqual(self.call("/pay/closeorder", {"out_trade_no": "t-3"})["err_code"], "ORDERPAID")
        refund = {"out_trade_no": "t-3", "out_refund_no": "r-3", "total_fee": "100", "refund_fee": "60"}
        self.assertEqual(self.call("/secapi/pay/refund", refund)["return_code"], "FAIL", "no client certificate")
        mtls = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.pem"))
        mtls.load_cert_chain(self.cert)
        self.assertEqual(self.call("/secapi/pay/refund", refund, ctx=mtls)["result_code"], "SUCCESS")
        self.assertEqual(self.call("/secapi/pay/refund", {**refund, "out_refund_no": "r-4"}, ctx=mtls)["err_code"],
                         "NOTENOUGH")
        time.sleep(0.4)
        q = self.call("/pay/refundquery", {"out_refund_no": "r-3"})
        self.assertEqual(q["refund_status_0"], "SUCCESS")
        self.order("t-4")
        self.assertEqual(self.call("/pay/closeorder", {"out_trade_no": "t-4"})["result_code"], "SUCCESS")

    def test_faults_and_stats(self):
        self.control("POST", "/_sim/faults", {"mode": "http500", "count": 1})
        self.assertEqual(self.request("POST", "/pay/orderquery", "<xml/>")[0], 500)
        self.order("t-5")
        self.control("POST", "/_sim/faults", {"mode": "badsign", "count": 1, "path": "/pay/orderquery"})
        q = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "nonce_str": "n", "out_trade_no": "t-5"}
        q["sign"] = wxsim.sign(q, KEY)
        answer = wxsim.from_xml(self.request("POST", "/pay/orderquery", wxsim.to_xml(q))[1])
        self.assertEqual(answer["trade_state"], "NOTPAY", "the request is still served")
        self.assertNotEqual(answer["sign"], wxsim.sign(answer, KEY), "but the answer's signature is forged")
        self.control("POST", "/_sim/faults", {"mode": "reset", "count": 1})
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.request("POST", "/pay/orderquery", "<xml/>")
        stats = self.control("GET", "/_sim/stats")
        self.assertGreater(stats["requests_total"], 0)
        self.assertGreaterEqual(stats["tls_handshakes"], 1)


if __name__ == "__main__":
    unittest.main()
