"""bills: the simulator's daily bills, /pay/downloadbill and /pay/downloadfundflow.

Built from the simulator's own orders and refunds (API v3 reference §9):
a payment is on the bill of the Beijing day of its time_end, a refund on the
day it was accepted.  The files are shaped like the real ones: a UTF-8 BOM,
CRLF line ends, every detail and summary field prefixed with a back-tick,
the summary count written as "3.0"; gzip with tar_type=GZIP.  Unlike the
real service any day's bill is served at once (today's included, so tests
need not wait for tomorrow); "Bill Creating" comes from the bill_creating
fault, a wrong fee total from the bill_sum fault, the day before's bill for
the one asked from the bill_wrong_day fault; /_sim/bill_tamper plants a
discrepancy (a payment or refund left out of the bills, or another amount).  An empty day is
"No Bill Exist" (downloadbill: unsigned return_code FAIL; downloadfundflow:
signed err_code NO_BILL_EXIST).
"""
import datetime
import gzip

CST = datetime.timezone(datetime.timedelta(hours=8))   # bills are in Beijing time
PAID = ("SUCCESS", "REFUND")

BOM = "\ufeff"
CRLF = "\r\n"
RATE = "0.60%"
TRADE_ALL = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
             "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
             "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注").split(",")
TRADE_SUCCESS = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                 "货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注").split(",")
TRADE_REFUND = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                "货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
                "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注").split(",")
SUMMARY_ALL = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额".split(",")
SUMMARY_SUCCESS = "总交易单数,应结订单总金额,手续费总金额,订单总金额".split(",")
FUND = ("记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,"
        "资金变更提交申请人,备注,业务凭证号").split(",")
FUND_SUMMARY = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额".split(",")
ACCOUNT_TYPES = ("Basic", "Operation", "Fees")


