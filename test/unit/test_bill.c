/*
 * test_bill.c
 *	  Unit tests of the bill parser (wx_bill): the real file's shape (BOM,
 *	  CRLF, back-ticks, "45.0" counts), the 27/20/29-column and legacy
 *	  24-column trade formats, fund flow, every refusal, chunked feeding,
 *	  exact amounts and times.  Run by "make unit", under ASan and UBSan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wx_bill.h"

static int	passed;
static int	failed;

#define CHECK(cond, what) check((cond), (what), __FILE__, __LINE__)

static void
check(int ok, const char *what, const char *file, int line)
{
	if (ok)
		passed++;
	else
	{
		failed++;
		printf("FAIL %s:%d: %s\n", file, line, what);
	}
}

#define ALL_HEADER "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
#define ALL_REFUND_ROW "`2019-02-19 05:01:46,`wxab8acd895ab1638a,`1921000401,`0,`harryma007,`4200000263201902167700134212,`autotest_20190216081946_82335,`oHkLxtx0vUqe-18p_AXTZ1innxkCY,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50000709672019011908420787722,`REF4200000263201902167700963919,`0.01,`0.00,`ORIGINAL,`SUCCESS,`系统拨测-cheeryin-test_micropay_succ,`,`0.00000,`39.00%,`0.00,`0.01,`"
#define ALL_PAY_ROW "`2019-02-19 01:51:59,`wxab8acd895ab1638a,`1921000401,`0,`,`4200000263201902167700136502,`autotest_20190219015157_13391,`wxab8acd865bb1637e,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`autotest,`,`0.01000,`39.00%,`0.03,`0.00,`"
#define ALL_SUMMARY_HEADER "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
#define ALL_SUMMARY "`2.0,`0.03,`0.01,`0.0,`0.01,`0.03,`0.01"

/* What the callback saw. */
typedef struct Seen
{
	int			rows;
	int			refunds;
	long		last_line;
	int64_t		settlement;
	int64_t		service_fee;
	char		first_time[20];
	char		last_day_time[20];	/* wx_bill_row_time of the last row */
	char		out_refund_no[64];
	char		last_raw[1024];
	int			stop_after;
} Seen;

static bool
on_trade_row(const WxBillRow *row, void *arg)
{
	Seen	   *seen = arg;

	if (seen->rows == 0)
		memcpy(seen->first_time, row->time[WX_TC_TRADE_TIME], 20);
	seen->rows++;
	seen->last_line = row->line_no;
	memcpy(seen->last_day_time, wx_bill_row_time(WX_BILL_TRADE, row), 20);
	seen->settlement += row->units[WX_TC_SETTLEMENT_FEE];
	seen->service_fee += row->units[WX_TC_SERVICE_FEE];
	if (row->outgoing)
	{
		seen->refunds++;
		snprintf(seen->out_refund_no, sizeof(seen->out_refund_no), "%.*s",
				 (int) row->field[WX_TC_OUT_REFUND_NO].len, row->field[WX_TC_OUT_REFUND_NO].s);
	}
	snprintf(seen->last_raw, sizeof(seen->last_raw), "%.*s", (int) row->line_len, row->line);
	return seen->stop_after == 0 || seen->rows < seen->stop_after;
}

/* Parse text fed in pieces of chunk bytes (0: all at once). */
static bool
parse(WxBillKind kind, const char *text, size_t chunk, const char *mch_id, Seen *seen,
	  WxBillParser *p)
{
	size_t		len = strlen(text);

	memset(seen, 0, sizeof(*seen));
	wx_bill_init(p, kind, mch_id);
	if (chunk == 0)
		chunk = len ? len : 1;
	for (size_t off = 0; off < len; off += chunk)
		if (!wx_bill_feed(p, text + off, off + chunk > len ? len - off : chunk, on_trade_row, seen))
			return false;
	return wx_bill_finish(p, on_trade_row, seen);
}

