/*
 * fuzz_bill.c
 *	  Fuzzes the bill parser (wx_bill) as both kinds of bill, and checks
 *	  that feeding the same bytes in two pieces gives the same outcome, the
 *	  same rows and the same error as feeding them at once, and that an
 *	  accepted bill's rows are what its summary counts.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "wx_bill.h"

/* What a parse saw: row count and a checksum of every row's line. */
typedef struct Outcome
{
	bool		ok;
	int64_t		rows;
	uint64_t	digest;
	char		error[512];
} Outcome;

static bool
count_row(const WxBillRow *row, void *arg)
{
	Outcome    *o = arg;

	o->rows++;
	for (size_t i = 0; i < row->line_len; i++)
		o->digest = o->digest * 131 + (unsigned char) row->line[i];
	for (int c = 0; c < WX_BILL_MAX_COLUMNS; c++)
		o->digest = o->digest * 31 + (uint64_t) row->units[c];
	return true;
}

static WxBillParser parser;

/* Parse data as kind, cut into two pieces at split. */
static void
parse(WxBillKind kind, const uint8_t *data, size_t size, size_t split, Outcome *o)
{
	memset(o, 0, sizeof(*o));
	wx_bill_init(&parser, kind, NULL);
	o->ok = wx_bill_feed(&parser, (const char *) data, split, count_row, o) &&
		wx_bill_feed(&parser, (const char *) data + split, size - split, count_row, o) &&
		wx_bill_finish(&parser, count_row, o);
	memcpy(o->error, parser.error, sizeof(o->error));
	if (o->ok)
	{
		FUZZ_ASSERT(parser.stage == WX_BILL_DONE);
		FUZZ_ASSERT(parser.rows == o->rows);
		FUZZ_ASSERT(parser.summary[0].check != 0 || parser.summary[0].stated == o->rows);
	}
	else
		FUZZ_ASSERT(o->error[0] != '\0');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int kind = WX_BILL_TRADE; kind <= WX_BILL_FUND; kind++)
	{
		Outcome		whole,
					pieces;

		parse(kind, data, size, size, &whole);
		parse(kind, data, size, size ? data[0] % (size + 1) : 0, &pieces);
		FUZZ_ASSERT(whole.ok == pieces.ok && whole.rows == pieces.rows && whole.digest == pieces.digest);
		FUZZ_ASSERT(strcmp(whole.error, pieces.error) == 0);
	}
	return 0;
}
