"""wxsim_v3: WeChat Pay merchant API v3 for the simulator (wxsim.py).

JSON bodies; our requests carry a WECHATPAY2-SHA256-RSA2048 Authorization
header that is checked against the merchant's own key; answers and
notifications are signed with the simulated WeChat Pay's platform
certificate and/or WeChat Pay public key (PUB_KEY_ID_...), chosen per
merchant; notification resources and downloaded certificates are
AES-256-GCM encrypted with the merchant's APIv3 key.  Tests can ask for
probe signatures (WECHATPAY/SIGNTEST/...) and skewed timestamps, rotate the
platform certificate, and migrate a merchant from certificate to public key.
The v3 bills and their unsigned download are in bills_v3.py.
Orders and refunds are the simulator's shared model (wxsim.Order/Refund).
"""
import base64
import datetime
import json
import os
import re
import secrets
import time
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

import bills_v3

CST = datetime.timezone(datetime.timedelta(hours=8))
MAX_SKEW = 300
AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
AUTH_FIELD = re.compile(r'([a-z_]+)="([^"]*)"')
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
KEY_MODES = ("certificate", "public_key", "both")
V3_TRADE_TYPES = {"jsapi": "JSAPI", "app": "APP", "h5": "MWEB", "native": "NATIVE"}
V3_REFUND_STATUS = {"PROCESSING": "PROCESSING", "SUCCESS": "SUCCESS", "CHANGE": "ABNORMAL",
                    "REFUNDCLOSE": "CLOSED"}
V3_REFUND_EVENT = {"SUCCESS": "REFUND.SUCCESS", "ABNORMAL": "REFUND.ABNORMAL", "CLOSED": "REFUND.CLOSED"}
# Faults of answers: the signature or timestamp (the request is processed),
# the answer lost after processing (500 SYSTEM_ERROR: outcome unknown), or
# a refusal before processing (500 SYSTEM_ERROR, 429 FREQUENCY_LIMITED).
V3_SIGNATURE_FAULTS = ("probe", "badsign", "skew")
# string_amount: a signed answer whose amount members are JSON strings
# ("100" where WeChat Pay sends 100), which we must refuse.
V3_AFTER_FAULTS = V3_SIGNATURE_FAULTS + ("lost", "string_amount")
# refuse: answered with the fault's status and code, unprocessed.
V3_BEFORE_FAULTS = ("http500", "http429", "refuse")
V3_FAULT_MODES = V3_AFTER_FAULTS + V3_BEFORE_FAULTS + bills_v3.BILL_FAULTS


# ------------------------------------------------------------ primitives

def new_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def serial_hex(cert):
    """A certificate's serial as WeChat Pay shows it: upper-case hex, two
    digits per byte (a leading zero digit kept)."""
    n = cert.serial_number
    return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big").hex().upper()


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def rsa_sign(key, message):
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(public_key, message, signature):
    try:
        public_key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(),
                          hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def lines(*parts):
    """The v3 message: every part followed by a newline, as bytes."""
    return b"".join((p if isinstance(p, bytes) else p.encode()) + b"\n" for p in parts)


def gcm_encrypt(apiv3_key, plaintext, associated_data):
    """A v3 resource: AEAD_AES_256_GCM with a 12-character nonce."""
    nonce = secrets.token_hex(6)
    ct = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(ct).decode(),
            "associated_data": associated_data, "nonce": nonce}


def parse_authorization(value):
    """The five fields of a WECHATPAY2-SHA256-RSA2048 header, or None."""
    scheme, _, rest = (value or "").partition(" ")
    if scheme != AUTH_SCHEME:
        return None
    fields = dict(AUTH_FIELD.findall(rest))
    if set(fields) != {"mchid", "nonce_str", "timestamp", "serial_no", "signature"}:
        return None
    return fields


def rfc3339(ts):
    return datetime.datetime.fromtimestamp(ts, CST).isoformat(timespec="seconds")