static WxBillParser parser;

/* A bill that must be refused with a message containing what. */
static void
expect_refused(WxBillKind kind, const char *text, const char *what, const char *label)
{
	Seen		seen;
	char		msg[700];

	snprintf(msg, sizeof(msg), "%s refused with \"%s\" (got \"%s\")", label, what, parser.error);
	CHECK(!parse(kind, text, 0, NULL, &seen, &parser) && strstr(parser.error, what) != NULL, msg);
	snprintf(msg, sizeof(msg), "%s refused with \"%s\" (got \"%s\")", label, what, parser.error);
	CHECK(strstr(parser.error, what) != NULL, msg);
}

static void
test_real_shape(void)
{
	static const char bill[] = "\xEF\xBB\xBF" ALL_HEADER "\r\n" ALL_REFUND_ROW "\r\n" ALL_PAY_ROW "\r\n"
		ALL_SUMMARY_HEADER "\r\n" ALL_SUMMARY "\r\n";
	static const size_t chunks[] = {0, 1, 2, 3, 7, 100};
	Seen		seen;

	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
	{
		CHECK(parse(WX_BILL_TRADE, bill, chunks[i], "1921000401", &seen, &parser), "BOM + CRLF bill parses in any chunking");
		CHECK(seen.rows == 2 && seen.refunds == 1, "two rows, one refund");
		CHECK(seen.settlement == 3000 && seen.service_fee == 1000, "amounts in 0.00001 yuan");
		CHECK(strcmp(seen.first_time, "2019-02-19 05:01:46") == 0, "time normalised");
		CHECK(strcmp(seen.last_day_time, "2019-02-19 01:51:59") == 0, "a payment is on the day of its 交易时间");
		CHECK(strcmp(seen.out_refund_no, "REF4200000263201902167700963919") == 0, "refund number without back-tick");
		CHECK(seen.last_line == 3, "line numbers count the header");
		CHECK(strncmp(seen.last_raw, "`2019-02-19 01:51:59,", 21) == 0 &&
			  seen.last_raw[strlen(seen.last_raw) - 1] == '`', "raw line kept without CR");
	}
	CHECK(parser.nsummary == 7 && parser.summary[0].stated == 2, "summary count 2.0 read as 2");
	/* LF only, no BOM, no final line end: the same bill. */
	CHECK(parse(WX_BILL_TRADE, ALL_HEADER "\n" ALL_REFUND_ROW "\n" ALL_PAY_ROW "\n" ALL_SUMMARY_HEADER "\n" ALL_SUMMARY,
				0, NULL, &seen, &parser) && seen.rows == 2, "LF and no final newline");
	/* The caller can stop the parse. */
	memset(&seen, 0, sizeof(seen));
	wx_bill_init(&parser, WX_BILL_TRADE, NULL);
	seen.stop_after = 1;
	CHECK(!wx_bill_feed(&parser, bill, strlen(bill), on_trade_row, &seen) && parser.stopped, "callback stops the parse");
}

