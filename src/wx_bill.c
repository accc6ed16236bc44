/*
 * wx_bill.c
 *	  Parsing WeChat Pay's trade and fund-flow bills (see wx_bill.h).
 *
 * The bill is unsigned input from outside: nothing in it is trusted until
 * it has been checked here.  Every line must be UTF-8 without control
 * characters; the header names the columns (known names in the current
 * and the legacy formats; unknown ones are carried but not read); every
 * detail field starts with one back-tick, which is stripped; a row must
 * have exactly as many fields as the header (a free-text field holding a
 * comma makes more, and no rule says which comma is the separator, so
 * such a row is refused rather than guessed); amounts are exact decimals;
 * the summary's count and sums must equal the rows'.
 */
#include "wx_bill.h"
#include "wx_xml.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BOM "\xEF\xBB\xBF"
#define FULLWIDTH_COLON "\xEF\xBC\x9A"
#define UNITS_PER_YUAN 100000
#define MAX_INTEGER_DIGITS 12	/* keeps every value far below INT64_MAX */

/* A column: its canonical name, its type, and the names headers use. */
typedef struct ColumnSpec
{
	const char *name;
	WxBillType	type;
	const char *headers[3];
} ColumnSpec;

static const ColumnSpec trade_columns[WX_TC_COUNT] = {
	[WX_TC_TRADE_TIME] = {"trade_time", WX_BT_TIME, {"交易时间"}},
	[WX_TC_APPID] = {"appid", WX_BT_TEXT, {"公众账号ID"}},
	[WX_TC_MCH_ID] = {"mch_id", WX_BT_TEXT, {"商户号"}},
	[WX_TC_SUB_MCH_ID] = {"sub_mch_id", WX_BT_TEXT, {"特约商户号", "子商户号"}},
	[WX_TC_DEVICE_INFO] = {"device_info", WX_BT_TEXT, {"设备号"}},
	[WX_TC_TRANSACTION_ID] = {"transaction_id", WX_BT_TEXT, {"微信订单号"}},
	[WX_TC_OUT_TRADE_NO] = {"out_trade_no", WX_BT_TEXT, {"商户订单号"}},
	[WX_TC_OPENID] = {"openid", WX_BT_TEXT, {"用户标识"}},
	[WX_TC_TRADE_TYPE] = {"trade_type", WX_BT_TEXT, {"交易类型"}},
	[WX_TC_TRADE_STATE] = {"trade_state", WX_BT_TEXT, {"交易状态"}},
	[WX_TC_BANK_TYPE] = {"bank_type", WX_BT_TEXT, {"付款银行"}},
	[WX_TC_FEE_TYPE] = {"fee_type", WX_BT_TEXT, {"货币种类"}},
	[WX_TC_SETTLEMENT_FEE] = {"settlement_fee", WX_BT_YUAN, {"应结订单金额", "总金额"}},
	[WX_TC_COUPON_FEE] = {"coupon_fee", WX_BT_YUAN, {"代金券金额", "代金券或立减优惠金额"}},
	[WX_TC_REFUND_APPLIED_AT] = {"refund_applied_at", WX_BT_TIME, {"退款申请时间"}},
	[WX_TC_REFUND_SUCCESS_AT] = {"refund_success_at", WX_BT_TIME, {"退款成功时间"}},
	[WX_TC_REFUND_ID] = {"refund_id", WX_BT_TEXT, {"微信退款单号"}},
	[WX_TC_OUT_REFUND_NO] = {"out_refund_no", WX_BT_TEXT, {"商户退款单号"}},
	[WX_TC_REFUND_FEE] = {"refund_fee", WX_BT_YUAN, {"退款金额"}},
	[WX_TC_COUPON_REFUND_FEE] = {"coupon_refund_fee", WX_BT_YUAN, {"充值券退款金额", "代金券或立减优惠退款金额"}},
	[WX_TC_REFUND_TYPE] = {"refund_type", WX_BT_TEXT, {"退款类型"}},
	[WX_TC_REFUND_STATUS] = {"refund_status", WX_BT_TEXT, {"退款状态"}},
	[WX_TC_BODY] = {"body", WX_BT_TEXT, {"商品名称"}},
	[WX_TC_ATTACH] = {"attach", WX_BT_TEXT, {"商户数据包"}},
	[WX_TC_SERVICE_FEE] = {"service_fee", WX_BT_YUAN5, {"手续费", "返还手续费"}},
	[WX_TC_RATE] = {"rate", WX_BT_TEXT, {"费率"}},
	[WX_TC_TOTAL_FEE] = {"total_fee", WX_BT_YUAN, {"订单金额"}},
	[WX_TC_REFUND_REQUEST_FEE] = {"refund_request_fee", WX_BT_YUAN, {"申请退款金额"}},
	[WX_TC_RATE_NOTE] = {"rate_note", WX_BT_TEXT, {"费率备注"}},
};