def platform_certificate(key, now=None):
    """A platform certificate like WeChat Pay's (CN Tenpay.com sign, 5 years)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com sign")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=5 * 365))
            .sign(key, hashes.SHA256()))


class V3Error(Exception):
    """An error answer: HTTP status and the JSON body {code, message, detail}."""

    def __init__(self, status, code, message, detail=None):
        super().__init__(code)
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def body(self):
        out = {"code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


class BillFile:
    """An unsigned answer: a bill's bytes and their Content-Type."""

    def __init__(self, data, content_type):
        self.data, self.content_type = data, content_type


# --------------------------------------------------- WeChat Pay's keys

class PlatformKeys:
    """One merchant's WeChat Pay signing keys: platform certificates (the
    newest signs) and/or a public key; sign_with says which signs now."""

    def __init__(self, mode):
        if mode not in KEY_MODES:
            raise ValueError("key_mode must be one of %s" % ", ".join(KEY_MODES))
        self.certificates = []         # (serial, cert, key), oldest first
        self.public_key = None         # (PUB_KEY_ID_..., key)
        if mode in ("certificate", "both"):
            self.rotate()
        if mode in ("public_key", "both"):
            self.add_public_key()
        self.sign_with = "public_key" if mode == "public_key" else "certificate"
        self.forced = False            # answers follow sign_with even during a migration

    def rotate(self):
        """A new platform certificate, which signs from now on; old ones stay listed."""
        key = new_rsa_key()
        cert = platform_certificate(key)
        self.certificates.append((serial_hex(cert), cert, key))
        self.sign_with = "certificate"
        return self.certificates[-1]

    def add_public_key(self):
        """The WeChat Pay public key (a migration's first step); signing is unchanged."""
        if self.public_key is None:
            self.public_key = ("PUB_KEY_ID_0114" + "".join(secrets.choice("0123456789") for _ in range(28)),
                               new_rsa_key())
        return self.public_key

    def signer(self, requested=None, answering=False):
        """(Wechatpay-Serial, private key) of whatever signs now.  During a
        migration (a certificate and a public key) an answer is signed with
        the kind of key the request's Wechatpay-Serial names, the
        certificate when it names none (§2.5, §3.3); notifications, and
        answers otherwise (or when forced: a merchant WeChat Pay has already
        switched), follow sign_with."""
        if answering and self.public_key and self.certificates and not self.forced:
            if requested == self.public_key[0]:
                return self.public_key
            serial, _, key = self.certificates[-1]
            return serial, key
        if self.sign_with == "public_key" and self.public_key:
            return self.public_key
        serial, _, key = self.certificates[-1]
        return serial, key

    def listing(self):
        """What a merchant configures: every key with its serial and PEM."""
        out = [{"serial": s, "kind": "certificate",
                "pem": c.public_bytes(serialization.Encoding.PEM).decode()} for s, c, _ in self.certificates]
        if self.public_key:
            out.append({"serial": self.public_key[0], "kind": "public_key", "pem": public_pem(self.public_key[1])})
        return out


# ------------------------------------------------------------------ API

