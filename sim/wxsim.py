#!/usr/bin/python3
"""wxsim: a WeChat Pay merchant API simulator on loopback HTTPS (v2 here, v3 in wxsim_v3.py).

It plays https://api.mch.weixin.qq.com for pg_wxpay's tests, demo and
benchmarks: signed XML requests and answers (MD5 / HMAC-SHA256), orders and
refunds in memory, a client certificate required on /secapi/, payment and
AES-encrypted refund notifications delivered on the documented retry
schedule (time-compressed), and faults injected on demand.  Test control
endpoints speak JSON under /_sim/ on the same port.  See sim/README.md.
"""
import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import inspect
import ipaddress
import json
import os
import random
import re
import secrets
import signal
import socket
import ssl
import string
import struct
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET

import bills

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import wxsim_v3

MAX_BODY = 1024 * 1024
MAX_HEAD = 64 * 1024
CST = datetime.timezone(datetime.timedelta(hours=8))   # WeChat's times are Beijing time
SIGN_TYPES = ("MD5", "HMAC-SHA256")
# Seconds to wait before each delivery attempt (the first goes out at once).
NOTIFY_SCHEDULE = (0, 15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600,
                   10800, 10800, 10800, 21600, 21600)
NOTIFY_TIMEOUT = 5.0
PAID = ("SUCCESS", "REFUND")
CLOSED = ("CLOSED", "REVOKED")
# trade_type -> the field it additionally requires
TRADE_TYPES = {"APP": None, "JSAPI": "openid", "NATIVE": "product_id", "MWEB": "scene_info"}
TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付", "SUCCESS": "支付成功", "REFUND": "转入退款", "CLOSED": "订单已关闭",
    "USERPAYING": "用户支付中", "PAYERROR": "支付失败", "REVOKED": "已撤销",
}
REFUND_FINAL_STATES = ("SUCCESS", "CHANGE", "REFUNDCLOSE")
REFUND_RECV_ACCOUNT = "支付用户零钱"
OUT_NO = re.compile(r"[0-9A-Za-z_\-|*@]+")
POSITIVE_INT = re.compile(r"[1-9][0-9]*")
FAULT_MODES = ("delay", "http500", "garbage", "reset", "badsign", "truncated", "oversize", "wrong_appid",
               "bill_creating", "bill_sum", "bill_wrong_day", "bill_wrong_type")
OVERSIZE_PADDING = 3 * 1024 * 1024
API_PATHS = ("/pay/unifiedorder", "/pay/orderquery", "/pay/closeorder", "/secapi/pay/refund", "/pay/refundquery",
             "/pay/micropay", "/secapi/pay/reverse", "/pay/downloadbill", "/pay/downloadfundflow")
# Bills answer with a file, not a signed message (bills.py).
BILL_PATHS = ("/pay/downloadbill", "/pay/downloadfundflow")
# Paths that want the merchant's client certificate besides /secapi/.
CERT_PATHS = ("/pay/downloadfundflow",)
AUTH_CODE = re.compile(r"1[0-5][0-9]{16}")
# micropay's scripted outcomes, chosen by the 3rd and 4th digits of the
# auth_code; N is its 5th digit.  See sim/README.md.
MICROPAY_SCENARIOS = {
    "00": "success",                  # paid at once
    "01": "userpaying_then_success",  # USERPAYING; N orderqueries say so, the next finds it paid
    "02": "userpaying_forever",       # USERPAYING; the payer never confirms
    "03": "systemerror_paid",         # SYSTEMERROR, but the payment went through
    "04": "systemerror_unpaid",       # SYSTEMERROR, nothing charged; the same request again succeeds
    "05": "bankerror_then_success",   # BANKERROR; likewise
    "06": "reverse_race",             # USERPAYING; the payer confirms just as the reverse arrives
    "07": "recall",                   # USERPAYING forever; the reverse answers recall=Y N times first
}
# ... and the refusals (nothing is charged; the order is PAYERROR there).
MICROPAY_REFUSALS = {
    "10": ("NOTENOUGH", "余额不足"),
    "11": ("AUTHCODEEXPIRE", "二维码已过期，请用户在微信上刷新后再试"),
    "12": ("AUTH_CODE_ERROR", "授权码参数错误"),
    "13": ("AUTH_CODE_INVALID", "授权码检验错误"),
    "14": ("NOTSUPORTCARD", "不支持卡类型"),
    "15": ("BUYER_MISMATCH", "支付帐号错误"),
    "16": ("TRADE_ERROR", "交易错误"),
    "17": ("NOAUTH", "商户无此接口权限"),
}
REVERSE_MAX_AGE_S = 7 * 24 * 3600


# --------------------------------------------------------------- signing

def canonical_string(params, key):
    """stringSignTemp: non-empty params except sign, sorted bytewise, then &key=."""
    pairs = sorted((k, v) for k, v in params.items() if k != "sign" and v != "")
    return "".join("%s=%s&" % kv for kv in pairs) + "key=" + key


def sign(params, key, sign_type="MD5"):
    data = canonical_string(params, key).encode()
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode(), data, hashlib.sha256).hexdigest().upper()
    return hashlib.md5(data).hexdigest().upper()


# ------------------------------------------------------------------- XML

class XmlError(ValueError):
    pass


DTD_MARKUP = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def to_xml(params, root="xml"):
    def cdata(value):
        # "]]>" cannot appear inside one CDATA section, so split it across two.
        return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"
    inner = "".join("<%s>%s</%s>" % (k, cdata(v), k) for k, v in params.items())
    return "<%s>%s</%s>" % (root, inner, root)


def parse_xml(body):
    """The flat {name: text} of <xml>; text and CDATA alike.  No DTDs at all,
    so no entity can be defined (the 2018 XXE lesson)."""
    if not body.strip():
        raise XmlError("empty body")
    if DTD_MARKUP.search(body):
        raise XmlError("DOCTYPE and ENTITY declarations are refused")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise XmlError(str(e)) from None
    if root.tag != "xml":
        raise XmlError("root element must be <xml>")
    params = {}
    for child in root:
        if len(child) or child.tag in params:
            raise XmlError("nested or repeated element <%s>" % child.tag)
        params[child.tag] = child.text or ""
    return params


# ------------------------------------------------------ refund encryption

def refund_aes_key(api_key):
    """key* of the refund notification: the 32 lower-case hex characters of
    md5(api_key), used as they are (not hex-decoded) as an AES-256 key."""
    return hashlib.md5(api_key.encode()).hexdigest().encode()


def aes_ecb_encrypt(plain, key):
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def encrypt_req_info(fields, api_key):
    plain = to_xml(fields, root="root").encode()
    return base64.b64encode(aes_ecb_encrypt(plain, refund_aes_key(api_key))).decode()


# ------------------------------------------------------------------- PKI