static const ColumnSpec fund_columns[WX_FC_COUNT] = {
	[WX_FC_BOOKED_AT] = {"booked_at", WX_BT_TIME, {"记账时间"}},
	[WX_FC_BIZ_TRANSACTION_ID] = {"biz_transaction_id", WX_BT_TEXT, {"微信支付业务单号"}},
	[WX_FC_FLOW_ID] = {"flow_id", WX_BT_TEXT, {"资金流水单号"}},
	[WX_FC_BIZ_NAME] = {"biz_name", WX_BT_TEXT, {"业务名称"}},
	[WX_FC_BIZ_TYPE] = {"biz_type", WX_BT_TEXT, {"业务类型"}},
	[WX_FC_DIRECTION] = {"direction", WX_BT_TEXT, {"收支类型"}},
	[WX_FC_AMOUNT] = {"amount", WX_BT_YUAN, {"收支金额（元）", "收支金额(元)"}},
	[WX_FC_BALANCE] = {"balance", WX_BT_YUAN, {"账户结余（元）", "账户结余(元)"}},
	[WX_FC_APPLICANT] = {"applicant", WX_BT_TEXT, {"资金变更提交申请人"}},
	[WX_FC_REMARK] = {"remark", WX_BT_ESCAPED, {"备注"}},
	[WX_FC_VOUCHER_NO] = {"voucher_no", WX_BT_ESCAPED, {"业务凭证号"}},
};

/* Which rows a summary column counts or sums. */
typedef enum RowSet
{
	ALL_ROWS,
	INCOMING_ROWS,				/* not outgoing */
	OUTGOING_ROWS
} RowSet;

/* A summary column: a count (column -1) or a sum of a column, over rows. */
typedef struct SummarySpec
{
	const char *name;
	int			column;
	RowSet		rows;
	const char *headers[2];
} SummarySpec;

static const SummarySpec trade_summary[] = {
	{"count", -1, ALL_ROWS, {"总交易单数"}},
	{"settlement_fee", WX_TC_SETTLEMENT_FEE, ALL_ROWS, {"应结订单总金额", "总交易额"}},
	{"refund_fee", WX_TC_REFUND_FEE, ALL_ROWS, {"退款总金额", "总退款金额"}},
	{"coupon_refund_fee", WX_TC_COUPON_REFUND_FEE, ALL_ROWS, {"充值券退款总金额", "总代金券或立减优惠退款金额"}},
	{"service_fee", WX_TC_SERVICE_FEE, ALL_ROWS, {"手续费总金额", "返还手续费总金额"}},
	{"total_fee", WX_TC_TOTAL_FEE, ALL_ROWS, {"订单总金额"}},
	{"refund_request_fee", WX_TC_REFUND_REQUEST_FEE, ALL_ROWS, {"申请退款总金额"}},
};

static const SummarySpec fund_summary[] = {
	{"count", -1, ALL_ROWS, {"资金流水总笔数"}},
	{"income_count", -1, INCOMING_ROWS, {"收入笔数"}},
	{"income", WX_FC_AMOUNT, INCOMING_ROWS, {"收入金额"}},
	{"expense_count", -1, OUTGOING_ROWS, {"支出笔数"}},
	{"expense", WX_FC_AMOUNT, OUTGOING_ROWS, {"支出金额"}},
};