class V3:
    """The v3 endpoints over the simulator's orders and refunds."""

    ROUTES = (
        ("POST", re.compile(r"/v3/pay/transactions/(jsapi|app|h5|native)"), "prepay"),
        ("GET", re.compile(r"/v3/pay/transactions/out-trade-no/([^/]+)"), "query_by_out_trade_no"),
        ("GET", re.compile(r"/v3/pay/transactions/id/([^/]+)"), "query_by_transaction_id"),
        ("POST", re.compile(r"/v3/pay/transactions/out-trade-no/([^/]+)/close"), "close"),
        ("POST", re.compile(r"/v3/refund/domestic/refunds"), "refund"),
        ("GET", re.compile(r"/v3/refund/domestic/refunds/([^/]+)"), "refund_query"),
        ("GET", re.compile(r"/v3/certificates"), "certificates"),
        ("GET", re.compile(bills_v3.TRADE_PATH), "tradebill"),
        ("GET", re.compile(bills_v3.FUND_PATH), "fundflowbill"),
        ("GET", re.compile(bills_v3.FILE_PATH), "bill_file"),
    )

    def __init__(self, sim):
        self.sim = sim
        self.keys = {}                 # mch_id -> PlatformKeys
        self.faults = []               # [{"mode": V3_FAULT_MODES, "count": n, "skew_s": s, "path": path}]
        self.clock_skew = 0            # seconds added to our own clock when checking requests
        self.bills = bills_v3.Bills(self)
        self.host = None               # the Host of the request being answered (download_url's)
        self.request_serials = {}      # mch_id -> the Wechatpay-Serial of its last request (None: none)
        self.answer_serials = {}       # mch_id -> the serial that signed the answer to it

    # --------------------------------------------------------- pipeline

    def route(self, method, path):
        for m, pattern, name in self.ROUTES:
            match = pattern.fullmatch(path)
            if match:
                if m != method:
                    raise V3Error(405, "METHOD_NOT_ALLOWED", "%s only" % m)
                return getattr(self, name), [urllib.parse.unquote(g) for g in match.groups()]
        raise V3Error(404, "NOT_FOUND", "no such v3 endpoint")

    def answer(self, request):
        """(status, headers, body bytes) for a request to /v3/."""
        merchant = None
        try:
            handler, args = self.route(request.method, request.path)
            merchant = self.authenticate(request)
            fault = self.take_fault(request.path, V3_BEFORE_FAULTS)
            if fault and fault["mode"] == "refuse":
                raise V3Error(fault["status"], fault["code"], "refused by a fault")
            if fault:
                raise (V3Error(429, "FREQUENCY_LIMITED", "频率超限") if fault["mode"] == "http429"
                       else V3Error(500, "SYSTEM_ERROR", "系统错误"))
            body = self.json_body(request) if request.method == "POST" else {}
            self.host = request.headers.get("host", "")
            status, obj = handler(merchant, body, dict(urllib.parse.parse_qsl(request.query)), *args)
            if isinstance(obj, BillFile):
                # The bill download: no Wechatpay-* headers (§3.8).
                return status, [("Content-Type", obj.content_type)], obj.data
            fault = self.take_fault(request.path, V3_AFTER_FAULTS)
            if fault and fault["mode"] == "lost":
                raise V3Error(500, "SYSTEM_ERROR", "系统错误")
            if fault and fault["mode"] == "string_amount" and isinstance((obj or {}).get("amount"), dict):
                obj["amount"] = {k: str(v) if isinstance(v, int) else v for k, v in obj["amount"].items()}
        except V3Error as e:
            # Error answers go out unsigned, as WeChat Pay's do.
            return e.status, [], json.dumps(e.body(), ensure_ascii=False).encode()
        raw = b"" if obj is None else json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        requested = request.headers.get("wechatpay-serial")
        self.request_serials[merchant.mch_id] = requested
        return status, self.signed_headers(merchant, raw, fault, requested, answering=True), raw

    def authenticate(self, request):
        """The merchant whose key signed the request's Authorization."""
        if not request.headers.get("accept") or not request.headers.get("user-agent"):
            raise V3Error(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent")
        auth = parse_authorization(request.headers.get("authorization"))
        if auth is None:
            raise V3Error(401, "SIGN_ERROR", "Authorization is not WECHATPAY2-SHA256-RSA2048 with five fields")
        merchant = self.sim.merchants.get(auth["mchid"])
        if merchant is None or merchant.protocol != "v3":
            raise V3Error(401, "SIGN_ERROR", "商户号不存在或未开通APIv3")
        if auth["serial_no"] != merchant.serial_no:
            raise V3Error(401, "SIGN_ERROR", "商户证书序列号有误。", {"field": "serial_no"})
        if not re.fullmatch(r"[0-9]{1,12}", auth["timestamp"]) or \
                abs(time.time() + self.clock_skew - int(auth["timestamp"])) > MAX_SKEW:
            raise V3Error(401, "SIGN_ERROR", "timestamp is not within 5 minutes of WeChat Pay's clock")
        url = request.path + ("?" + request.query if request.query else "")
        message = lines(request.method, url, auth["timestamp"], auth["nonce_str"], request.body)
        if not rsa_verify(merchant.client_key.public_key(), message, auth["signature"]):
            raise V3Error(401, "SIGN_ERROR", "签名错误", {
                "detail": {"issue": "sign not match"}, "field": "signature", "location": "authorization",
                "sign_information": {"method": request.method, "url": url,
                                     "sign_message_length": len(message),
                                     "truncated_sign_message": message[:64].decode("utf-8", "replace")}})
        return merchant

    @staticmethod
    def json_body(request):
        if "application/json" not in request.headers.get("content-type", ""):
            raise V3Error(400, "INVALID_REQUEST", "Content-Type must be application/json")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise V3Error(400, "PARAM_ERROR", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise V3Error(400, "PARAM_ERROR", "the body must be a JSON object")
        return body

    def take_fault(self, path, modes):
        """The first queued fault of one of modes for path (or any path), used up."""
        for fault in self.faults:
            if fault["mode"] in modes and fault.get("path") in (None, path):
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def signed_headers(self, merchant, raw, fault=None, requested=None, answering=False):
        """Wechatpay-* headers over raw, by the merchant's current signer
        (answering: an answer to a request whose Wechatpay-Serial was
        requested); a fault makes the signature a probe or wrong, or skews
        the time."""
        serial, key = self.keys[merchant.mch_id].signer(requested, answering)
        if answering:
            self.answer_serials[merchant.mch_id] = serial
        ts = str(int(time.time()) + (int(fault.get("skew_s", 0)) if fault else 0))
        nonce = secrets.token_hex(16)
        signature = rsa_sign(key, lines(ts, nonce, raw))
        if fault and fault["mode"] == "probe":
            signature = PROBE_PREFIX + signature[len(PROBE_PREFIX):]
        elif fault and fault["mode"] == "badsign":
            signature = rsa_sign(key, lines(ts, nonce, raw + b" "))
        return [("Wechatpay-Timestamp", ts), ("Wechatpay-Nonce", nonce), ("Wechatpay-Signature", signature),
                ("Wechatpay-Serial", serial), ("Wechatpay-Signature-Type", AUTH_SCHEME),
                ("Request-ID", secrets.token_hex(16))]

    # ----------------------------------------------------------- orders

    def prepay(self, merchant, body, _query, kind):
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise V3Error(400, "PARAM_ERROR", "缺少参数 %s" % name, {"field": "/" + name, "location": "body"})
        if body["mchid"] != merchant.mch_id:
            raise V3Error(400, "INVALID_REQUEST", "mchid不是发起请求的商户")
        if body["appid"] != merchant.appid:
            raise V3Error(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
        total = (body.get("amount") or {}).get("total")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise V3Error(400, "PARAM_ERROR", "amount.total must be a positive integer of fen",
                          {"field": "/amount/total", "location": "body"})
        if kind == "jsapi" and not (body.get("payer") or {}).get("openid"):
            raise V3Error(400, "PARAM_ERROR", "JSAPI requires payer.openid", {"field": "/payer/openid"})
        if kind == "h5" and not ((body.get("scene_info") or {}).get("payer_client_ip")
                                 and (body.get("scene_info") or {}).get("h5_info")):
            raise V3Error(400, "PARAM_ERROR", "H5 requires scene_info.payer_client_ip and scene_info.h5_info")
        params = dict(body, trade_type=V3_TRADE_TYPES[kind], openid=(body.get("payer") or {}).get("openid"))
        order = self.sim.orders.get((merchant.mch_id, body["out_trade_no"]))
        if order is None:
            order = self.sim.new_order(merchant, params, total)
        elif order.state in ("SUCCESS", "REFUND"):
            raise V3Error(403, "ORDER_PAID", "该订单已支付")
        elif order.state in ("CLOSED", "REVOKED"):
            raise V3Error(400, "ORDER_CLOSED", "该订单已关闭")
        elif order.params != params:
            raise V3Error(400, "INVALID_REQUEST", "商户订单号重复 (parameters differ from the first call)")
        if kind == "native":
            return 200, {"code_url": order.code_url}
        if kind == "h5":
            return 200, {"h5_url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=%s"
                                   "&package=1234567890" % order.prepay_id}
        return 200, {"prepay_id": order.prepay_id}

    def query_mchid(self, merchant, query):
        if query.get("mchid") != merchant.mch_id:
            raise V3Error(400, "PARAM_ERROR", "mchid is required in the query string and must be the caller's")

    def query_by_out_trade_no(self, merchant, _body, query, out_trade_no):
        self.query_mchid(merchant, query)
        order = self.sim.orders.get((merchant.mch_id, out_trade_no))
        if order is None:
            raise V3Error(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self.transaction(order)

    def query_by_transaction_id(self, merchant, _body, query, transaction_id):
        self.query_mchid(merchant, query)
        order = self.sim.by_transaction.get((merchant.mch_id, transaction_id))
        if order is None or order.state not in ("SUCCESS", "REFUND"):
            raise V3Error(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self.transaction(order)

    def transaction(self, order):
        """The transaction object of queries and payment notifications."""
        merchant = self.sim.merchants[order.mch_id]
        out = {"appid": merchant.appid, "mchid": merchant.mch_id, "out_trade_no": order.out_trade_no,
               "trade_type": order.params["trade_type"], "trade_state": order.state,
               "trade_state_desc": order.state, "attach": order.params.get("attach", ""),
               "amount": {"total": order.fee, "currency": "CNY"}}
        if order.state in ("SUCCESS", "REFUND"):
            self.sim.reserve_payment_identity(order)
            out.update(transaction_id=order.transaction_id, bank_type="OTHERS",
                       success_time=datetime.datetime.strptime(order.time_end, "%Y%m%d%H%M%S")
                       .replace(tzinfo=CST).isoformat(timespec="seconds"),
                       payer={"openid": order.openid})
            out["amount"].update(payer_total=order.fee, payer_currency="CNY")
        return out

    def close(self, merchant, body, _query, out_trade_no):
        if body.get("mchid") != merchant.mch_id:
            raise V3Error(400, "PARAM_ERROR", "mchid is required in the body and must be the caller's")
        order = self.sim.orders.get((merchant.mch_id, out_trade_no))
        if order is None:
            raise V3Error(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.state in ("SUCCESS", "REFUND"):
            raise V3Error(400, "ORDER_PAID", "订单已支付")
        if order.state == "USERPAYING":
            raise V3Error(202, "USER_PAYING", "用户支付中")
        order.state = "CLOSED"           # re-entrant: closing a closed order succeeds
        return 204, None

    # ---------------------------------------------------------- refunds

    def refund(self, merchant, body, _query):
        amount = body.get("amount") or {}
        if not body.get("out_refund_no") or not isinstance(amount.get("refund"), int) or \
                not isinstance(amount.get("total"), int) or amount.get("currency") != "CNY":
            raise V3Error(400, "PARAM_ERROR", "out_refund_no, amount.refund, amount.total and amount.currency are required")
        if body.get("transaction_id"):
            order = self.sim.by_transaction.get((merchant.mch_id, body["transaction_id"]))
        else:
            order = self.sim.orders.get((merchant.mch_id, body.get("out_trade_no", "")))
        if order is None or order.state not in ("SUCCESS", "REFUND"):
            raise V3Error(404, "ORDER_NOT_EXIST", "订单不存在或未支付")
        if amount["total"] != order.total_fee:
            raise V3Error(400, "PARAM_ERROR", "amount.total is not the order's total")
        refund = self.sim.refunds.get((merchant.mch_id, body["out_refund_no"]))
        if refund is None:
            if order.refunded() + amount["refund"] > order.total_fee:
                raise V3Error(403, "NOT_ENOUGH", "订单可退金额不足")
            refund = self.sim.new_refund(merchant, order, {"out_refund_no": body["out_refund_no"],
                                                           "notify_url": body.get("notify_url")}, amount["refund"])
        elif refund.out_trade_no != order.out_trade_no or refund.refund_fee != amount["refund"]:
            raise V3Error(400, "INVALID_REQUEST", "out_refund_no was used with other parameters")
        return 200, self.refund_object(refund)

    def refund_query(self, merchant, _body, _query, out_refund_no):
        refund = self.sim.refunds.get((merchant.mch_id, out_refund_no))
        if refund is None:
            raise V3Error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self.refund_object(refund)

    def refund_object(self, refund, status_field="status"):
        order = self.sim.orders[(refund.mch_id, refund.out_trade_no)]
        out = {"refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
               "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
               "channel": "ORIGINAL", "user_received_account": refund.recv_account or "支付用户零钱",
               "create_time": rfc3339(refund.created), status_field: V3_REFUND_STATUS[refund.state],
               "amount": {"total": order.total_fee, "refund": refund.refund_fee, "payer_total": order.total_fee,
                          "payer_refund": refund.refund_fee, "currency": "CNY"}}
        if refund.state == "SUCCESS":
            out["success_time"] = rfc3339(time.time())
        return out

    # ------------------------------------------------ platform certificates

    def certificates(self, merchant, _body, _query):
        keys = self.keys[merchant.mch_id]
        if not keys.certificates:
            raise V3Error(404, "RESOURCE_NOT_EXISTS",
                          "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥。")
        data = []
        for serial, cert, _ in keys.certificates:
            pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            data.append({"serial_no": serial,
                         "effective_time": cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
                         .astimezone(CST).isoformat(timespec="seconds"),
                         "expire_time": cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
                         .astimezone(CST).isoformat(timespec="seconds"),
                         "encrypt_certificate": gcm_encrypt(merchant.apiv3_key, pem, "certificate")})
        return 200, {"data": data}

    # ------------------------------------------------------------ bills

    def tradebill(self, merchant, _body, query):
        return self.bills.tradebill(merchant, query, self.host, V3Error)

    def fundflowbill(self, merchant, _body, query):
        return self.bills.fundflowbill(merchant, query, self.host, V3Error)

    def bill_file(self, merchant, _body, query):
        return 200, BillFile(*self.bills.download(merchant, query, V3Error))

    # ---------------------------------------------------- notifications

    def notification(self, merchant, event_type, summary, original_type, plain, associated_data):
        """A notification body: the envelope with its encrypted resource."""
        resource = gcm_encrypt(merchant.apiv3_key, json.dumps(plain, ensure_ascii=False, separators=(",", ":")),
                               associated_data)
        resource["original_type"] = original_type
        return json.dumps({"id": "EV-" + secrets.token_hex(10), "create_time": rfc3339(time.time()),
                           "resource_type": "encrypt-resource", "event_type": event_type, "summary": summary,
                           "resource": resource}, ensure_ascii=False, separators=(",", ":"))

    def payment_notification(self, order, overrides=None):
        merchant = self.sim.merchants[order.mch_id]
        plain = self.transaction(order)
        plain.update(overrides or {})
        return self.notification(merchant, "TRANSACTION.SUCCESS", "支付成功", "transaction", plain, "transaction")

    def refund_notification(self, refund):
        merchant = self.sim.merchants[refund.mch_id]
        plain = dict(self.refund_object(refund, "refund_status"), mchid=refund.mch_id)   # §5.4: it names the merchant
        status = plain["refund_status"]
        return self.notification(merchant, V3_REFUND_EVENT.get(status, "REFUND.SUCCESS"), "退款结果",
                                 "refund", plain, "refund")

    def notification_headers(self, mch_id, body, probes=0, skew_s=0):
        """Headers for each delivery attempt: the first `probes` attempts carry
        a probe signature, the first ones after skewed timestamps."""
        merchant = self.sim.merchants[mch_id]
        raw = body.encode()
        made = {}           # attempt -> its headers, made on first use and then fixed

        def for_attempt(attempt):
            if attempt not in made:
                fault = None
                if attempt <= probes:
                    fault = {"mode": "probe"}
                elif skew_s and attempt <= probes + 1:
                    fault = {"mode": "skew", "skew_s": skew_s}
                made[attempt] = [("Content-Type", "application/json")] + self.signed_headers(merchant, raw, fault)
            return made[attempt]
        return for_attempt

    def reply_is_success(self, status, _reply):
        return status in (200, 204)