def yuan(fen, decimals=2):
    """Integer fen as yuan text, exactly."""
    sign = "-" if fen < 0 else ""
    text = "%s%d.%02d" % (sign, abs(fen) // 100, abs(fen) % 100)
    return text + "0" * (decimals - 2)


def service_fee(fen):
    """0.6% of a payment, rounded half up to the fen."""
    return (fen * 6 + 500) // 1000


def beijing(ts, fmt):
    return datetime.datetime.fromtimestamp(ts, CST).strftime(fmt)


def beijing_day(ts):
    return beijing(ts, "%Y%m%d")


def dashed_time(ts):
    return beijing(ts, "%Y-%m-%d %H:%M:%S")


def payment_time(order):
    t = order.time_end
    return "%s-%s-%s %s:%s:%s" % (t[0:4], t[4:6], t[6:8], t[8:10], t[10:12], t[12:14])


def payment_row(order, merchant):
    fee = order.fee
    values = {"交易时间": payment_time(order), "公众账号ID": merchant.appid, "商户号": merchant.mch_id, "特约商户号": "0",
              "设备号": order.params.get("device_info", ""), "微信订单号": order.transaction_id,
              "商户订单号": order.out_trade_no, "用户标识": order.openid, "交易类型": order.params["trade_type"],
              "交易状态": "SUCCESS", "付款银行": "CMC", "货币种类": "CNY", "应结订单金额": yuan(fee), "代金券金额": "0.00",
              "微信退款单号": "0", "商户退款单号": "0", "退款金额": "0.00", "充值券退款金额": "0.00", "退款类型": "",
              "退款状态": "", "商品名称": order.params.get("body", ""), "商户数据包": order.params.get("attach", ""),
              "手续费": yuan(service_fee(fee), 5), "费率": RATE, "订单金额": yuan(fee), "申请退款金额": "0.00",
              "费率备注": ""}
    return values, fee, 0, service_fee(fee)


def refund_row(refund, order, merchant):
    values = {"交易时间": dashed_time(refund.created), "公众账号ID": merchant.appid, "商户号": merchant.mch_id,
              "特约商户号": "0", "设备号": "", "微信订单号": order.transaction_id, "商户订单号": order.out_trade_no,
              "用户标识": order.openid, "交易类型": order.params["trade_type"], "交易状态": "REFUND", "付款银行": "CMC",
              "货币种类": "CNY", "应结订单金额": "0.00", "代金券金额": "0.00",
              "退款申请时间": dashed_time(refund.created), "退款成功时间": refund.success_time or "",
              "微信退款单号": refund.refund_id, "商户退款单号": refund.out_refund_no, "退款金额": yuan(refund.refund_fee),
              "充值券退款金额": "0.00", "退款类型": "ORIGINAL", "退款状态": refund.state,
              "商品名称": order.params.get("body", ""), "商户数据包": order.params.get("attach", ""),
              "手续费": yuan(0, 5), "费率": RATE, "订单金额": "0.00", "申请退款金额": yuan(refund.refund_fee),
              "费率备注": ""}
    return values, 0, refund.refund_fee, 0


def detail_line(values, header):
    return ",".join("`" + values.get(name, "") for name in header)


def day_of(bill_date):
    try:
        return datetime.datetime.strptime(bill_date, "%Y%m%d").date()
    except ValueError:
        return None


def tamper(sim, mch_id, no, values):
    """A planted discrepancy (/_sim/bill_tamper): None to leave the row out,
    else the row's values with its amounts replaced."""
    planted = sim.bill_tamper.get((mch_id, no))
    if planted is None:
        return values
    if planted.get("omit"):
        return None
    fen = int(planted["fee"])
    for name in ("应结订单金额", "订单金额") if values[3] else ("退款金额", "申请退款金额"):
        values[0][name] = yuan(fen)
    return (values[0], fen if values[1] else 0, fen if values[2] else 0, values[3])


def trade_rows(sim, merchant, bill_date, bill_type):
    """(time, values, settlement fen, refund fen, fee fen) of the day, in time order."""
    rows = []
    if bill_type in ("ALL", "SUCCESS"):
        for order in sim.orders.values():
            if order.mch_id == merchant.mch_id and order.state in PAID and order.time_end[:8] == bill_date:
                row = tamper(sim, order.mch_id, order.out_trade_no, payment_row(order, merchant))
                if row:
                    rows.append((order.time_end,) + row)
    if bill_type in ("ALL", "REFUND"):
        for refund in sim.refunds.values():
            if (refund.mch_id == merchant.mch_id and refund.state != "REFUNDCLOSE"
                    and beijing_day(refund.created) == bill_date):
                order = sim.orders[(refund.mch_id, refund.out_trade_no)]
                row = tamper(sim, refund.mch_id, refund.out_refund_no, refund_row(refund, order, merchant))
                if row:
                    rows.append((beijing(refund.created, "%Y%m%d%H%M%S"),) + row)
    rows.sort(key=lambda r: r[0])
    return rows


def trade_bill(sim, merchant, bill_date, bill_type, corrupt_sum):
    rows = trade_rows(sim, merchant, bill_date, bill_type)
    if not rows:
        return None
    header = {"ALL": TRADE_ALL, "SUCCESS": TRADE_SUCCESS, "REFUND": TRADE_REFUND}[bill_type]
    lines = [",".join(header)] + [detail_line(r[1], header) for r in rows]
    settlement = sum(r[2] for r in rows)
    refunded = sum(r[3] for r in rows)
    fees = sum(r[4] for r in rows) + (1 if corrupt_sum else 0)
    totals = {"总交易单数": "%d.0" % len(rows), "应结订单总金额": yuan(settlement), "退款总金额": yuan(refunded),
              "充值券退款总金额": "0.0", "手续费总金额": yuan(fees, 5), "订单总金额": yuan(settlement),
              "申请退款总金额": yuan(refunded)}
    summary = SUMMARY_SUCCESS if bill_type == "SUCCESS" else SUMMARY_ALL
    lines += [",".join(summary), ",".join("`" + totals[name] for name in summary)]
    return BOM + CRLF.join(lines) + CRLF


def fund_bill(sim, merchant, bill_date, account_type, corrupt_sum):
    if account_type != "Basic":
        return None
    moves = []   # (time, values)
    for order in sim.orders.values():
        if order.mch_id == merchant.mch_id and order.state in PAID and order.time_end[:8] == bill_date:
            moves.append((order.time_end, order.transaction_id, "交易", "收入", order.fee, ""))
    for refund in sim.refunds.values():
        if refund.mch_id == merchant.mch_id and refund.state != "REFUNDCLOSE" and beijing_day(refund.created) == bill_date:
            # A remark with a line break, escaped as the fund-flow format says.
            moves.append((beijing(refund.created, "%Y%m%d%H%M%S"), refund.refund_id, "退款", "支出", refund.refund_fee,
                          "退款 %s\\n原路退回" % refund.out_refund_no))
    if not moves:
        return None
    moves.sort(key=lambda m: m[0])
    balance = 0
    lines = [",".join(FUND)]
    for n, (t, biz_no, name, direction, fen, remark) in enumerate(moves, 1):
        balance += fen if direction == "收入" else -fen
        when = "%s-%s-%s %s:%s:%s" % (t[0:4], t[4:6], t[6:8], t[8:10], t[10:12], t[12:14])
        values = [when, biz_no, "F%s%06d" % (bill_date, n), name, name, direction, yuan(fen), yuan(balance),
                  "system", remark, biz_no]
        lines.append(",".join("`" + v for v in values))
    income = [m[4] for m in moves if m[3] == "收入"]
    expense = [m[4] for m in moves if m[3] == "支出"]
    totals = ["%d.0" % len(moves), "%d.0" % len(income), yuan(sum(income) + (1 if corrupt_sum else 0)),
              "%d.0" % len(expense), yuan(sum(expense))]
    lines += [",".join(FUND_SUMMARY), ",".join("`" + v for v in totals)]
    return BOM + CRLF.join(lines) + CRLF


class BillReply:
    """A bill file (text or gzip), or the XML a failure is."""

    def __init__(self, text=None, gzipped=False, xml=None, fields=None):
        self.text, self.gzipped, self.xml = text, gzipped, xml
        self.fields = fields or {"result_code": "SUCCESS", "return_msg": "bill"}
        self.content_type = "application/x-gzip" if gzipped else "text/plain; charset=utf-8"
        if xml is not None:
            self.content_type = "text/xml; charset=utf-8"

    def render(self, mode=None):
        if self.xml is not None:
            return self.xml.render(mode)
        data = self.text.encode()
        # mtime fixed: the same bill gzips to the same bytes.
        return gzip.compress(data, mtime=0) if self.gzipped else data


def answer(sim, path, params, merchant, sign_type, signed_fields, fault, reply):
    """The answer to a bill request whose signature was verified; fault is
    the injected fault's mode (or None), reply the simulator's Reply."""

    def unsigned_fail(message, error_code=None):
        fields = {"return_code": "FAIL", "return_msg": message}
        if error_code:
            fields["error_code"] = error_code
        return BillReply(xml=reply(fields), fields=fields)

    if params.get("appid") != merchant.appid:
        return unsigned_fail("invalid appid")
    bill_date = params.get("bill_date", "")
    if len(bill_date) != 8 or day_of(bill_date) is None:
        return unsigned_fail("invalid bill_date", "20001")
    if fault == "bill_wrong_day":
        bill_date = (day_of(bill_date) - datetime.timedelta(days=1)).strftime("%Y%m%d")
    gzipped = params.get("tar_type") == "GZIP"
    if params.get("tar_type") not in (None, "", "GZIP"):
        return unsigned_fail("invalid tar_type")
    if path == "/pay/downloadbill":
        bill_type = params.get("bill_type") or "ALL"
        if bill_type not in ("ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND"):
            return unsigned_fail("invalid bill_type", "20001")
        if fault == "bill_creating":
            return unsigned_fail("Bill Creating", "20003")
        if fault == "bill_wrong_type":
            bill_type = "SUCCESS" if bill_type == "ALL" else "ALL"
        text = None if bill_type == "RECHARGE_REFUND" else trade_bill(sim, merchant, bill_date, bill_type,
                                                                      fault == "bill_sum")
        return BillReply(text, gzipped) if text else unsigned_fail("No Bill Exist", "20002")
    # downloadfundflow: HMAC-SHA256 only; errors are signed business errors.
    if sign_type != "HMAC-SHA256":
        return unsigned_fail("sign_type must be HMAC-SHA256")

    def refusal(code, des):
        fields = dict(signed_fields, result_code="FAIL", err_code=code, err_code_des=des)
        return BillReply(xml=reply(fields, merchant.api_key, sign_type), fields=fields)

    if params.get("account_type") not in ACCOUNT_TYPES:
        return refusal("PARAM_ERROR", "account_type must be Basic, Operation or Fees")
    if fault == "bill_creating":
        return refusal("BILL_CREATING", "流水账单创建中")
    text = fund_bill(sim, merchant, bill_date, params["account_type"], fault == "bill_sum")
    return BillReply(text, gzipped) if text else refusal("NO_BILL_EXIST", "账单不存在")