/* The column table of a kind. */
static const ColumnSpec *
columns_of(WxBillKind kind, int *n)
{
	*n = kind == WX_BILL_TRADE ? WX_TC_COUNT : WX_FC_COUNT;
	return kind == WX_BILL_TRADE ? trade_columns : fund_columns;
}

/* The summary table of a kind. */
static const SummarySpec *
summary_of(WxBillKind kind, int *n)
{
	if (kind == WX_BILL_TRADE)
	{
		*n = (int) (sizeof(trade_summary) / sizeof(trade_summary[0]));
		return trade_summary;
	}
	*n = (int) (sizeof(fund_summary) / sizeof(fund_summary[0]));
	return fund_summary;
}

const char *
wx_bill_column_name(WxBillKind kind, int column)
{
	int			n;

	return columns_of(kind, &n)[column].name;
}

WxBillType
wx_bill_column_type(WxBillKind kind, int column)
{
	int			n;

	return columns_of(kind, &n)[column].type;
}

int
wx_bill_column_count(WxBillKind kind)
{
	int			n;

	columns_of(kind, &n);
	return n;
}

const char *
wx_bill_summary_name(WxBillKind kind, int check)
{
	int			n;

	return summary_of(kind, &n)[check].name;
}

bool
wx_bill_summary_is_count(WxBillKind kind, int check)
{
	int			n;

	return summary_of(kind, &n)[check].column < 0;
}

