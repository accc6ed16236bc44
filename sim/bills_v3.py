"""bills_v3: the simulator's API v3 bills (wxpay-v3-api.md §9.6).

GET /v3/bill/tradebill and GET /v3/bill/fundflowbill answer (signed, like
every v3 answer) with hash_type SHA1, the SHA-1 of the uncompressed bill in
hash_value, and a download_url on the host the request came to
(/v3/billdownload/file?token=..., &tartype=gzip for gzip).  The download is
authenticated by the merchant's Authorization like any v3 request and
answered unsigned: the bill bytes (text, or gzip with Content-Type
application/x-gzip).  The files are v2's (bills.py), from the same orders
and refunds.  An empty day is 400 NO_STATEMENT_EXIST; faults (the v3 fault
queue, /_sim/v3/faults): bill_creating (400 STATEMENT_CREATING), bill_sum (a
wrong fee total, hash_value matching), bill_corrupt (the downloaded bytes
differ from what hash_value names; the file still parses),
bill_foreign_host (a download_url on another host), bill_hash_upper
(hash_value in upper-case hex, which the examples never show but nothing
excludes) and bill_expired (the download answers 400 as for a link used too
late).
"""
import datetime
import gzip
import hashlib
import re
import secrets
import time

import bills

BILL_FAULTS = ("bill_creating", "bill_sum", "bill_corrupt", "bill_foreign_host", "bill_hash_upper", "bill_expired")
TRADE_PATH, FUND_PATH, FILE_PATH = "/v3/bill/tradebill", "/v3/bill/fundflowbill", "/v3/billdownload/file"
BILL_TYPES = ("ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND")
ACCOUNT_TYPES = {"BASIC": "Basic", "OPERATION": "Operation", "FEES": "Fees"}
TOKEN_SECONDS = 300          # how long a download_url works (the current page says 5 min)
FOREIGN_BASE = "https://bills.elsewhere.example"


def compact_day(query, error):
    """The query's bill_date (yyyy-MM-dd) as bills.py's yyyyMMdd."""
    day = query.get("bill_date", "")
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", day):
            raise ValueError
        return datetime.date.fromisoformat(day).strftime("%Y%m%d")
    except ValueError:
        raise error(400, "INVALID_REQUEST", "bill_date must be a day as yyyy-MM-dd") from None


def corrupt(text):
    """The bill with the first lower-case ASCII letter of its first detail
    line upper-cased: still a bill the parser accepts, another SHA-1."""
    head, sep, rest = text.partition("\r\n")
    for i, c in enumerate(rest):
        if "a" <= c <= "z":
            return head + sep + rest[:i] + c.upper() + rest[i + 1:]
    return text + " "


class Bills:
    """The v3 bills of the simulator's V3 (wxsim_v3.py): offered files by token."""

    def __init__(self, v3):
        self.v3 = v3
        self.files = {}            # token -> (mch_id, text, gzipped, offered_at)

    def reset(self):
        self.files.clear()

    def gzipped(self, query, error):
        if query.get("tar_type") not in (None, "GZIP"):
            raise error(400, "PARAM_ERROR", "tar_type must be GZIP or absent")
        return query.get("tar_type") == "GZIP"

    def offer(self, merchant, text, gzipped, host, fault_path):
        """The answer naming the file: its SHA-1 and a one-use download_url."""
        token = secrets.token_urlsafe(24)
        self.files[token] = (merchant.mch_id, text, gzipped, time.time())
        base = FOREIGN_BASE if self.v3.take_fault(fault_path, ("bill_foreign_host",)) else "https://" + host
        digest = hashlib.sha1(text.encode()).hexdigest()
        if self.v3.take_fault(fault_path, ("bill_hash_upper",)):
            digest = digest.upper()
        return 200, {"hash_type": "SHA1", "hash_value": digest,
                     "download_url": "%s%s?token=%s%s" % (base, FILE_PATH, token, "&tartype=gzip" if gzipped else "")}

    def tradebill(self, merchant, query, host, error):
        bill_type = query.get("bill_type", "ALL")
        if bill_type not in BILL_TYPES:
            raise error(400, "PARAM_ERROR", "bill_type must be one of %s" % ", ".join(BILL_TYPES))

        def make(day, corrupt_sum):
            if bill_type == "RECHARGE_REFUND":
                return None
            return bills.trade_bill(self.v3.sim, merchant, day, bill_type, corrupt_sum)
        return self.bill(TRADE_PATH, merchant, query, host, error, make)

    def fundflowbill(self, merchant, query, host, error):
        account = query.get("account_type", "BASIC")
        if account not in ACCOUNT_TYPES:
            raise error(400, "PARAM_ERROR", "account_type must be BASIC, OPERATION or FEES")

        def make(day, corrupt_sum):
            return bills.fund_bill(self.v3.sim, merchant, day, ACCOUNT_TYPES[account], corrupt_sum)
        return self.bill(FUND_PATH, merchant, query, host, error, make)

    def bill(self, path, merchant, query, host, error, make):
        """Either bill request: its day and tar_type checked, its faults, then
        the file make(yyyyMMdd, corrupt_sum) gives (None: there is none) offered."""
        day = compact_day(query, error)
        gzipped = self.gzipped(query, error)
        if self.v3.take_fault(path, ("bill_creating",)):
            raise error(400, "STATEMENT_CREATING", "账单生成中，请稍后再试")
        text = make(day, self.v3.take_fault(path, ("bill_sum",)) is not None)
        if text is None:
            raise error(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        return self.offer(merchant, text, gzipped, host, path)

    def download(self, merchant, query, error):
        """(bytes, content type) of an offered file, to the merchant it was offered to."""
        offered = self.files.pop(query.get("token", ""), None)
        expired = self.v3.take_fault(FILE_PATH, ("bill_expired",)) is not None
        if expired or offered is None or offered[0] != merchant.mch_id or time.time() - offered[3] > TOKEN_SECONDS:
            raise error(400, "INVALID_REQUEST", "下载链接已失效 (no such token, another merchant's, or expired)")
        _, text, gzipped, _ = offered
        if self.v3.take_fault(FILE_PATH, ("bill_corrupt",)):
            text = corrupt(text)
        data = text.encode()
        if gzipped:
            return gzip.compress(data, mtime=0), "application/x-gzip"
        return data, "text/plain; charset=utf-8"