static void
test_refusals(void)
{
	static const char head[] = ALL_HEADER "\n" ALL_REFUND_ROW "\n" ALL_PAY_ROW "\n" ALL_SUMMARY_HEADER "\n";

	char		bill[8192];

#define WITH_SUMMARY(s) (snprintf(bill, sizeof(bill), "%s%s\n", head, (s)), bill)
	expect_refused(WX_BILL_TRADE, WITH_SUMMARY("`3.0,`0.03,`0.01,`0.0,`0.01,`0.03,`0.01"), "总交易单数 3 but the bill has 2", "count mismatch");
	expect_refused(WX_BILL_TRADE, WITH_SUMMARY("`2.0,`0.03,`0.01,`0.0,`0.02,`0.03,`0.01"), "手续费总金额 0.02 but the rows add up to 0.01", "fee mismatch");
	expect_refused(WX_BILL_TRADE, WITH_SUMMARY("`2.0,`0.03,`0.02,`0.0,`0.01,`0.03,`0.01"), "退款总金额", "refund sum mismatch");
	expect_refused(WX_BILL_TRADE, WITH_SUMMARY("`2.0,`0.04,`0.01,`0.0,`0.01,`0.03,`0.01"), "应结订单总金额", "settlement mismatch");
	expect_refused(WX_BILL_TRADE, WITH_SUMMARY("`2.5,`0.03,`0.01,`0.0,`0.01,`0.03,`0.01"), "not a count", "fractional count");
	expect_refused(WX_BILL_TRADE, WITH_SUMMARY("`2.0,`0.03,`0.01,`0.0,`0.01,`0.03"), "6 values for 7 columns", "short summary");
	expect_refused(WX_BILL_TRADE, WITH_SUMMARY("2.0,`0.03,`0.01,`0.0,`0.01,`0.03,`0.01"), "back-tick", "summary without back-tick");
#undef WITH_SUMMARY
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" ALL_PAY_ROW "\n", "without its summary", "cut short");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" ALL_PAY_ROW "\n" ALL_SUMMARY_HEADER "\n", "without its summary", "no values");
	expect_refused(WX_BILL_TRADE, "", "empty", "empty");
	expect_refused(WX_BILL_TRADE, "\xEF\xBB\xBF\r\n", "empty", "only a BOM");
	expect_refused(WX_BILL_TRADE, ALL_PAY_ROW "\n", "starts with a data row", "no header");
	expect_refused(WX_BILL_TRADE, "a,b,c\n", "no column 交易时间", "not a bill");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" ALL_PAY_ROW "\n\n" ALL_SUMMARY_HEADER "\n`1.0,`0.03,`0,`0,`0.01,`0.03,`0\n",
				   "empty line among the rows", "blank line");
	/* A comma in 商品名称 makes 28 fields: refused, not guessed. */
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o1,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`auto,test,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "28 fields but the header has 27 columns", "comma in a field");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o1,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`auto,`,`0.01000,`39.00%,`0.03,`0.00\n",
				   "26 fields", "short row");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o1,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "", "row without back-tick (taken as a summary header)");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o1,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.031,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "应结订单金额 is not an amount", "three decimals");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o1,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`3e-2,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "is not an amount", "exponent");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-30 01:51:59,`wx1,`1921000401,`0,`,`42001,`o1,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "交易时间 is not a time", "30 February");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000402,`0,`,`42001,`o1,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "", "other merchant (no mch_id given: then summary missing)");
	{
		Seen		seen;

		CHECK(!parse(WX_BILL_TRADE, ALL_HEADER "\n" ALL_PAY_ROW "\n", 0, "1921000402", &seen, &parser) &&
			  strstr(parser.error, "for merchant \"1921000401\", not 1921000402") != NULL, "another merchant's row");
	}
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "no 商户订单号", "empty out_trade_no");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o1,`u,`NATIVE,`REFUND,`OTHERS,`CNY,`0.03,`0.01,`0,`,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "no 商户退款单号", "refund row without out_refund_no");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o\xC3\x28,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "not UTF-8", "bad UTF-8");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" "`2019-02-19 01:51:59,`wx1,`1921000401,`0,`,`42001,`o\x01,`u,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.03,`0.01,`0,`0,`0.00,`0.00,`,`,`a,`,`0.01000,`39.00%,`0.03,`0.00,`\n",
				   "control character", "control character");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" ALL_PAY_ROW "\n" ALL_SUMMARY_HEADER ",合计\n`1.0,`0.03,`0,`0,`0.01,`0.03,`0,`1\n",
				   "\"合计\" is unknown", "unknown summary column");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" ALL_PAY_ROW "\n应结订单总金额\n`0.03\n", "no 总交易单数", "summary without count");
	expect_refused(WX_BILL_TRADE, ALL_HEADER "\n" ALL_PAY_ROW "\n" ALL_SUMMARY_HEADER "\n`1.0,`0.03,`0,`0,`0.01,`0.03,`0\nmore\n",
				   "a line after the summary", "trailing garbage");
	expect_refused(WX_BILL_TRADE, "交易时间,交易时间,商户号\n", "twice", "duplicate header");
	{
		char	   *huge = malloc(WX_BILL_MAX_LINE + 100);

		memset(huge, 'a', WX_BILL_MAX_LINE + 99);
		huge[WX_BILL_MAX_LINE + 99] = '\0';
		expect_refused(WX_BILL_TRADE, huge, "longer than", "huge line");
		free(huge);
	}
}