/* Record an error (printf-style) and return false. */
static bool
bill_error(WxBillParser *p, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static bool
bill_error(WxBillParser *p, const char *fmt,...)
{
	va_list		ap;
	/* Before the first line (an empty file) there is no line to name. */
	int			n = p->line_no > 0 ? snprintf(p->error, sizeof(p->error), "line %ld: ", p->line_no) : 0;

	va_start(ap, fmt);
	vsnprintf(p->error + n, sizeof(p->error) - n, fmt, ap);
	va_end(ap);
	return false;
}

void
wx_bill_init(WxBillParser *p, WxBillKind kind, const char *mch_id)
{
	memset(p, 0, offsetof(WxBillParser, pending));
	p->kind = kind;
	p->mch_id = mch_id;
	p->stage = WX_BILL_WANT_HEADER;
	p->at_start = true;
	for (int i = 0; i < WX_BILL_MAX_COLUMNS; i++)
		p->field_of_col[i] = -1;
}

/*
 * Whether s is UTF-8 (wx_xml.c's check: shortest forms, no surrogates)
 * without control characters; a tab is allowed.
 */
static bool
clean_utf8(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			return false;
	return wx_utf8_invalid_at((const char *) s, len, false) < 0;
}

/* Split line at commas into fields; the count, or -1 if over max. */
static int
split_fields(const char *line, size_t len, WxBillField *fields, int max)
{
	int			n = 0;
	size_t		start = 0;

	for (size_t i = 0; i <= len; i++)
	{
		if (i < len && line[i] != ',')
			continue;
		if (n == max)
			return -1;
		fields[n].s = line + start;
		fields[n].len = i - start;
		n++;
		start = i + 1;
	}
	return n;
}

/* Strip the one back-tick every field of a detail or summary line has. */
static bool
strip_backticks(WxBillParser *p, WxBillField *fields, int n)
{
	for (int i = 0; i < n; i++)
	{
		if (fields[i].len == 0 || fields[i].s[0] != '`')
			return bill_error(p, "field %d does not start with a back-tick", i + 1);
		fields[i].s++;
		fields[i].len--;
	}
	return true;
}

/* Whether field is exactly the NUL-terminated word. */
static bool
field_is(const WxBillField *field, const char *word)
{
	return field->s != NULL && field->len == strlen(word) && memcmp(field->s, word, field->len) == 0;
}

/* The header line: which column each field is. */
static bool
read_header(WxBillParser *p, const char *line, size_t len)
{
	WxBillField names[WX_BILL_MAX_FIELDS];
	int			ncolumns;
	const ColumnSpec *spec = columns_of(p->kind, &ncolumns);
	int			n = split_fields(line, len, names, WX_BILL_MAX_FIELDS);

	if (len == 0)
		return bill_error(p, "the bill is empty (no header line)");
	if (line[0] == '`')
		return bill_error(p, "the bill starts with a data row, not its header line");
	if (n < 0)
		return bill_error(p, "the header has more than %d columns", WX_BILL_MAX_FIELDS);
	p->ncols = n;
	for (int f = 0; f < n; f++)
	{
		p->col_of_field[f] = -1;
		if (names[f].len == 0)
			return bill_error(p, "header column %d has no name", f + 1);
		for (int c = 0; c < ncolumns; c++)
			for (int h = 0; h < 3 && spec[c].headers[h] != NULL; h++)
				if (field_is(&names[f], spec[c].headers[h]))
				{
					if (p->field_of_col[c] >= 0)
						return bill_error(p, "the header names column %s twice", spec[c].headers[h]);
					p->field_of_col[c] = f;
					p->col_of_field[f] = c;
				}
	}
	return true;
}

/* The columns every bill of the kind needs, named as the header would. */
static bool
check_required(WxBillParser *p)
{
	static const int trade_required[] = {WX_TC_TRADE_TIME, WX_TC_MCH_ID, WX_TC_TRANSACTION_ID,
	WX_TC_OUT_TRADE_NO, WX_TC_TRADE_STATE, WX_TC_SETTLEMENT_FEE};
	static const int fund_required[] = {WX_FC_BOOKED_AT, WX_FC_FLOW_ID, WX_FC_DIRECTION, WX_FC_AMOUNT};
	const int  *required = p->kind == WX_BILL_TRADE ? trade_required : fund_required;
	size_t		n = p->kind == WX_BILL_TRADE ? sizeof(trade_required) / sizeof(int) : sizeof(fund_required) / sizeof(int);
	int			ncolumns;
	const ColumnSpec *spec = columns_of(p->kind, &ncolumns);

	for (size_t i = 0; i < n; i++)
		if (p->field_of_col[required[i]] < 0)
			return bill_error(p, "the header has no column %s: not a %s bill", spec[required[i]].headers[0],
							  p->kind == WX_BILL_TRADE ? "trade" : "fund-flow");
	return true;
}

/*
 * The bill_type a trade header is of: REFUND (退款申请时间, 29 columns),
 * ALL (refund columns without it: 27, or 24 in the legacy format) or
 * SUCCESS (no refund columns, 20); RECHARGE_REFUND has REFUND's columns.
 */
static const char *
header_bill_type(const WxBillParser *p)
{
	if (p->field_of_col[WX_TC_REFUND_APPLIED_AT] >= 0)
		return "REFUND";
	if (p->field_of_col[WX_TC_OUT_REFUND_NO] >= 0 || p->field_of_col[WX_TC_REFUND_FEE] >= 0)
		return "ALL";
	return "SUCCESS";
}

/* "a" or "an" before a bill_type. */
static const char *
article(const char *bill_type)
{
	return bill_type[0] == 'A' ? "an" : "a";
}

/* The header must be of the bill_type the file is read as. */
static bool
check_bill_type(WxBillParser *p)
{
	const char *found;

	if (p->kind != WX_BILL_TRADE || p->bill_type == NULL)
		return true;
	found = header_bill_type(p);
	if (strcmp(found, strcmp(p->bill_type, "RECHARGE_REFUND") == 0 ? "REFUND" : p->bill_type) == 0)
		return true;
	p->wrong_type = true;
	return bill_error(p, "the header is that of %s %s bill (%d columns, %s), not of %s %s bill",
					  article(found), found, p->ncols,
					  strcmp(found, "REFUND") == 0 ? "with 退款申请时间" :
					  strcmp(found, "ALL") == 0 ? "with refund columns but no 退款申请时间" : "without refund columns",
					  article(p->bill_type), p->bill_type);
}

bool
wx_bill_parse_yuan(const char *s, size_t len, int max_decimals, int64_t *units)
{
	size_t		i = 0;
	int64_t		value = 0;
	int			digits = 0;
	int			decimals = 0;
	bool		negative = false;

	if (len > 0 && s[0] == '-')
		negative = true, i++;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++)
	{
		if (digits == MAX_INTEGER_DIGITS)
			return false;
		value = value * 10 + (s[i] - '0');
	}
	if (digits == 0)
		return false;
	value *= UNITS_PER_YUAN;
	if (i < len && s[i] == '.')
	{
		int64_t		scale = UNITS_PER_YUAN;

		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, decimals++)
		{
			if (decimals == max_decimals)
				return false;
			scale /= 10;
			value += (s[i] - '0') * scale;
		}
		if (decimals == 0)
			return false;
	}
	if (i != len)
		return false;
	*units = negative ? -value : value;
	return true;
}

