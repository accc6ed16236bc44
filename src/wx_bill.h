/*
 * wx_bill.h
 *	  WeChat Pay's daily bill files (v2 downloadbill and downloadfundflow),
 *	  parsed without PostgreSQL.
 *
 * A bill is: a header line of column names, detail rows whose every field
 * starts with a back-tick, a summary header and one line of summary
 * values (API v3 reference §9.2).  The parser is fed the file in chunks of
 * any size and calls back once per detail row, so a bill of any length is
 * read in bounded memory.  Columns are found by header name (current and
 * legacy formats); every field is validated: times (Beijing time, ASCII or
 * full-width colons), amounts parsed exactly as decimal yuan into integer
 * units of 0.00001 yuan (never floating point), a row with more fields
 * than its header is refused, not guessed.  At the end the summary line is
 * checked against the rows: the count and every sum.
 */
#ifndef WX_BILL_H
#define WX_BILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A line longer than this is refused (a real row is under 1 kB). */
#define WX_BILL_MAX_LINE 16384
#define WX_BILL_MAX_FIELDS 64

/* Amounts are held in units of 0.00001 yuan (手续费 has five decimals). */
#define WX_BILL_UNITS_PER_FEN 1000

typedef enum WxBillKind
{
	WX_BILL_TRADE,				/* downloadbill: payments and refunds */
	WX_BILL_FUND				/* downloadfundflow: account movements */
} WxBillKind;

/* What a column holds, and so how it is validated. */
typedef enum WxBillType
{
	WX_BT_TEXT,
	WX_BT_TIME,					/* yyyy-MM-dd HH:mm:ss, Beijing time */
	WX_BT_YUAN,					/* decimal yuan, at most two decimals */
	WX_BT_YUAN5,				/* decimal yuan, at most five decimals */
	WX_BT_ESCAPED				/* fund-flow text with \r and \n escapes */
} WxBillType;

/* The columns of a trade bill, whatever the header calls them. */
typedef enum WxTradeColumn
{
	WX_TC_TRADE_TIME,
	WX_TC_APPID,
	WX_TC_MCH_ID,
	WX_TC_SUB_MCH_ID,
	WX_TC_DEVICE_INFO,
	WX_TC_TRANSACTION_ID,
	WX_TC_OUT_TRADE_NO,
	WX_TC_OPENID,
	WX_TC_TRADE_TYPE,
	WX_TC_TRADE_STATE,
	WX_TC_BANK_TYPE,
	WX_TC_FEE_TYPE,
	WX_TC_SETTLEMENT_FEE,		/* 应结订单金额; legacy 总金额 */
	WX_TC_COUPON_FEE,
	WX_TC_REFUND_APPLIED_AT,	/* REFUND bills only */
	WX_TC_REFUND_SUCCESS_AT,
	WX_TC_REFUND_ID,
	WX_TC_OUT_REFUND_NO,
	WX_TC_REFUND_FEE,
	WX_TC_COUPON_REFUND_FEE,
	WX_TC_REFUND_TYPE,
	WX_TC_REFUND_STATUS,
	WX_TC_BODY,
	WX_TC_ATTACH,
	WX_TC_SERVICE_FEE,			/* 手续费 (返还手续费 in RECHARGE_REFUND) */
	WX_TC_RATE,
	WX_TC_TOTAL_FEE,			/* 订单金额 */
	WX_TC_REFUND_REQUEST_FEE,
	WX_TC_RATE_NOTE,
	WX_TC_COUNT
} WxTradeColumn;

/* The columns of a fund-flow bill. */
typedef enum WxFundColumn
{
	WX_FC_BOOKED_AT,
	WX_FC_BIZ_TRANSACTION_ID,
	WX_FC_FLOW_ID,
	WX_FC_BIZ_NAME,
	WX_FC_BIZ_TYPE,
	WX_FC_DIRECTION,			/* 收入 or 支出 */
	WX_FC_AMOUNT,
	WX_FC_BALANCE,
	WX_FC_APPLICANT,
	WX_FC_REMARK,
	WX_FC_VOUCHER_NO,
	WX_FC_COUNT
} WxFundColumn;

#define WX_BILL_MAX_COLUMNS WX_TC_COUNT

/* A field of a row: its bytes without the back-tick, not NUL-terminated. */
typedef struct WxBillField
{
	const char *s;				/* NULL: the header has no such column */
	size_t		len;
} WxBillField;