static void
test_other_formats(void)
{
	Seen		seen;

	/* SUCCESS: 20 columns, the official 4-column summary. */
	CHECK(parse(WX_BILL_TRADE,
				"交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注\r\n"
				"`2026-11-30 23:59:59,`wx1,`1900000109,`0,`,`4200001,`o-2359,`oU,`APP,`SUCCESS,`CMB_CREDIT,`CNY,`1.00,`0.00,`商品,`,`0.00600,`0.60%,`1.00,`\r\n"
				"总交易单数,应结订单总金额,手续费总金额,订单总金额\r\n`1,`1.00,`0.00600,`1.00\r\n",
				0, "1900000109", &seen, &parser) && seen.rows == 1 && seen.service_fee == 600,
		  "SUCCESS bill, fee with fractional fen kept exactly");
	/* REFUND: 29 columns, negative fees returned. */
	CHECK(parse(WX_BILL_TRADE,
				"交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n"
				"`2026-11-29 09:00:00,`wx1,`1900000109,`0,`,`4200001,`o1,`oU,`APP,`REFUND,`CMB,`CNY,`0.00,`0.00,`2026-11-30 10:00:00,`,`5000001,`r1,`0.50,`0.00,`ORIGINAL,`PROCESSING,`商品,`,`-0.02000,`0.60%,`0.00,`0.50,`\n"
				"总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n`1.0,`0.00,`0.50,`0.00,`-0.02000,`0.00,`0.50\n",
				0, NULL, &seen, &parser) && seen.refunds == 1 && seen.service_fee == -2000,
		  "REFUND bill, empty success time, negative fee");
	CHECK(strcmp(seen.last_day_time, "2026-11-30 10:00:00") == 0, "a REFUND bill's refund is on the day it was applied for");
	/* Legacy 24 columns with full-width colons. */
	CHECK(parse(WX_BILL_TRADE,
				"交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率\n"
				"`2014-11-10 16\xEF\xBC\x9A" "33\xEF\xBC\x9A" "45,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1001690740201411100005734289,`1415640626,`085e9858e3ba5186aafcbaed1,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`0.01,`0.0,`0,`0,`0,`0,`,`,`被扫支付测试,`订单额外描述,`0,`0.60%\n"
				"总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额\n`1,`0.01,`0,`0,`0\n",
				0, "10000100", &seen, &parser) && seen.rows == 1 && strcmp(seen.first_time, "2014-11-10 16:33:45") == 0,
		  "legacy 24-column bill with full-width colons");
}

static bool
on_fund_row(const WxBillRow *row, void *arg)
{
	char	   *remark = arg;
	size_t		n = wx_bill_unescape(row->field[WX_FC_REMARK].s, row->field[WX_FC_REMARK].len, remark);

	remark[n] = '\0';
	return true;
}