void
wx_bill_format_yuan(int64_t units, int decimals, char *buf)
{
	uint64_t	magnitude = units < 0 ? (uint64_t) 0 - (uint64_t) units : (uint64_t) units;
	char		fraction[8];
	int			keep = 5;

	snprintf(fraction, sizeof(fraction), "%05llu", (unsigned long long) (magnitude % UNITS_PER_YUAN));
	while (keep > decimals && fraction[keep - 1] == '0')
		keep--;
	snprintf(buf, 32, "%s%llu.%.*s", units < 0 ? "-" : "",
			 (unsigned long long) (magnitude / UNITS_PER_YUAN), keep, fraction);
}

/* n decimal digits at s as a number, or -1. */
static int
digits_at(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* A ':' or a full-width colon at s (within end); its length, or 0. */
static size_t
colon_at(const char *s, const char *end)
{
	if (s < end && *s == ':')
		return 1;
	if (end - s >= 3 && memcmp(s, FULLWIDTH_COLON, 3) == 0)
		return 3;
	return 0;
}

bool
wx_bill_parse_time(const char *s, size_t len, char *out)
{
	static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *start = s;
	const char *end = s + len;
	const char *minutes,
			   *seconds;
	int			year,
				month,
				day,
				hour,
				minute,
				second;
	size_t		c;

	if (len < 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ')
		return false;
	year = digits_at(s, 4);
	month = digits_at(s + 5, 2);
	day = digits_at(s + 8, 2);
	hour = digits_at(s + 11, 2);
	s += 13;
	if ((c = colon_at(s, end)) == 0 || end - (s + c) < 2)
		return false;
	minutes = s + c;
	minute = digits_at(minutes, 2);
	s += c + 2;
	if ((c = colon_at(s, end)) == 0 || end - (s + c) != 2)
		return false;
	seconds = s + c;
	second = digits_at(seconds, 2);
	if (year < 2000 || month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
		(month == 2 && day == 29 && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59)
		return false;
	memcpy(out, start, 13);
	out[13] = ':';
	memcpy(out + 14, minutes, 2);
	out[16] = ':';
	memcpy(out + 17, seconds, 2);
	out[19] = '\0';
	return true;
}

size_t
wx_bill_unescape(const char *s, size_t len, char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '\\' && i + 1 < len && (s[i + 1] == 'r' || s[i + 1] == 'n'))
		{
			out[n++] = s[i + 1] == 'r' ? '\r' : '\n';
			i++;
		}
		else
			out[n++] = s[i];
	}
	return n;
}

const char *
wx_bill_row_time(WxBillKind kind, const WxBillRow *row)
{
	if (kind == WX_BILL_FUND)
		return row->time[WX_FC_BOOKED_AT];
	if (row->outgoing && !row->empty[WX_TC_REFUND_APPLIED_AT])
		return row->time[WX_TC_REFUND_APPLIED_AT];
	return row->time[WX_TC_TRADE_TIME];
}

/* Add v to *sum; false on overflow. */
static bool
add_checked(int64_t *sum, int64_t v)
{
	return !__builtin_add_overflow(*sum, v, sum);
}

/* Validate one field of a row by its column's type into row. */
static bool
read_field(WxBillParser *p, WxBillRow *row, int column, const ColumnSpec *spec)
{
	const WxBillField *f = &row->field[column];
	WxBillType	type = spec->type;

	row->empty[column] = f->len == 0;
	if (f->len == 0)
		return true;
	if (type == WX_BT_TIME && !wx_bill_parse_time(f->s, f->len, row->time[column]))
		return bill_error(p, "%s is not a time: \"%.*s\"", spec->headers[0], (int) f->len, f->s);
	if ((type == WX_BT_YUAN || type == WX_BT_YUAN5) &&
		!wx_bill_parse_yuan(f->s, f->len, type == WX_BT_YUAN ? 2 : 5, &row->units[column]))
		return bill_error(p, "%s is not an amount in yuan: \"%.*s\"", spec->headers[0], (int) f->len, f->s);
	return true;
}

/* A field that must be there and not empty. */
static bool
require_field(WxBillParser *p, const WxBillRow *row, int column)
{
	int			n;

	if (row->field[column].s == NULL || row->field[column].len == 0)
		return bill_error(p, "the row has no %s", columns_of(p->kind, &n)[column].headers[0]);
	return true;
}

/* What a trade row must say, and whether it is a refund. */
static bool
check_trade_row(WxBillParser *p, WxBillRow *row)
{
	const WxBillField *mch = &row->field[WX_TC_MCH_ID];

	if (!require_field(p, row, WX_TC_TRADE_TIME) || !require_field(p, row, WX_TC_OUT_TRADE_NO) ||
		!require_field(p, row, WX_TC_TRANSACTION_ID) || !require_field(p, row, WX_TC_TRADE_STATE))
		return false;
	if (p->mch_id != NULL && !field_is(mch, p->mch_id))
		return bill_error(p, "the row is for merchant \"%.*s\", not %s", (int) mch->len, mch->s, p->mch_id);
	row->outgoing = field_is(&row->field[WX_TC_TRADE_STATE], "REFUND");
	if (p->bill_type != NULL && strcmp(header_bill_type(p), row->outgoing ? "SUCCESS" : "REFUND") == 0)
	{
		p->wrong_type = true;
		return bill_error(p, "a %s row in %s %s bill", row->outgoing ? "refund" : "payment",
						  article(p->bill_type), p->bill_type);
	}
	if (row->outgoing && (!require_field(p, row, WX_TC_OUT_REFUND_NO) || !require_field(p, row, WX_TC_REFUND_FEE)))
		return false;
	return true;
}

/* What a fund-flow row must say, and whether it is an expense. */
static bool
check_fund_row(WxBillParser *p, WxBillRow *row)
{
	const WxBillField *dir = &row->field[WX_FC_DIRECTION];

	if (!require_field(p, row, WX_FC_BOOKED_AT) || !require_field(p, row, WX_FC_FLOW_ID) ||
		!require_field(p, row, WX_FC_AMOUNT))
		return false;
	if (!field_is(dir, "收入") && !field_is(dir, "支出"))
		return bill_error(p, "收支类型 is neither 收入 nor 支出: \"%.*s\"", (int) dir->len, dir->s);
	row->outgoing = field_is(dir, "支出");
	return true;
}

/* Add a row to the totals the summary is checked against. */
static bool
add_to_totals(WxBillParser *p, const WxBillRow *row)
{
	p->rows++;
	if (row->outgoing)
		p->outgoing_rows++;
	for (int c = 0; c < WX_BILL_MAX_COLUMNS; c++)
		if (!add_checked(&p->sum[c], row->units[c]) ||
			(row->outgoing && !add_checked(&p->outgoing_sum[c], row->units[c])))
			return bill_error(p, "the amounts add up to more than can be checked");
	return true;
}

/* A detail row: split, validated, counted, handed to on_row. */
static bool
read_row(WxBillParser *p, const char *line, size_t len, WxBillRowFn on_row, void *arg)
{
	WxBillField fields[WX_BILL_MAX_FIELDS];
	WxBillRow	row;
	int			ncolumns;
	const ColumnSpec *spec = columns_of(p->kind, &ncolumns);
	int			n = split_fields(line, len, fields, WX_BILL_MAX_FIELDS);

	if (n != p->ncols)
		return bill_error(p, "the row has %s%d fields but the header has %d columns "
						  "(%s): not guessed, the bill is refused",
						  n < 0 ? "more than " : "", n < 0 ? WX_BILL_MAX_FIELDS : n, p->ncols,
						  n < 0 || n > p->ncols ? "a comma inside a field?" : "a field missing: cut or edited?");
	if (!strip_backticks(p, fields, n))
		return false;
	memset(&row, 0, offsetof(WxBillRow, time));
	row.line_no = p->line_no;
	row.line = line;
	row.line_len = len;
	for (int f = 0; f < n; f++)
		if (p->col_of_field[f] >= 0)
			row.field[p->col_of_field[f]] = fields[f];
	for (int c = 0; c < ncolumns; c++)
		if (!read_field(p, &row, c, &spec[c]))
			return false;
	if (!(p->kind == WX_BILL_TRADE ? check_trade_row(p, &row) : check_fund_row(p, &row)))
		return false;
	if (!add_to_totals(p, &row))
		return false;
	if (!on_row(&row, arg))
	{
		p->stopped = true;
		return bill_error(p, "stopped by the caller");
	}
	return true;
}

/* The summary header: which check each field is. */
static bool
read_summary_header(WxBillParser *p, const char *line, size_t len)
{
	WxBillField names[WX_BILL_MAX_FIELDS];
	int			nspecs;
	const SummarySpec *specs = summary_of(p->kind, &nspecs);
	int			n = split_fields(line, len, names, WX_BILL_MAX_FIELDS);
	bool		has_count = false;

	if (n < 0)
		return bill_error(p, "the summary header has more than %d columns", WX_BILL_MAX_FIELDS);
	p->nsummary = n;
	for (int f = 0; f < n; f++)
	{
		int			check = -1;

		for (int s = 0; s < nspecs && check < 0; s++)
			for (int h = 0; h < 2 && specs[s].headers[h] != NULL; h++)
				if (field_is(&names[f], specs[s].headers[h]))
					check = s;
		if (check < 0)
			return bill_error(p, "summary column \"%.*s\" is unknown, so it cannot be checked",
							  (int) names[f].len, names[f].s);
		for (int g = 0; g < f; g++)
			if (p->summary[g].check == check)
				return bill_error(p, "the summary names \"%.*s\" twice", (int) names[f].len, names[f].s);
		if (specs[check].column >= 0 && p->field_of_col[specs[check].column] < 0)
			return bill_error(p, "the summary has \"%.*s\" but the rows have no column to add up for it",
							  (int) names[f].len, names[f].s);
		has_count |= check == 0;
		p->summary[f].check = check;
	}
	if (!has_count)
		return bill_error(p, "the summary has no %s", specs[0].headers[0]);
	return true;
}

/* The summary values, each a count or an amount. */
static bool
read_summary_values(WxBillParser *p, const char *line, size_t len)
{
	WxBillField values[WX_BILL_MAX_FIELDS];
	int			nspecs;
	const SummarySpec *specs = summary_of(p->kind, &nspecs);
	int			n = split_fields(line, len, values, WX_BILL_MAX_FIELDS);

	if (n != p->nsummary)
		return bill_error(p, "the summary has %d values for %d columns", n, p->nsummary);
	if (!strip_backticks(p, values, n))
		return false;
	for (int f = 0; f < n; f++)
	{
		const SummarySpec *spec = &specs[p->summary[f].check];
		int64_t		v;

		if (!wx_bill_parse_yuan(values[f].s, values[f].len, 5, &v) ||
			(spec->column < 0 && (v < 0 || v % UNITS_PER_YUAN != 0)))
			return bill_error(p, "summary %s is not %s: \"%.*s\"", spec->headers[0],
							  spec->column < 0 ? "a count" : "an amount", (int) values[f].len, values[f].s);
		p->summary[f].stated = spec->column < 0 ? v / UNITS_PER_YUAN : v;
	}
	return true;
}

/* One line, without its line end, at the parser's stage. */
static bool
read_line(WxBillParser *p, const char *line, size_t len, WxBillRowFn on_row, void *arg)
{
	p->line_no++;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (p->line_no == 1 && len >= 3 && memcmp(line, BOM, 3) == 0)
		line += 3, len -= 3;
	if (!clean_utf8((const unsigned char *) line, len))
		return bill_error(p, "not UTF-8 text, or a control character");
	switch (p->stage)
	{
		case WX_BILL_WANT_HEADER:
			p->stage = WX_BILL_IN_ROWS;
			return read_header(p, line, len) && check_required(p) && check_bill_type(p);
		case WX_BILL_IN_ROWS:
			if (len == 0)
				return bill_error(p, "an empty line among the rows");
			if (line[0] == '`')
				return read_row(p, line, len, on_row, arg);
			p->stage = WX_BILL_WANT_SUMMARY;
			return read_summary_header(p, line, len);
		case WX_BILL_WANT_SUMMARY:
			p->stage = WX_BILL_DONE;
			return read_summary_values(p, line, len);
		case WX_BILL_DONE:
			if (len != 0)
				return bill_error(p, "a line after the summary");
			return true;
	}
	return false;
}

bool
wx_bill_feed(WxBillParser *p, const char *data, size_t len, WxBillRowFn on_row, void *arg)
{
	const char *end = data + len;

	if (p->error[0] != '\0')
		return false;
	while (data < end)
	{
		const char *nl = memchr(data, '\n', end - data);
		size_t		part = (nl ? nl : end) - data;

		if (p->pending_len + part > WX_BILL_MAX_LINE)
		{
			p->line_no++;
			return bill_error(p, "longer than %d bytes", WX_BILL_MAX_LINE);
		}
		if (nl != NULL && p->pending_len == 0)
		{
			if (!read_line(p, data, part, on_row, arg))
				return false;
		}
		else
		{
			memcpy(p->pending + p->pending_len, data, part);
			p->pending_len += part;
			if (nl != NULL)
			{
				size_t		n = p->pending_len;

				p->pending_len = 0;
				if (!read_line(p, p->pending, n, on_row, arg))
					return false;
			}
		}
		data += part + (nl != NULL);
	}
	return true;
}

/* Which rows' totals a summary column is checked against. */
static int64_t
computed_value(const WxBillParser *p, const SummarySpec *spec)
{
	if (spec->column < 0)
		return spec->rows == ALL_ROWS ? p->rows :
			spec->rows == OUTGOING_ROWS ? p->outgoing_rows : p->rows - p->outgoing_rows;
	return spec->rows == ALL_ROWS ? p->sum[spec->column] :
		spec->rows == OUTGOING_ROWS ? p->outgoing_sum[spec->column] :
		p->sum[spec->column] - p->outgoing_sum[spec->column];
}

bool
wx_bill_finish(WxBillParser *p, WxBillRowFn on_row, void *arg)
{
	int			nspecs;
	const SummarySpec *specs = summary_of(p->kind, &nspecs);

	if (p->error[0] != '\0')
		return false;
	if (p->pending_len > 0)
	{
		size_t		n = p->pending_len;

		p->pending_len = 0;
		if (!read_line(p, p->pending, n, on_row, arg))
			return false;
	}
	if (p->stage == WX_BILL_WANT_HEADER)
		return bill_error(p, "the bill is empty");
	if (p->stage != WX_BILL_DONE)
		return bill_error(p, "the bill ends without its summary line: cut short?");
	for (int f = 0; f < p->nsummary; f++)
	{
		const SummarySpec *spec = &specs[p->summary[f].check];
		WxBillSummaryItem *item = &p->summary[f];

		item->computed = computed_value(p, spec);
		if (item->computed == item->stated)
			continue;
		if (spec->column < 0)
			return bill_error(p, "the summary says %s %lld but the bill has %lld such rows",
							  spec->headers[0], (long long) item->stated, (long long) item->computed);
		else
		{
			char		stated[32],
						computed[32];

			wx_bill_format_yuan(item->stated, 2, stated);
			wx_bill_format_yuan(item->computed, 2, computed);
			return bill_error(p, "the summary says %s %s but the rows add up to %s",
							  spec->headers[0], stated, computed);
		}
	}
	return true;
}