/* One detail row, valid only during the callback. */
typedef struct WxBillRow
{
	long		line_no;		/* 1-based, in the file */
	const char *line;			/* the raw line, without CR/LF */
	size_t		line_len;
	WxBillField field[WX_BILL_MAX_COLUMNS];
	int64_t		units[WX_BILL_MAX_COLUMNS];	/* amount columns; 0 if empty */
	bool		empty[WX_BILL_MAX_COLUMNS];	/* absent or an empty field */
	char		time[WX_BILL_MAX_COLUMNS][20];	/* time columns, normalised */
	bool		outgoing;		/* trade: a refund row (交易状态 REFUND); fund: 支出 */
} WxBillRow;

/* Called for each detail row; returning false stops the parse. */
typedef bool (*WxBillRowFn) (const WxBillRow *row, void *arg);

typedef enum WxBillStage
{
	WX_BILL_WANT_HEADER,
	WX_BILL_IN_ROWS,
	WX_BILL_WANT_SUMMARY,
	WX_BILL_DONE
} WxBillStage;

/* One column of the summary and what it must equal. */
typedef struct WxBillSummaryItem
{
	int			check;			/* index in the kind's summary table */
	int64_t		stated;			/* units, or a count */
	int64_t		computed;
} WxBillSummaryItem;

typedef struct WxBillParser
{
	WxBillKind	kind;
	const char *mch_id;			/* every row's 商户号 must be this, or NULL */
	const char *bill_type;		/* trade: the bill_type the header must be of
								 * (ALL, SUCCESS, REFUND, RECHARGE_REFUND), or
								 * NULL; set after wx_bill_init */
	bool		wrong_type;		/* refused: the file is of another bill_type */
	WxBillStage stage;
	long		line_no;
	bool		at_start;		/* a BOM may come */
	int			ncols;
	int			col_of_field[WX_BILL_MAX_FIELDS];	/* canonical column, or -1 */
	int			field_of_col[WX_BILL_MAX_COLUMNS];	/* field position, or -1 */
	int			nsummary;
	WxBillSummaryItem summary[WX_BILL_MAX_FIELDS];
	int64_t		rows;			/* detail rows seen */
	int64_t		outgoing_rows;	/* refund rows (fund: 支出 rows) */
	int64_t		sum[WX_BILL_MAX_COLUMNS];	/* over every row */
	int64_t		outgoing_sum[WX_BILL_MAX_COLUMNS];
	bool		stopped;		/* the callback said stop */
	char		error[512];
	size_t		pending_len;	/* a line not yet ended */
	char		pending[WX_BILL_MAX_LINE + 1];
} WxBillParser;

/* Start parsing a bill of kind; rows must be for mch_id when not NULL. */
extern void wx_bill_init(WxBillParser *p, WxBillKind kind, const char *mch_id);

/* Feed the next len bytes; false with p->error when the bill is bad. */
extern bool wx_bill_feed(WxBillParser *p, const char *data, size_t len,
						 WxBillRowFn on_row, void *arg);

/*
 * The end of the file: the last line, then the summary checked against
 * the rows.  False with p->error when it is missing or does not add up.
 */
extern bool wx_bill_finish(WxBillParser *p, WxBillRowFn on_row, void *arg);

/*
 * The time (normalised, Beijing) that puts a row on its bill's day: a
 * fund-flow row's 记账时间; a trade row's 交易时间 (payment success, or in
 * an ALL bill a refund's acceptance), except a refund row of a REFUND
 * bill, dated by its 退款申请时间.
 */
extern const char *wx_bill_row_time(WxBillKind kind, const WxBillRow *row);

/* Names: a canonical column's (English) name, and a summary column's. */
extern const char *wx_bill_column_name(WxBillKind kind, int column);
extern WxBillType wx_bill_column_type(WxBillKind kind, int column);
extern int	wx_bill_column_count(WxBillKind kind);
extern const char *wx_bill_summary_name(WxBillKind kind, int check);
extern bool wx_bill_summary_is_count(WxBillKind kind, int check);

/*
 * Exact decimal yuan (optional '-', digits, optional '.' and at most
 * max_decimals digits) into units of 0.00001 yuan.  False if malformed or
 * out of range.
 */
extern bool wx_bill_parse_yuan(const char *s, size_t len, int max_decimals,
							   int64_t *units);

/* units as yuan with decimals digits (2 or 5); buf holds 32 bytes. */
extern void wx_bill_format_yuan(int64_t units, int decimals, char *buf);

/*
 * A time yyyy-MM-dd HH:mm:ss (':' or the full-width '：') into
 * "yyyy-MM-dd HH:mm:ss" in out (20 bytes); false if malformed.
 */
extern bool wx_bill_parse_time(const char *s, size_t len, char *out);

/* Fund-flow unescaping of \r and \n into out (len bytes suffice). */
extern size_t wx_bill_unescape(const char *s, size_t len, char *out);

#endif							/* WX_BILL_H */