static void
test_fund_flow(void)
{
	static const char bill[] =
		"\xEF\xBB\xBF记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号\r\n"
		"`2026-11-30 10:00:00,`4200001,`F1,`交易,`交易,`收入,`1.00,`101.00,`system,`line1\\nline2,`V1\r\n"
		"`2026-11-30 11:00:00,`5000001,`F2,`退款,`退款,`支出,`0.50,`100.50,`system,`,`V2\r\n"
		"资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\r\n`2.0,`1.0,`1.00,`1.0,`0.50\r\n";
	char		remark[64];

	wx_bill_init(&parser, WX_BILL_FUND, NULL);
	CHECK(wx_bill_feed(&parser, bill, strlen(bill), on_fund_row, remark) &&
		  wx_bill_finish(&parser, on_fund_row, remark), "fund-flow bill parses");
	CHECK(parser.outgoing_rows == 1 && parser.sum[WX_FC_AMOUNT] == 150000, "income and expense counted");
	wx_bill_init(&parser, WX_BILL_FUND, NULL);
	{
		char		bad[sizeof(bill)];

		memcpy(bad, bill, sizeof(bill));
		memcpy(strstr(bad, "`0.50\r\n"), "`0.60", 5);
		CHECK(wx_bill_feed(&parser, bad, strlen(bad), on_fund_row, remark) &&
			  !wx_bill_finish(&parser, on_fund_row, remark) && strstr(parser.error, "支出金额 0.60") != NULL,
			  "fund-flow expense sum checked");
	}
	wx_bill_init(&parser, WX_BILL_FUND, NULL);
	{
		static const char odd[] = "记账时间,资金流水单号,收支类型,收支金额（元）\n`2026-11-30 10:00:00,`F1,`转入,`1.00\n";

		CHECK(!wx_bill_feed(&parser, odd, strlen(odd), on_fund_row, remark) &&
			  strstr(parser.error, "neither") != NULL, "direction must be 收入 or 支出");
	}
	{
		static const char rows[] = "\n`2026-11-30 10:00:00,`4200001,`F1,`交易,`交易,`收入,`1.00,`101.00,`system,`a\\r\\nb\\\\x,`V1\n";
		char		full[1024];

		snprintf(full, sizeof(full), "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),资金变更提交申请人,备注,业务凭证号%s资金流水总笔数\n`1\n", rows);
		wx_bill_init(&parser, WX_BILL_FUND, NULL);
		CHECK(wx_bill_feed(&parser, full, strlen(full), on_fund_row, remark) &&
			  wx_bill_finish(&parser, on_fund_row, remark) && strcmp(remark, "a\r\nb\\\\x") == 0,
			  "ASCII parentheses accepted; \\r and \\n unescaped, other backslashes kept");
	}
}