def new_key():
    return ec.generate_private_key(ec.SECP256R1())   # fast to make, fast handshakes


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_cert(cn, key, issuer=None, issuer_key=None, *, ca=False, sans=None, usage=None):
    """A certificate strict verifiers accept: key usages, SKI and AKI."""
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_cert, signer_key = (issuer, issuer_key) if issuer else (None, key)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   (signer_cert.public_key() if signer_cert else key.public_key())), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Pki:
    """The test CA in DIR, the server certificate it signed, an unrelated CA,
    and client certificates for merchants."""

    FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "other-ca.pem")

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        if not all(os.path.exists(self.path(f)) for f in self.FILES):
            self.generate()
        with open(self.path("ca.pem"), "rb") as f:
            self.ca = x509.load_pem_x509_certificate(f.read())
        with open(self.path("ca.key"), "rb") as f:
            self.ca_key = serialization.load_pem_private_key(f.read(), None)

    def path(self, name):
        return os.path.join(self.dir, name)

    def generate(self):
        ca_key, srv_key, other_key = new_key(), new_key(), new_key()
        ca = make_cert("wxsim test CA", ca_key, ca=True)
        sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
                x509.DNSName("localhost")]
        srv = make_cert("localhost", srv_key, ca, ca_key, sans=sans, usage=ExtendedKeyUsageOID.SERVER_AUTH)
        other = make_cert("wxsim unrelated CA", other_key, ca=True)
        for name, text in (("ca.key", key_pem(ca_key)), ("server.key", key_pem(srv_key)),
                           ("server.pem", cert_pem(srv)), ("other-ca.pem", cert_pem(other)),
                           ("ca.pem", cert_pem(ca))):
            write_atomically(self.path(name), text)

    def client_cert(self, mch_id, key=None):
        key = key or new_key()
        cert = make_cert(mch_id, key, self.ca, self.ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        return cert_pem(cert), key_pem(key)

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.path("server.pem"), self.path("server.key"))
        # A client certificate is optional in the handshake (only /secapi/
        # needs one) but must chain to our CA when presented.
        ctx.load_verify_locations(self.path("ca.pem"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.options &= ~ssl.OP_NO_TICKET   # session tickets: clients may resume
        return ctx

    def client_context(self):
        return ssl.create_default_context(cafile=self.path("ca.pem"))


# ------------------------------------------------------- ids and clocks

def nonce():
    return secrets.token_hex(16)


def cst(ts, fmt):
    return datetime.datetime.fromtimestamp(ts, CST).strftime(fmt)


def compact_time(ts):
    return cst(ts, "%Y%m%d%H%M%S")          # time_end


def dashed_time(ts):
    return cst(ts, "%Y-%m-%d %H:%M:%S")     # success_time, refund_success_time_$n


ALNUM = string.ascii_letters + string.digits


def digits(n):
    return "".join(random.choices("0123456789", k=n))


# ----------------------------------------------------------------- model

@dataclasses.dataclass
class Merchant:
    mch_id: str
    appid: str
    api_key: str
    sign_type: str = "MD5"       # used to sign notifications
    notify_url: str = None       # refund notifications when the request names none
    protocol: str = "v2"         # v3: JSON, RSA, see wxsim_v3.py
    apiv3_key: str = None
    client_key: object = None    # v3: the merchant's RSA key (its apiclient_key.pem)
    serial_no: str = None        # v3: the serial of its apiclient_cert.pem


@dataclasses.dataclass
class Refund:
    mch_id: str
    out_trade_no: str
    out_refund_no: str
    refund_id: str
    refund_fee: int
    total_fee: int
    notify_url: str
    refund_account: str
    state: str = "PROCESSING"
    created: float = dataclasses.field(default_factory=time.time)
    success_time: str = None
    recv_account: str = None


@dataclasses.dataclass
class Order:
    mch_id: str
    out_trade_no: str
    params: dict                 # the unifiedorder request minus sign, sign_type, nonce_str
    total_fee: int
    prepay_id: str
    code_url: str = None
    state: str = "NOTPAY"
    created: float = dataclasses.field(default_factory=time.time)
    reported_fee: int = None     # a forged amount for notifications and queries
    # The payment's identity, fixed the first time a notification is built.
    transaction_id: str = None
    time_end: str = None
    openid: str = None
    refunds: list = dataclasses.field(default_factory=list)
    # micropay: the scripted outcome, its N, and what happened
    scenario: str = None
    scenario_n: int = 0
    micropay_calls: int = 0
    queries: int = 0
    reverse_calls: int = 0
    recalls: int = 0
    reversed_paid: bool = False  # reversed after the payment: the money went back

    @property
    def trade_type(self):
        return self.params.get("trade_type", "MICROPAY")

    @property
    def fee(self):
        """The amount WeChat reports for this order."""
        return self.total_fee if self.reported_fee is None else self.reported_fee

    def refunded(self):
        return sum(r.refund_fee for r in self.refunds if r.state != "REFUNDCLOSE")


class Fail(Exception):
    """return_code FAIL: a communication-level error, answered unsigned."""


class BizError(Exception):
    """result_code FAIL with err_code / err_code_des (and extra fields such
    as reverse's recall), answered signed."""

    def __init__(self, code, des, **extra):
        super().__init__(code)
        self.code, self.des, self.extra = code, des, extra


def require(params, *names):
    for name in names:
        if not params.get(name):
            raise BizError("LACK_PARAMS", "缺少参数 %s" % name)


def positive_int(params, name):
    value = params[name]
    if not POSITIVE_INT.fullmatch(value):
        raise BizError("PARAM_ERROR", "%s must be a positive integer of fen" % name)
    return int(value)


def check_out_no(params, name, limit):
    value = params[name]
    if len(value) > limit or not OUT_NO.fullmatch(value):
        raise BizError("PARAM_ERROR", "%s must be at most %d characters of [0-9A-Za-z_-|*@]" % (name, limit))


@dataclasses.dataclass
class Reply:
    """An API answer before serialization, so faults can alter it first."""
    fields: dict
    api_key: str = None          # None: unsigned
    sign_type: str = "MD5"

    def render(self, mode=None):
        fields = dict(self.fields)
        if self.api_key is None:
            return to_xml(fields).encode()
        if mode == "wrong_appid":
            fields["appid"] = "wx00000000000000ff"
        if mode == "oversize":
            fields["padding"] = "x" * OVERSIZE_PADDING
        fields["sign"] = sign(fields, self.api_key, self.sign_type)
        if mode == "badsign":
            fields["sign"] = sign(fields, self.api_key + "-wrong", self.sign_type)
        return to_xml(fields).encode()


def fail_reply(message):
    return Reply({"return_code": "FAIL", "return_msg": message})


# -------------------------------------------------------------- simulator

class Sim:
    """All state, the API endpoints and the payment/refund life cycle."""

    def __init__(self, args, pki, notifier):
        self.args = args
        self.pki = pki
        self.notifier = notifier
        self.merchants = {}
        self.v3 = wxsim_v3.V3(self)
        self.reset()

    def reset(self):
        self.bill_fault = None    # the fault of the bill request being answered
        self.bill_tamper = {}     # (mch_id, out_trade_no or out_refund_no) -> planted discrepancy
        self.orders = {}          # (mch_id, out_trade_no) -> Order
        self.by_transaction = {}  # (mch_id, transaction_id) -> Order
        self.refunds = {}         # (mch_id, out_refund_no) -> Refund
        self.by_refund_id = {}    # (mch_id, refund_id) -> Refund

    def add_merchant(self, merchant, key_mode="certificate"):
        """The merchant's apiclient certificate and key (RSA for v3, as
        WeChat Pay issues them; v3 also gets its WeChat Pay keys)."""
        if merchant.protocol != "v3":
            self.merchants[merchant.mch_id] = merchant
            return self.pki.client_cert(merchant.mch_id)
        keys = wxsim_v3.PlatformKeys(key_mode)
        merchant.client_key = wxsim_v3.new_rsa_key()
        cert, key = self.pki.client_cert(merchant.mch_id, merchant.client_key)
        merchant.serial_no = wxsim_v3.serial_hex(x509.load_pem_x509_certificate(cert.encode()))
        self.merchants[merchant.mch_id] = merchant
        self.v3.keys[merchant.mch_id] = keys
        return cert, key

    # ---------------------------------------------------- request pipeline

    def answer(self, path, body, peer_cn):
        try:
            params = parse_xml(body)
        except XmlError as e:
            return fail_reply("XML_FORMAT_ERROR: %s" % e)
        merchant = self.merchants.get(params.get("mch_id", ""))
        if merchant is None:
            return self.unknown_merchant(params)
        try:
            sign_type = self.authenticate(path, params, merchant, peer_cn)
        except Fail as e:
            return fail_reply(str(e))
        fields = {"return_code": "SUCCESS", "return_msg": "OK", "appid": merchant.appid,
                  "mch_id": merchant.mch_id, "nonce_str": nonce()}
        if path in BILL_PATHS:
            return bills.answer(self, path, params, merchant, sign_type, fields, self.bill_fault, Reply)
        try:
            self.check_common(params, merchant)
            handler = getattr(self, path.rsplit("/", 1)[1])
            fields.update(result_code="SUCCESS", **handler(merchant, params))
        except BizError as e:
            fields.update(result_code="FAIL", err_code=e.code, err_code_des=e.des, **e.extra)
        return Reply(fields, merchant.api_key, sign_type)

    @staticmethod
    def unknown_merchant(params):
        # The real API answers this as a business error; without a key there
        # is nothing to sign it with, so it goes out unsigned.
        return Reply({"return_code": "SUCCESS", "return_msg": "OK", "appid": params.get("appid", ""),
                      "mch_id": params.get("mch_id", ""), "nonce_str": nonce(), "result_code": "FAIL",
                      "err_code": "MCHID_NOT_EXIST", "err_code_des": "商户号不存在"})

    @staticmethod
    def authenticate(path, params, merchant, peer_cn):
        """Client certificate (for /secapi/) and signature; returns sign_type."""
        if path.startswith("/secapi/") or path in CERT_PATHS:
            if peer_cn is None:
                raise Fail("CERT_ERROR: 证书错误, a client certificate is required")
            if peer_cn != merchant.mch_id:
                raise Fail("CERT_ERROR: 证书错误, the certificate belongs to %s" % peer_cn)
        sign_type = params.get("sign_type", "MD5")
        if sign_type not in SIGN_TYPES:
            raise Fail("sign_type must be MD5 or HMAC-SHA256")
        expected = sign(params, merchant.api_key, sign_type)
        if not hmac.compare_digest(expected.encode(), params.get("sign", "").encode()):
            raise Fail("签名错误")
        return sign_type

    @staticmethod
    def check_common(params, merchant):
        if params.get("appid") != merchant.appid:
            raise BizError("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        require(params, "nonce_str")
        if len(params["nonce_str"]) > 32:
            raise BizError("PARAM_ERROR", "nonce_str is longer than 32 characters")

    # ------------------------------------------------------------ orders

    def unifiedorder(self, merchant, p):
        require(p, "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type")
        check_out_no(p, "out_trade_no", 32)
        total_fee = positive_int(p, "total_fee")
        if p["trade_type"] not in TRADE_TYPES:
            raise BizError("PARAM_ERROR", "trade_type must be one of %s" % ", ".join(TRADE_TYPES))
        needed = TRADE_TYPES[p["trade_type"]]
        if needed and not p.get(needed):
            raise BizError("PARAM_ERROR", "trade_type=%s requires %s" % (p["trade_type"], needed))
        params = {k: v for k, v in p.items() if k not in ("sign", "sign_type", "nonce_str")}
        order = self.orders.get((merchant.mch_id, p["out_trade_no"]))
        if order is None:
            order = self.new_order(merchant, params, total_fee)
        elif order.state in PAID:
            raise BizError("ORDERPAID", "该订单已支付")
        elif order.state in CLOSED:
            raise BizError("ORDERCLOSED", "该订单已关闭")
        elif order.params != params:
            raise BizError("INVALID_REQUEST", "201 商户订单号重复 (parameters differ from the first call)")
        return self.prepay_fields(order)

    def new_order(self, merchant, params, total_fee):
        prepay_id = "wx%s%s" % (compact_time(time.time()), secrets.token_hex(10))
        code_url = None
        if params["trade_type"] == "NATIVE":
            code_url = "weixin://wxpay/bizpayurl?pr=" + "".join(random.choices(ALNUM, k=7))
        order = Order(merchant.mch_id, params["out_trade_no"], params, total_fee, prepay_id, code_url)
        self.orders[(merchant.mch_id, order.out_trade_no)] = order
        return order

    @staticmethod
    def prepay_fields(order):
        out = {"trade_type": order.params["trade_type"], "prepay_id": order.prepay_id}
        if "device_info" in order.params:
            out["device_info"] = order.params["device_info"]
        if order.code_url:
            out["code_url"] = order.code_url
        if order.params["trade_type"] == "MWEB":
            out["mweb_url"] = ("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=%s"
                               "&package=1234567890" % order.prepay_id)
        return out

    def find_order(self, merchant, p):
        if p.get("transaction_id"):
            order = self.by_transaction.get((merchant.mch_id, p["transaction_id"]))
            if order is not None and order.state not in PAID:
                order = None     # an identity reserved for a notification, not yet paid
        elif p.get("out_trade_no"):
            order = self.orders.get((merchant.mch_id, p["out_trade_no"]))
        else:
            raise BizError("LACK_PARAMS", "transaction_id or out_trade_no is required")
        if order is None:
            raise BizError("ORDERNOTEXIST", "此交易订单号不存在")
        return order

    def orderquery(self, merchant, p):
        order = self.find_order(merchant, p)
        self.payer_confirms(order)
        out = {"trade_state": order.state, "trade_state_desc": TRADE_STATE_DESC[order.state],
               "out_trade_no": order.out_trade_no, "total_fee": str(order.fee), "fee_type": "CNY",
               "trade_type": order.trade_type}
        for name in ("attach", "device_info"):
            if order.params.get(name):
                out[name] = order.params[name]
        if order.state in PAID:
            out.update(self.payment_fields(order))
        return out

    @staticmethod
    def payment_fields(order):
        return {"transaction_id": order.transaction_id, "time_end": order.time_end, "openid": order.openid,
                "bank_type": "CMC", "cash_fee": str(order.fee), "is_subscribe": "N"}

    def closeorder(self, merchant, p):
        require(p, "out_trade_no")
        order = self.find_order(merchant, {"out_trade_no": p["out_trade_no"]})
        if order.state in PAID:
            raise BizError("ORDERPAID", "订单已支付，不能发起关单")
        if order.state in CLOSED:
            raise BizError("ORDERCLOSED", "订单已关闭，无法重复关闭")
        if time.time() - order.created < self.args.close_min_age_s:
            raise BizError("TRADE_STATE_ERROR", "订单生成后必须间隔5分钟才可以关闭 "
                           "(an order can be closed 5 minutes after creation)")
        order.state = "CLOSED"
        return {"result_msg": "OK"}

    def reserve_payment_identity(self, order):
        """transaction_id, openid and time_end of the (future) payment, so that
        a notification built early agrees with the later query."""
        if order.transaction_id is None:
            order.transaction_id = "42000" + digits(23)
            order.time_end = compact_time(time.time())
            order.openid = order.params.get("openid") or "oSim" + secrets.token_hex(12)
            self.by_transaction[(order.mch_id, order.transaction_id)] = order

    # ----------------------------------------------------------- micropay

    def micropay(self, merchant, p):
        require(p, "body", "out_trade_no", "total_fee", "spbill_create_ip", "auth_code")
        check_out_no(p, "out_trade_no", 32)
        total_fee = positive_int(p, "total_fee")
        if not AUTH_CODE.fullmatch(p["auth_code"]):
            raise BizError("AUTH_CODE_INVALID", "授权码检验错误 (18 digits starting 10 to 15)")
        params = {k: v for k, v in p.items() if k not in ("sign", "sign_type", "nonce_str")}
        order = self.orders.get((merchant.mch_id, p["out_trade_no"]))
        if order is None:
            order = Order(merchant.mch_id, p["out_trade_no"], params, total_fee, None,
                          scenario=MICROPAY_SCENARIOS.get(p["auth_code"][2:4], p["auth_code"][2:4]),
                          scenario_n=int(p["auth_code"][4]))
            self.orders[(merchant.mch_id, order.out_trade_no)] = order
        elif order.trade_type != "MICROPAY":
            raise BizError("OUT_TRADE_NO_USED", "商户订单号重复")
        elif order.state in PAID:
            raise BizError("ORDERPAID", "订单已支付")
        elif order.state == "REVOKED":
            raise BizError("ORDERREVERSED", "订单已撤销")
        elif order.state == "CLOSED":
            raise BizError("ORDERCLOSED", "订单已关闭")
        elif order.params != params:
            raise BizError("INVALID_REQUEST", "参数错误 (parameters differ from the first call)")
        order.micropay_calls += 1
        return self.micropay_outcome(order)

    def micropay_outcome(self, order):
        """What this micropay call of the order's scenario answers."""
        scenario = order.scenario
        if scenario in MICROPAY_REFUSALS:
            code, des = MICROPAY_REFUSALS[scenario]
            order.state = "PAYERROR"
            raise BizError(code, des)
        if scenario == "systemerror_paid" or (scenario == "systemerror_unpaid" and order.micropay_calls == 1):
            if scenario == "systemerror_paid":
                self.pay(order)
            raise BizError("SYSTEMERROR", "系统超时")
        if scenario == "bankerror_then_success":
            order.state = "USERPAYING"
            raise BizError("BANKERROR", "银行系统异常")
        if scenario in ("userpaying_then_success", "userpaying_forever", "reverse_race", "recall"):
            order.state = "USERPAYING"
            raise BizError("USERPAYING", "需要用户输入支付密码")
        self.pay(order)
        return self.micropay_fields(order)

    def payer_confirms(self, order):
        """An orderquery of a USERPAYING micropay order: the payer confirms after N of them."""
        if order.state != "USERPAYING" or order.scenario not in ("userpaying_then_success",
                                                                  "bankerror_then_success"):
            return
        if order.queries >= order.scenario_n:
            self.pay(order)
        order.queries += 1

    def pay(self, order):
        self.reserve_payment_identity(order)
        order.state = "SUCCESS"

    def micropay_fields(self, order):
        out = {"trade_type": "MICROPAY", "out_trade_no": order.out_trade_no, "total_fee": str(order.fee),
               "fee_type": "CNY", **self.payment_fields(order)}
        for name in ("attach", "device_info"):
            if order.params.get(name):
                out[name] = order.params[name]
        return out

    def reverse(self, merchant, p):
        order = self.find_order(merchant, p)
        order.reverse_calls += 1
        if time.time() - order.created > REVERSE_MAX_AGE_S:
            raise BizError("REVERSE_EXPIRE", "订单已超过可撤销时间")
        if order.scenario == "reverse_race" and order.state == "USERPAYING":
            self.pay(order)        # confirmed a moment before the reverse arrived
        if order.scenario == "recall" and order.recalls < order.scenario_n:
            order.recalls += 1
            raise BizError("SYSTEMERROR", "系统超时，请重新调用撤销", recall="Y")
        if order.state in PAID:
            order.reversed_paid = True   # reversing a paid order returns the money
        order.state = "REVOKED"
        return {"recall": "N"}

    # ------------------------------------------------------------ refunds

    def refund(self, merchant, p):
        require(p, "out_refund_no", "total_fee", "refund_fee")
        check_out_no(p, "out_refund_no", 64)
        total_fee, refund_fee = positive_int(p, "total_fee"), positive_int(p, "refund_fee")
        order = self.find_order(merchant, p)
        if order.state not in PAID:
            raise BizError("ORDERNOTEXIST", "订单未支付")
        if total_fee != order.total_fee:
            raise BizError("PARAM_ERROR", "订单金额或退款金额与之前请求不一致 (total_fee is %d)" % order.total_fee)
        refund = self.refunds.get((merchant.mch_id, p["out_refund_no"]))
        if refund is None:
            refund = self.new_refund(merchant, order, p, refund_fee)
        elif refund.out_trade_no != order.out_trade_no:
            raise BizError("INVALID_REQUEST", "out_refund_no belongs to another order")
        elif (refund.refund_fee, refund.total_fee) != (refund_fee, total_fee):
            raise BizError("REFUND_FEE_MISMATCH", "订单金额或退款金额与之前请求不一致，请核实后再试")
        return {"transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
                "out_refund_no": refund.out_refund_no, "refund_id": refund.refund_id,
                "refund_fee": str(refund.refund_fee), "settlement_refund_fee": str(refund.refund_fee),
                "total_fee": str(order.total_fee), "settlement_total_fee": str(order.total_fee),
                "fee_type": "CNY", "cash_fee": str(order.total_fee), "cash_refund_fee": str(refund.refund_fee)}

    def new_refund(self, merchant, order, p, refund_fee):
        if order.refunded() + refund_fee > order.total_fee:
            raise BizError("NOTENOUGH", "订单可退金额不足 (%d of %d fen already refunded)"
                           % (order.refunded(), order.total_fee))
        refund = Refund(merchant.mch_id, order.out_trade_no, p["out_refund_no"], "503" + digits(26),
                        refund_fee, order.total_fee, p.get("notify_url") or merchant.notify_url,
                        p.get("refund_account") or "REFUND_SOURCE_UNSETTLED_FUNDS")
        self.refunds[(merchant.mch_id, refund.out_refund_no)] = refund
        self.by_refund_id[(merchant.mch_id, refund.refund_id)] = refund
        order.refunds.append(refund)
        order.state = "REFUND"
        asyncio.get_running_loop().call_later(self.args.refund_delay_ms / 1000, self.refund_settles, refund)
        return refund

    def refund_settles(self, refund):
        """The bank's answer after --refund-delay-ms, unless a test decided
        first (/_sim/refund_state) or the state was reset since."""
        if self.refunds.get((refund.mch_id, refund.out_refund_no)) is refund and refund.state == "PROCESSING":
            self.set_refund_state(refund, "SUCCESS", notify=True)

    def set_refund_state(self, refund, state, notify):
        """The refund's final state (SUCCESS, CHANGE or REFUNDCLOSE)."""
        refund.state = state
        refund.recv_account = REFUND_RECV_ACCOUNT
        if state == "SUCCESS" and refund.success_time is None:
            refund.success_time = dashed_time(time.time())
        if notify and self.merchants[refund.mch_id].protocol == "v3":
            body = self.v3.refund_notification(refund)
            self.notifier.send("refund", refund.mch_id, refund.out_refund_no, refund.notify_url, body,
                               self.v3.notification_headers(refund.mch_id, body), self.v3.reply_is_success)
        elif notify:
            self.notifier.send("refund", refund.mch_id, refund.out_refund_no, refund.notify_url,
                               self.refund_notification(refund))

    def refundquery(self, merchant, p):
        refunds, order = self.find_refunds(merchant, p)
        offset = int(p["offset"]) if re.fullmatch(r"[0-9]{1,9}", p.get("offset", "")) else 0
        if refunds and offset >= len(refunds):
            raise BizError("PARAM_ERROR", "offset is beyond the number of refunds")
        page = refunds[offset:offset + 10]
        if not page:
            raise BizError("REFUNDNOTEXIST", "退款订单查询失败")
        out = {"transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
               "total_fee": str(order.total_fee), "settlement_total_fee": str(order.total_fee), "fee_type": "CNY",
               "cash_fee": str(order.total_fee), "refund_count": str(len(page)),
               "total_refund_count": str(len(refunds)), "refund_fee": str(sum(r.refund_fee for r in page))}
        for n, refund in enumerate(page):
            out.update(self.indexed_refund_fields(refund, n))
        return out

    def find_refunds(self, merchant, p):
        """(the refunds asked for, their order); precedence refund_id,
        out_refund_no, transaction_id, out_trade_no."""
        if p.get("refund_id") or p.get("out_refund_no"):
            refund = (self.by_refund_id.get((merchant.mch_id, p["refund_id"])) if p.get("refund_id")
                      else self.refunds.get((merchant.mch_id, p["out_refund_no"])))
            if refund is None:
                raise BizError("REFUNDNOTEXIST", "退款订单查询失败")
            return [refund], self.orders[(merchant.mch_id, refund.out_trade_no)]
        try:
            order = self.find_order(merchant, p)
        except BizError as e:
            code = "LACK_PARAMS" if e.code == "LACK_PARAMS" else "REFUNDNOTEXIST"
            raise BizError(code, e.des) from None
        return order.refunds, order

    @staticmethod
    def indexed_refund_fields(refund, n):
        out = {"out_refund_no_%d" % n: refund.out_refund_no, "refund_id_%d" % n: refund.refund_id,
               "refund_channel_%d" % n: "ORIGINAL", "refund_fee_%d" % n: str(refund.refund_fee),
               "settlement_refund_fee_%d" % n: str(refund.refund_fee), "refund_status_%d" % n: refund.state,
               "refund_account_%d" % n: refund.refund_account}
        if refund.recv_account:
            out["refund_recv_accout_%d" % n] = refund.recv_account
        if refund.state == "SUCCESS":
            out["refund_success_time_%d" % n] = refund.success_time
        return out

    # ------------------------------------------------------ notifications

    def payment_notification(self, order, fields=None, sign_type=None, include_sign_type=False):
        """A signed payment notification as if the order were paid.  fields
        override (None removes) before signing; a "sign" override replaces
        the computed signature."""
        merchant = self.merchants[order.mch_id]
        self.reserve_payment_identity(order)
        sign_type = sign_type or merchant.sign_type
        body = {"return_code": "SUCCESS", "return_msg": "OK", "appid": merchant.appid,
                "mch_id": merchant.mch_id, "nonce_str": nonce(), "result_code": "SUCCESS",
                "openid": order.openid, "is_subscribe": "N", "trade_type": order.trade_type,
                "bank_type": "CMC", "total_fee": str(order.fee), "fee_type": "CNY", "cash_fee": str(order.fee),
                "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
                "time_end": order.time_end}
        for name in ("attach", "device_info"):
            if order.params.get(name):
                body[name] = order.params[name]
        # Real HMAC notifications come without sign_type; tests may add one.
        if include_sign_type:
            body["sign_type"] = sign_type
        fields = dict(fields or {})
        forged_sign = fields.pop("sign", False)
        apply_overrides(body, fields)
        body["sign"] = sign(body, merchant.api_key, sign_type)
        if forged_sign is not False:
            apply_overrides(body, {"sign": forged_sign})
        return to_xml(body)

    def refund_notification(self, refund, fields=None, outer=None):
        merchant = self.merchants[refund.mch_id]
        order = self.orders[(refund.mch_id, refund.out_trade_no)]
        plain = {"transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
                 "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
                 "total_fee": str(order.total_fee), "settlement_total_fee": str(order.total_fee),
                 "refund_fee": str(refund.refund_fee), "settlement_refund_fee": str(refund.refund_fee),
                 "refund_status": refund.state, "success_time": refund.success_time,
                 "refund_recv_accout": refund.recv_account or REFUND_RECV_ACCOUNT,
                 "refund_account": refund.refund_account, "refund_request_source": "API"}
        if plain["success_time"] is None:
            del plain["success_time"]
        apply_overrides(plain, fields or {})
        body = {"return_code": "SUCCESS", "return_msg": "OK", "appid": merchant.appid,
                "mch_id": merchant.mch_id, "nonce_str": nonce(),
                "req_info": encrypt_req_info(plain, merchant.api_key)}
        apply_overrides(body, outer or {})
        return to_xml(body)


def apply_overrides(target, overrides):
    for name, value in overrides.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = str(value)


# ------------------------------------------------- notification delivery

class Notifier:
    """POSTs notifications on the retry schedule and records every attempt."""

    def __init__(self, scale, client_ssl, log):
        self.scale = scale
        self.client_ssl = client_ssl
        self.log = log
        self.attempts = []        # every attempt, for /_sim/deliveries
        self.tasks = set()
        self.count = 0            # attempts since the last stats reset

    def send(self, kind, mch_id, ref, url, body, headers=None, success=None):
        """kind "pay" (ref = out_trade_no) or "refund" (ref = out_refund_no).
        v3: headers(attempt) gives each attempt's headers, success(status,
        reply) judges the reply (v2: HTTP 200 and return_code SUCCESS)."""
        if not url:
            self.log("no notify_url for %s %s, not delivering" % (kind, ref))
            return
        task = asyncio.get_running_loop().create_task(self.deliver(kind, mch_id, ref, url, body, headers, success))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def deliver(self, kind, mch_id, ref, url, body, headers=None, success=None):
        for attempt, wait in enumerate(NOTIFY_SCHEDULE, 1):
            await asyncio.sleep(wait * self.scale)
            status, reply = await self.post(url, body.encode(), headers(attempt) if headers else None)
            ok = success(status, reply) if success else status == 200 and reply_is_success(reply)
            self.count += 1
            self.attempts.append({"kind": kind, "mch_id": mch_id, "ref": ref, "url": url, "attempt": attempt,
                                  "at": time.time(), "http_status": status,
                                  "response": reply.decode("utf-8", "replace")[:1000], "success": ok})
            self.log("notify %s %s attempt %d -> %s %s" % (kind, ref, attempt, status, "ok" if ok else "failed"))
            if ok:
                return

    async def post(self, url, body, headers=None):
        """(HTTP status, reply body); status 0 with the error as the body
        when no HTTP answer came back within the timeout."""
        try:
            return await asyncio.wait_for(self.exchange(url, body, headers), NOTIFY_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            return 0, ("%s: %s" % (type(e).__name__, e)).encode()

    async def exchange(self, url, body, headers=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("unsupported notify_url %r" % url)
        tls = u.scheme == "https"
        reader, writer = await asyncio.open_connection(
            u.hostname, u.port or (443 if tls else 80), ssl=self.client_ssl if tls else None)
        try:
            target = u.path or "/"
            if u.query:
                target += "?" + u.query
            extra = "".join("%s: %s\r\n" % h for h in headers or [("Content-Type", "text/xml")])
            writer.write(("POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n"
                          "Connection: close\r\n\r\n" % (target, u.netloc, extra, len(body))).encode() + body)
            status = parse_status_line(await reader.readline())
            length = None
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is not None and length > MAX_BODY:
                raise ValueError("reply over 1 MB")
            reply = await (reader.readexactly(length) if length is not None else reader.read())
            return status, reply
        finally:
            writer.close()

    def cancel_all(self):
        for task in list(self.tasks):
            task.cancel()


def parse_status_line(line):
    match = re.match(rb"HTTP/1\.[01] (\d{3})", line)
    if not match:
        raise ValueError("not an HTTP answer: %r" % line[:80])
    return int(match.group(1))


def reply_is_success(reply):
    try:
        return parse_xml(reply).get("return_code") == "SUCCESS"
    except XmlError:
        return False


# ----------------------------------------------------------------- faults

class Faults:
    """A queue of faults for the next matching API requests."""

    def __init__(self):
        self.queue = []

    def add(self, mode, count, delay_ms, path):
        if mode not in FAULT_MODES:
            raise ControlError(400, "mode must be none or one of %s" % ", ".join(FAULT_MODES))
        if count == 0 or count < -1:
            raise ControlError(400, "count must be positive, or -1 for until cleared")
        self.queue.append({"mode": mode, "count": count, "delay_ms": delay_ms, "path": path})

    def take(self, path):
        for fault in self.queue:
            if fault["path"] in (None, path):
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        self.queue.remove(fault)
                return fault
        return None


# ------------------------------------------------------------------ HTTP

class Request:
    __slots__ = ("method", "path", "query", "headers", "length", "body", "keep_alive")

    def __init__(self, method, target, version, headers, length):
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.length = length      # of the body, from Content-Length
        self.body = b""
        connection = headers.get("connection", "").lower()
        self.keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")


class Response:
    __slots__ = ("status", "body", "content_type", "close", "abort", "declared_length", "headers")
    REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
               403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
               413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
               500: "Internal Server Error", 501: "Not Implemented"}

    def __init__(self, status, body=b"", content_type="text/xml; charset=utf-8", close=False, headers=()):
        self.headers = list(headers)     # further (name, value) pairs: v3's Wechatpay-*
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.close = close
        self.abort = False
        self.declared_length = len(self.body)

    def to_bytes(self, keep_alive):
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n%s\r\n"
                % (self.status, self.REASONS.get(self.status, "OK"), self.content_type, self.declared_length,
                   "keep-alive" if keep_alive else "close", "".join("%s: %s\r\n" % h for h in self.headers)))
        return head.encode() + self.body


def json_response(status, obj):
    return Response(status, json.dumps(obj, ensure_ascii=False), "application/json; charset=utf-8")


def fault_response(mode, xml):
    """The answer a fault turns xml (the normal answer) into."""
    if mode == "http500":
        return Response(500, "system error", "text/plain")
    if mode == "garbage":
        return Response(200, b"\x00\x01<<not xml at all>>\xff\xfe")
    response = Response(200, xml)
    if mode == "reset":
        response.abort = True
    if mode == "truncated":
        response.body = xml[: len(xml) // 2]
        response.declared_length = len(xml) + 100
        response.close = True
    return response


class HttpConnection(asyncio.Protocol):
    """One client connection: a small HTTP/1.1 parser with keep-alive and
    pipelining; requests are answered in order, one at a time."""

    def __init__(self, server):
        # The protocol is built when TCP is accepted, before the TLS handshake.
        self.server = server
        server.stats["connections"] += 1
        self.transport = None
        self.buffer = bytearray()
        self.pending = None       # a request whose body is still arriving
        self.task = None          # answering a request asynchronously
        self.peer_cn = None

    def connection_made(self, transport):
        self.transport = transport
        self.server.live.add(self)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.server.stats["tls_handshakes"] += 1
            self.server.stats["tls_resumed"] += sslobj.session_reused
            cert = sslobj.getpeercert()
            if cert:
                self.peer_cn = next((v for rdn in cert["subject"] for k, v in rdn if k == "commonName"), None)

    def connection_lost(self, exc):
        self.server.live.discard(self)
        if self.task:
            self.task.cancel()

    def data_received(self, data):
        self.buffer += data
        if self.task is None:
            self.serve()
        elif len(self.buffer) > MAX_HEAD + MAX_BODY:
            self.transport.pause_reading()   # a client pipelining far ahead

    def serve(self):
        while not self.transport.is_closing():
            try:
                request = self.next_request()
            except HttpError as e:
                self.send(Response(e.status, e.message, "text/plain", close=True), None)
                return
            if request is None:
                return
            result = self.server.dispatch(request, self.peer_cn)
            if inspect.isawaitable(result):
                self.task = asyncio.get_running_loop().create_task(self.finish(result, request))
                return
            self.send(result, request)

    async def finish(self, answer, request):
        response = await answer
        self.task = None
        self.send(response, request)
        if not self.transport.is_closing():
            self.transport.resume_reading()
            self.serve()

    def next_request(self):
        """The next complete request from the buffer, or None for now."""
        if self.pending is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    raise HttpError(431, "request head too large")
                return None
            self.pending = parse_head(bytes(self.buffer[:end]))
            del self.buffer[:end + 4]
            # curl waits for this before sending a large body.
            if self.pending.headers.get("expect", "").lower() == "100-continue" and \
                    len(self.buffer) < self.pending.length:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request = self.pending
        if len(self.buffer) < request.length:
            return None
        request.body = bytes(self.buffer[:request.length])
        del self.buffer[:request.length]
        self.pending = None
        return request

    def send(self, response, request):
        if self.transport.is_closing():
            return
        if response.abort:
            # RST instead of FIN: SO_LINGER with a zero timeout, then abort.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            return
        keep_alive = request is not None and request.keep_alive and not response.close
        self.transport.write(response.to_bytes(keep_alive))
        if not keep_alive:
            self.transport.close()


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise HttpError(400, "bad header line")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(501, "only Content-Length bodies are supported")
    length = headers.get("content-length", "0")
    if not re.fullmatch(r"[0-9]{1,18}", length):
        raise HttpError(400, "bad Content-Length")
    if int(length) > MAX_BODY:
        raise HttpError(413, "request body over 1 MB")
    return Request(parts[0], parts[1], parts[2], headers, int(length))


# ---------------------------------------------------------------- control

class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def need(payload, *names):
    missing = [n for n in names if payload.get(n) in (None, "")]
    if missing:
        raise ControlError(400, "missing %s" % ", ".join(missing))


class Server:
    """Routes requests: API endpoints through faults to Sim, /_sim/ to the
    control handlers; keeps the statistics."""

    def __init__(self, args, sim, notifier, log):
        self.args = args
        self.sim = sim
        self.notifier = notifier
        self.log = log
        self.faults = Faults()
        self.live = set()
        self.reset_stats()
        self.routes = {
            ("POST", "/_sim/merchants"): self.c_merchants,
            ("POST", "/_sim/pay"): self.c_pay,
            ("POST", "/_sim/notification"): self.c_notification,
            ("POST", "/_sim/refund_state"): self.c_refund_state,
            ("POST", "/_sim/refund_notification"): self.c_refund_notification,
            ("POST", "/_sim/backdate"): self.c_backdate,
            ("POST", "/_sim/bill_tamper"): self.c_bill_tamper,
            ("POST", "/_sim/faults"): self.c_faults,
            ("GET", "/_sim/stats"): self.c_stats,
            ("POST", "/_sim/stats/reset"): self.c_stats_reset,
            ("GET", "/_sim/orders"): self.c_orders,
            ("GET", "/_sim/deliveries"): self.c_deliveries,
            ("POST", "/_sim/reset"): self.c_reset,
            ("POST", "/_sim/v3/keys"): self.c_v3_keys,
            ("POST", "/_sim/v3/faults"): self.c_v3_faults,
        }

    def reset_stats(self):
        self.stats = {"connections": 0, "tls_handshakes": 0, "tls_resumed": 0, "requests_total": 0, "requests": {}}
        self.notifier.count = 0

    def dispatch(self, request, peer_cn):
        """A Response, or an awaitable of one when the answer is delayed."""
        if request.path.startswith("/_sim/"):
            return self.control(request)
        self.stats["requests_total"] += 1
        self.stats["requests"][request.path] = self.stats["requests"].get(request.path, 0) + 1
        if request.path.startswith("/v3/"):
            status, headers, body = self.sim.v3.answer(request)
            if not self.args.quiet:
                self.log("%s %s -> %d" % (request.method, request.path, status))
            # JSON, unless the answer names its type (a bill download).
            content_type = dict(headers).get("Content-Type", "application/json; charset=utf-8")
            response = Response(status, body, content_type, headers=[h for h in headers if h[0] != "Content-Type"])
            return self.later(self.args.latency_ms / 1000, response) if self.args.latency_ms > 0 else response
        if request.path not in API_PATHS:
            return Response(404, "not found", "text/plain")
        if request.method != "POST":
            return Response(405, "POST only", "text/plain")
        return self.api(request, peer_cn)

    def api(self, request, peer_cn):
        fault = self.faults.take(request.path)
        mode = fault["mode"] if fault else None
        if mode in ("http500", "garbage", "reset"):
            response = fault_response(mode, b"")          # not processed at all
        else:
            self.sim.bill_fault = mode if request.path in BILL_PATHS else None
            reply = self.sim.answer(request.path, request.body, peer_cn)
            response = fault_response(mode, reply.render(mode))
            response.content_type = getattr(reply, "content_type", response.content_type)
            if not self.args.quiet:
                self.log("%s %s -> %s %s%s" % (request.method, request.path, reply.fields.get("result_code", "FAIL"),
                                         reply.fields.get("err_code", reply.fields.get("return_msg", "")),
                                         " [fault %s]" % mode if mode else ""))
        delay_ms = self.args.latency_ms + (fault["delay_ms"] if mode == "delay" else 0)
        return self.later(delay_ms / 1000, response) if delay_ms > 0 else response

    @staticmethod
    async def later(seconds, response):
        await asyncio.sleep(seconds)
        return response

    def control(self, request):
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return json_response(404, {"error": "no control endpoint %s %s" % (request.method, request.path)})
        try:
            payload = json.loads(request.body) if request.body.strip() else {}
            if not isinstance(payload, dict):
                raise ControlError(400, "the body must be a JSON object")
            query = dict(urllib.parse.parse_qsl(request.query))
            return json_response(200, handler(payload, query))
        except ControlError as e:
            return json_response(e.status, {"error": e.message})
        except (ValueError, TypeError, AttributeError) as e:   # ill-typed JSON values
            return json_response(400, {"error": str(e)})

    # --------------------------------------------------- control handlers

    def order(self, mch_id, out_trade_no):
        order = self.sim.orders.get((mch_id, out_trade_no))
        if order is None:
            raise ControlError(404, "no order %s of merchant %s" % (out_trade_no, mch_id))
        return order

    def refund(self, mch_id, out_refund_no):
        refund = self.sim.refunds.get((mch_id, out_refund_no))
        if refund is None:
            raise ControlError(404, "no refund %s of merchant %s" % (out_refund_no, mch_id))
        return refund

    def c_merchants(self, p, _):
        need(p, "mch_id", "appid", "api_key")
        sign_type = p.get("sign_type") or "MD5"
        if sign_type not in SIGN_TYPES:
            raise ControlError(400, "sign_type must be MD5 or HMAC-SHA256")
        protocol = p.get("protocol") or "v2"
        if protocol not in ("v2", "v3") or (protocol == "v3" and len(str(p.get("apiv3_key") or "")) != 32):
            raise ControlError(400, "protocol must be v2, or v3 with a 32-character apiv3_key")
        if p.get("key_mode", "certificate") not in wxsim_v3.KEY_MODES:
            raise ControlError(400, "key_mode must be one of %s" % ", ".join(wxsim_v3.KEY_MODES))
        merchant = Merchant(str(p["mch_id"]), str(p["appid"]), str(p["api_key"]), sign_type, p.get("notify_url"),
                            protocol, p.get("apiv3_key"))
        cert, key = self.sim.add_merchant(merchant, p.get("key_mode", "certificate"))
        if protocol == "v2":
            return {"cert_pem": cert, "key_pem": key}
        return {"cert_pem": cert, "key_pem": key, "serial_no": merchant.serial_no,
                "wechatpay_keys": self.sim.v3.keys[merchant.mch_id].listing()}

    def v3_merchant(self, mch_id):
        merchant = self.sim.merchants.get(mch_id)
        if merchant is None or merchant.protocol != "v3":
            raise ControlError(404, "no v3 merchant %s" % mch_id)
        return merchant

    def c_v3_keys(self, p, _):
        """rotate (a new platform certificate signs), add_public_key, or
        sign_with certificate|public_key (a migration's switch: what signs
        notifications, and answers outside a migration; during one an
        answer follows the request's Wechatpay-Serial), or show; with the
        Wechatpay-Serial of the merchant's last request and the serial that
        signed its answer."""
        need(p, "mch_id", "action")
        keys = self.sim.v3.keys[self.v3_merchant(p["mch_id"]).mch_id]
        if p["action"] == "rotate":
            keys.rotate()
        elif p["action"] == "add_public_key":
            keys.add_public_key()
        elif p["action"] == "sign_with" and p.get("sign_with") in ("certificate", "public_key"):
            if (keys.public_key if p["sign_with"] == "public_key" else keys.certificates) in (None, []):
                raise ControlError(409, "merchant %s has no %s" % (p["mch_id"], p["sign_with"]))
            keys.sign_with = p["sign_with"]
            keys.forced = bool(p.get("force"))
        elif p["action"] == "show":
            pass
        elif p["action"] == "drop_certificates":
            if keys.public_key is None:
                raise ControlError(409, "merchant %s would have no key left" % p["mch_id"])
            keys.certificates.clear()
            keys.sign_with = "public_key"
        else:
            raise ControlError(400, "action must be rotate, add_public_key, drop_certificates, show or sign_with "
                                    "(with sign_with certificate or public_key)")
        mch_id = self.v3_merchant(p["mch_id"]).mch_id
        return {"signing": keys.signer()[0], "wechatpay_keys": keys.listing(),
                "last_request_serial": self.sim.v3.request_serials.get(mch_id),
                "last_answer_serial": self.sim.v3.answer_serials.get(mch_id)}

    def c_v3_faults(self, p, _):
        """The next count v3 answers (to path, if given)
        carry a probe signature, a wrong one, or a timestamp skew_s seconds
        off, or amounts as strings (string_amount); or are lost after the
        request was processed (500 SYSTEM_ERROR), or refused before (http500:
        500 SYSTEM_ERROR, http429: 429, refuse: the fault's status and code);
        or the bills' faults (bills_v3.py: bill_creating, bill_sum,
        bill_corrupt, bill_foreign_host, bill_hash_upper, bill_expired)."""
        if p.get("mode", "none") == "none":
            self.sim.v3.faults.clear()
        elif p["mode"] in wxsim_v3.V3_FAULT_MODES:
            self.sim.v3.faults.append({"mode": p["mode"], "count": int(p.get("count", 1)),
                                       "skew_s": int(p.get("skew_s", 0)), "path": p.get("path"),
                                       "status": int(p.get("status", 400)), "code": str(p.get("code", "PARAM_ERROR"))})
        else:
            raise ControlError(400, "mode must be none or one of %s" % ", ".join(wxsim_v3.V3_FAULT_MODES))
        return {"queue": self.sim.v3.faults}

    def c_pay(self, p, _):
        need(p, "mch_id", "out_trade_no")
        order = self.order(p["mch_id"], p["out_trade_no"])
        state = p.get("trade_state") or "SUCCESS"
        if state not in ("SUCCESS", "PAYERROR", "USERPAYING"):
            raise ControlError(400, "trade_state must be SUCCESS, PAYERROR or USERPAYING")
        if order.state in CLOSED:
            raise ControlError(409, "order %s is %s" % (order.out_trade_no, order.state))
        if state != "SUCCESS":
            if order.state in PAID:
                raise ControlError(409, "order %s is already paid" % order.out_trade_no)
            order.state = state
            return {"transaction_id": None, "notification": None}
        if p.get("total_fee") is not None:
            order.reported_fee = int(p["total_fee"])
        if p.get("time_end") is not None:     # a payment at a chosen moment (bills near midnight)
            if order.state in PAID or not re.fullmatch(r"[0-9]{14}", str(p["time_end"])):
                raise ControlError(400, "time_end must be yyyyMMddHHmmss, for an order not paid yet")
            self.sim.reserve_payment_identity(order)
            order.time_end = str(p["time_end"])
        if order.state not in PAID:
            order.state = "SUCCESS"
        if self.sim.merchants[order.mch_id].protocol == "v3":
            return self.v3_pay(order, p)
        body = self.sim.payment_notification(order)
        if p.get("notify", True):
            self.notifier.send("pay", order.mch_id, order.out_trade_no, order.params.get("notify_url"), body)
        return {"transaction_id": order.transaction_id, "notification": body}

    def v3_pay(self, order, p):
        """A v3 payment notification; probes: so many attempts with a probe
        signature first, skew_s: then one with a skewed timestamp."""
        body = self.sim.v3.payment_notification(order)
        probes, skew_s = int(p.get("probes", 0)), int(p.get("skew_s", 0))
        headers = self.sim.v3.notification_headers(order.mch_id, body, probes, skew_s)
        if p.get("notify", True):
            self.notifier.send("pay", order.mch_id, order.out_trade_no, order.params["notify_url"], body,
                               headers, self.sim.v3.reply_is_success)
        genuine = probes + (1 if skew_s else 0) + 1
        return {"transaction_id": order.transaction_id, "notification": body,
                "headers": dict(headers(genuine))}

    def c_notification(self, p, _):
        need(p, "mch_id", "out_trade_no")
        if self.sim.merchants.get(p["mch_id"]) and self.sim.merchants[p["mch_id"]].protocol == "v3":
            order = self.order(p["mch_id"], p["out_trade_no"])
            body = self.sim.v3.payment_notification(order, p.get("fields"))
            fault = {"mode": p["fault"], "skew_s": int(p.get("skew_s", 0))} if p.get("fault") else None
            merchant = self.sim.merchants[order.mch_id]
            return {"body": body, "headers": dict(self.sim.v3.signed_headers(merchant, body.encode(), fault))}
        if p.get("sign_type") not in (None,) + SIGN_TYPES:
            raise ControlError(400, "sign_type must be MD5 or HMAC-SHA256")
        order = self.order(p["mch_id"], p["out_trade_no"])
        return {"body": self.sim.payment_notification(order, p.get("fields"), p.get("sign_type"),
                                                      bool(p.get("include_sign_type")))}

    def c_refund_state(self, p, _):
        need(p, "mch_id", "out_refund_no", "state")
        if p["state"] not in REFUND_FINAL_STATES:
            raise ControlError(400, "state must be one of %s" % ", ".join(REFUND_FINAL_STATES))
        refund = self.refund(p["mch_id"], p["out_refund_no"])
        self.sim.set_refund_state(refund, p["state"], bool(p.get("notify")))
        return dataclasses.asdict(refund)

    def c_refund_notification(self, p, _):
        need(p, "mch_id", "out_refund_no")
        refund = self.refund(p["mch_id"], p["out_refund_no"])
        return {"body": self.sim.refund_notification(refund, p.get("fields"), p.get("outer"))}

    def c_backdate(self, p, _):
        """An order's creation, or (out_refund_no) a refund's acceptance, which
        dates it in the bills, moved back by seconds."""
        need(p, "mch_id", "seconds")
        if p.get("out_refund_no"):
            thing = self.refund(p["mch_id"], p["out_refund_no"])
        else:
            need(p, "out_trade_no")
            thing = self.order(p["mch_id"], p["out_trade_no"])
        thing.created -= float(p["seconds"])
        return {"created": thing.created}

    def c_bill_tamper(self, p, _):
        """Plant a discrepancy in the bills: {"mch_id", "no" (out_trade_no or
        out_refund_no), "omit": true} leaves it out, {"fee": fen} changes its amount."""
        need(p, "mch_id", "no")
        if not p.get("omit") and not isinstance(p.get("fee"), int):
            raise ControlError(400, "omit or an integer fee is required")
        self.sim.bill_tamper[(str(p["mch_id"]), str(p["no"]))] = {"omit": bool(p.get("omit")), "fee": p.get("fee")}
        return {"planted": len(self.sim.bill_tamper)}

    def c_faults(self, p, _):
        if p.get("mode", "none") == "none":
            self.faults.queue.clear()
        else:
            self.faults.add(p["mode"], int(p.get("count", 1)), float(p.get("delay_ms", 0)), p.get("path"))
        return {"queue": self.faults.queue}

    def c_stats(self, _p, _q):
        return {**self.stats, "notify_deliveries": self.notifier.count,
                "notify_in_flight": len(self.notifier.tasks)}

    def c_stats_reset(self, _p, _q):
        self.reset_stats()
        return {}

    def c_orders(self, _, q):
        need(q, "mch_id", "out_trade_no")
        order = self.order(q["mch_id"], q["out_trade_no"])
        return {**dataclasses.asdict(order), "age_s": time.time() - order.created}

    def c_deliveries(self, _, q):
        if q.get("out_trade_no"):
            kind, ref = "pay", q["out_trade_no"]
        elif q.get("out_refund_no"):
            kind, ref = "refund", q["out_refund_no"]
        else:
            raise ControlError(400, "out_trade_no or out_refund_no is required")
        return [a for a in self.notifier.attempts if a["kind"] == kind and a["ref"] == ref
                and q.get("mch_id") in (None, a["mch_id"])]

    def c_reset(self, _p, _q):
        self.sim.reset()
        self.faults.queue.clear()
        self.sim.v3.faults.clear()
        self.sim.v3.bills.reset()
        self.notifier.cancel_all()
        self.notifier.attempts.clear()
        self.reset_stats()
        return {}


# ------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(description="WeChat Pay merchant API v2 and v3 simulator (loopback HTTPS)")
    ap.add_argument("--dir", required=True, help="certificates, port and pid files")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: an ephemeral port, written to DIR/port")
    ap.add_argument("--notify-scale", type=float, default=0.01, help="multiplies the notification retry schedule")
    ap.add_argument("--latency-ms", type=float, default=0, help="added to every API answer")
    ap.add_argument("--refund-delay-ms", type=float, default=1000, help="until an accepted refund succeeds")
    ap.add_argument("--close-min-age-s", type=float, default=300, help="minimum order age for closeorder")
    ap.add_argument("--merchant", action="append", default=[], metavar="MCH:APPID:KEY")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = ap.parse_args(argv)
    for spec in args.merchant:
        if spec.count(":") < 2:
            ap.error("--merchant wants MCH:APPID:KEY, got %r" % spec)
    return args


async def run(args):
    pki = Pki(args.dir)
    for name in ("port", "pid"):    # never let a waiter read a previous run's port
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pki.path(name))
    log = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))
    notifier = Notifier(args.notify_scale, pki.client_context(), log)
    sim = Sim(args, pki, notifier)
    for spec in args.merchant:
        mch_id, appid, key = spec.split(":", 2)
        sim.add_merchant(Merchant(mch_id, appid, key))
    server = Server(args, sim, notifier, log)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: HttpConnection(server), args.host, args.port,
                                        ssl=pki.server_context(), backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    write_atomically(pki.path("pid"), "%d\n" % os.getpid())
    write_atomically(pki.path("port"), "%d\n" % port)
    host = "[%s]" % args.host if ":" in args.host else args.host
    print("wxsim listening on https://%s:%d" % (host, port), flush=True)

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    listener.close()
    for connection in list(server.live):
        connection.transport.abort()
    notifier.cancel_all()
    for name in ("port", "pid"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pki.path(name))


def main(argv=None):
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