static void
test_amounts_and_times(void)
{
	int64_t		u = 0;
	char		buf[32];
	char		t[20];

	CHECK(wx_bill_parse_yuan("0.01", 4, 2, &u) && u == 1000, "0.01 yuan is one fen");
	CHECK(wx_bill_parse_yuan("123456789012.99", 15, 2, &u) && u == 12345678901299000LL, "large amount exact");
	CHECK(wx_bill_parse_yuan("-0.02000", 8, 5, &u) && u == -2000, "negative fee");
	CHECK(wx_bill_parse_yuan("45.0", 4, 5, &u) && u == 4500000, "count as decimal");
	CHECK(wx_bill_parse_yuan("7", 1, 2, &u) && u == 700000, "integer yuan");
	CHECK(!wx_bill_parse_yuan("0.001", 5, 2, &u), "three decimals refused for yuan");
	CHECK(!wx_bill_parse_yuan("1234567890123", 13, 2, &u), "13 integer digits refused");
	CHECK(!wx_bill_parse_yuan("", 0, 2, &u) && !wx_bill_parse_yuan(".5", 2, 2, &u) &&
		  !wx_bill_parse_yuan("1.", 2, 2, &u) && !wx_bill_parse_yuan("+1", 2, 2, &u) &&
		  !wx_bill_parse_yuan("1e5", 3, 2, &u) && !wx_bill_parse_yuan("-", 1, 2, &u) &&
		  !wx_bill_parse_yuan(" 1", 2, 2, &u) && !wx_bill_parse_yuan("1,000", 5, 2, &u) &&
		  !wx_bill_parse_yuan("0.60%", 5, 5, &u), "malformed amounts refused");
	wx_bill_format_yuan(1000, 2, buf);
	CHECK(strcmp(buf, "0.01") == 0, "format 0.01");
	wx_bill_format_yuan(-2000, 2, buf);
	CHECK(strcmp(buf, "-0.02") == 0, "format -0.02");
	wx_bill_format_yuan(600, 2, buf);
	CHECK(strcmp(buf, "0.006") == 0, "format keeps significant decimals");
	CHECK(wx_bill_parse_time("2020-02-29 23:59:59", 19, t) && strcmp(t, "2020-02-29 23:59:59") == 0, "leap day");
	CHECK(!wx_bill_parse_time("2019-02-29 00:00:00", 19, t), "29 February 2019 refused");
	CHECK(!wx_bill_parse_time("2019-01-01 24:00:00", 19, t) && !wx_bill_parse_time("2019-01-01 23:60:00", 19, t) &&
		  !wx_bill_parse_time("2019-13-01 00:00:00", 19, t) && !wx_bill_parse_time("2019-01-01T00:00:00", 19, t) &&
		  !wx_bill_parse_time("2019-01-01 00:00:0", 18, t) && !wx_bill_parse_time("2019-01-01 00:00:000", 20, t),
		  "malformed times refused");
	CHECK(wx_bill_parse_time("2026-12-01 00:00:01", 19, t) && strcmp(t, "2026-12-01 00:00:01") == 0, "just after midnight");
}

/* A bill read as type must be refused as of another bill_type, naming found, or accepted (found NULL). */
static void
expect_type(const char *text, const char *type, const char *found, const char *label)
{
	Seen		seen;
	bool		ok;

	memset(&seen, 0, sizeof(seen));
	wx_bill_init(&parser, WX_BILL_TRADE, NULL);
	parser.bill_type = type;
	ok = wx_bill_feed(&parser, text, strlen(text), on_trade_row, &seen) &&
		wx_bill_finish(&parser, on_trade_row, &seen);
	if (found == NULL)
		CHECK(ok && !parser.wrong_type, label);
	else
		CHECK(!ok && parser.wrong_type && strstr(parser.error, found) != NULL, label);
}

static void
test_bill_types(void)
{
	static const char all[] = ALL_HEADER "\n" ALL_REFUND_ROW "\n" ALL_PAY_ROW "\n" ALL_SUMMARY_HEADER "\n" ALL_SUMMARY "\n";

	expect_type(all, "ALL", NULL, "an ALL bill read as ALL");
	expect_type(all, "REFUND", "that of an ALL bill (27 columns", "an ALL bill read as REFUND");
	expect_type(all, "RECHARGE_REFUND", "not of a RECHARGE_REFUND bill", "an ALL bill read as RECHARGE_REFUND");
	expect_type(all, "SUCCESS", "that of an ALL bill", "an ALL bill read as SUCCESS");
	expect_type("交易时间,商户号,微信订单号,商户订单号,交易状态,应结订单金额\n", "ALL", "that of a SUCCESS bill (6 columns, without refund columns)",
				"a header without refund columns read as ALL");
	expect_type("交易时间,商户号,微信订单号,商户订单号,交易状态,应结订单金额,退款申请时间,商户退款单号,退款金额\n"
				"`2019-02-19 01:51:59,`1921000401,`42,`o1,`SUCCESS,`0.03,`,`,`\n", "REFUND", "a payment row in a REFUND bill",
				"a payment row in a REFUND bill");
}

int
main(void)
{
	test_real_shape();
	test_refusals();
	test_other_formats();
	test_fund_flow();
	test_amounts_and_times();
	test_bill_types();
	printf("bill parser: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
