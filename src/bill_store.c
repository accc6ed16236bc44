/*
 * bill_store.c
 *	  Importing a downloaded bill: the whole file into wxpay.bills and
 *	  wxpay.bill_chunks, its rows into wxpay.bill_rows or
 *	  wxpay.fund_flow_rows, each version once.
 *
 * A large merchant's day is hundreds of megabytes of text, so nothing
 * here holds the file more than once: a gzip body is inflated in 256 kB
 * pieces (twice: first only to hash it, so an identical re-import costs
 * no writes; then to parse and store it), each piece is parsed by the core
 * (wx_bill.c) and stored as it goes.  The text is kept whole but in
 * chunks of about 1 MB cut at line ends (wxpay.bill_text() joins them);
 * the rows go in through COPY's own machinery, fed COPY's binary format
 * in batches.
 * Everything an import writes is in one subtransaction, so a bill the
 * parser refuses (a summary that does not add up, a malformed row) or
 * with a row of another day than its own leaves nothing behind.
 */
#include "postgres.h"

#include <zlib.h>

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/copy.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "bill.h"
#include "spi_util.h"

#define SOURCE_PIECE (256 * 1024)
#define RAW_CHUNK (1024 * 1024)
#define COPY_BATCH (4 * 1024 * 1024)
#define MAX_BILL_SIZE ((size_t) 1024 * 1024 * 1024)

/* The decompressed file, a piece at a time. */
typedef struct BillSource
{
	const char *body;
	size_t		len;
	size_t		pos;			/* of body consumed */
	bool		gzip;
	bool		ended;
	size_t		produced;
	z_stream	zs;
	char	   *piece;
} BillSource;

static void *
z_alloc(void *opaque, unsigned items, unsigned size)
{
	return palloc_extended((Size) items * size, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

static void
z_free(void *opaque, void *p)
{
	pfree(p);
}

/* Start reading body: gzip (1f 8b) is inflated, anything else is text. */
static void
source_open(BillSource *src, const char *body, size_t len)
{
	memset(src, 0, sizeof(*src));
	src->body = body;
	src->len = len;
	src->gzip = len >= 2 && (unsigned char) body[0] == 0x1f && (unsigned char) body[1] == 0x8b;
	if (!src->gzip)
		return;
	src->zs.zalloc = z_alloc;
	src->zs.zfree = z_free;
	if (inflateInit2(&src->zs, 16 + MAX_WBITS) != Z_OK)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("cannot start inflating a bill")));
	src->piece = palloc(SOURCE_PIECE);
}

/* Inflate the next piece into src->piece: its length, 0 at the end, -1 on error. */
static long
inflate_piece(BillSource *src, const char **error)
{
	z_stream   *zs = &src->zs;

	zs->next_out = (Bytef *) src->piece;
	zs->avail_out = SOURCE_PIECE;
	while (zs->avail_out > 0 && !src->ended)
	{
		int			rc;

		if (zs->avail_in == 0 && src->pos < src->len)
		{
			zs->next_in = (Bytef *) src->body + src->pos;
			zs->avail_in = (uInt) Min(src->len - src->pos, (size_t) 1 << 30);
			src->pos += zs->avail_in;
		}
		rc = inflate(zs, Z_NO_FLUSH);
		if (rc == Z_STREAM_END)
		{
			/* Another gzip member may follow; anything else may not. */
			if (zs->avail_in == 0 && src->pos == src->len)
				src->ended = true;
			else if (zs->avail_in >= 2 && zs->next_in[0] == 0x1f && zs->next_in[1] == 0x8b)
				inflateReset(zs);
			else
				return (*error = "bytes after the end of the gzip stream", -1);
		}
		else if (rc == Z_BUF_ERROR && zs->avail_in == 0 && src->pos == src->len)
			return (*error = "the gzip stream is cut short", -1);
		else if (rc != Z_OK)
			return (*error = zs->msg ? zs->msg : "the gzip stream is corrupt", -1);
	}
	return SOURCE_PIECE - zs->avail_out;
}

/* The next piece of the file in *data: its length, 0 at the end, -1 on error. */
static long
source_next(BillSource *src, const char **data, const char **error)
{
	long		n;

	CHECK_FOR_INTERRUPTS();
	if (!src->gzip)
	{
		n = Min(src->len - src->pos, (size_t) SOURCE_PIECE);
		*data = src->body + src->pos;
		src->pos += n;
	}
	else if ((n = inflate_piece(src, error)) > 0)
		*data = src->piece;
	if (n > 0 && (src->produced += n) > MAX_BILL_SIZE)
		return (*error = "the bill is larger than 1 GB", -1);
	return n;
}

static void
source_close(BillSource *src)
{
	if (src->gzip)
		inflateEnd(&src->zs);
}

/* SHA-1 (lower-case hex) and size of the decompressed file; false with error. */
static bool
hash_file(const char *body, size_t len, char *hex, int64 *size, const char **error)
{
	BillSource	src;
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA1);
	uint8		digest[20];
	const char *data;
	long		n;

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("cannot start SHA-1")));
	source_open(&src, body, len);
	while ((n = source_next(&src, &data, error)) > 0)
		if (pg_cryptohash_update(ctx, (const uint8 *) data, n) < 0)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("SHA-1 failed")));
	source_close(&src);
	if (n == 0 && pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("SHA-1 failed")));
	pg_cryptohash_free(ctx);
	*size = src.produced;
	if (n < 0)
		return false;
	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[40] = '\0';
	return true;
}

/* The file being stored and its rows being loaded. */
typedef struct ImportState
{
	WxBillKind	kind;
	int64		bill_id;
	Relation	rows_rel;
	List	   *attnames;
	int			nfields;		/* length of attnames */
	StringInfoData copy;		/* COPY binary data of rows not loaded yet */
	long		batch_rows;		/* rows in it */
	StringInfoData raw;			/* file text not stored yet */
	int32		seq;
	char	   *scratch;		/* for unescaping one field */
	const char *bill_date;		/* yyyyMMdd: the day every row must be of */
	int64		other_day_rows; /* rows of another (Beijing) day */
	long		first_other_line;
	char		first_day[11];	/* the earliest and latest days of the rows */
	char		last_day[11];
} ImportState;

/*
 * The rows reach COPY in its binary format: every value is already typed
 * by the parser, so nothing is printed here and parsed again by the
 * columns' input functions (timestamptz_in alone cost as much as the
 * rest of the row).  Network byte order, a length before each field.
 * A row is written through a cursor into room reserved for it at once
 * (ROW_ROOM), not value by value.
 */
#define MAX_FIXED_FIELD 24		/* the largest non-text value: a numeric (8 + 2 x at most 5 digits) */
#define ROW_ROOM(nfields, line_len) (2 + (nfields) * (4 + MAX_FIXED_FIELD) + 2 * (line_len) + 16)

static inline char *
put_int16(char *w, int16 v)
{
	uint16		n = pg_hton16((uint16) v);

	memcpy(w, &n, 2);
	return w + 2;
}

static inline char *
put_int32(char *w, int32 v)
{
	uint32		n = pg_hton32((uint32) v);

	memcpy(w, &n, 4);
	return w + 4;
}

static inline char *
put_int64(char *w, int64 v)
{
	uint64		n = pg_hton64((uint64) v);

	memcpy(w, &n, 8);
	return w + 8;
}

/* A bigint field. */
static inline char *
put_int8_field(char *w, int64 v)
{
	return put_int64(put_int32(w, 8), v);
}

/* A text field (UTF-8 validated by the parser; COPY checks it again). */
static inline char *
put_text_field(char *w, const char *s, size_t len)
{
	w = put_int32(w, (int32) len);
	memcpy(w, s, len);
	return w + len;
}

/* A timestamptz field from a normalised "YYYY-MM-DD HH:MM:SS", Beijing time (UTC+8, no DST since 1991). */
static char *
put_beijing_time_field(char *w, const char *t)
{
#define D(i) (t[i] - '0')
	int			days = date2j(D(0) * 1000 + D(1) * 100 + D(2) * 10 + D(3), D(5) * 10 + D(6), D(8) * 10 + D(9))
		- POSTGRES_EPOCH_JDATE;
	int64		seconds = (int64) days * SECS_PER_DAY + (D(11) * 10 + D(12)) * SECS_PER_HOUR
		+ (D(14) * 10 + D(15)) * SECS_PER_MINUTE + D(17) * 10 + D(18) - 8 * SECS_PER_HOUR;
#undef D

	return put_int8_field(w, seconds * USECS_PER_SEC);
}

/*
 * A numeric field of units thousandths of a fen (three decimals), in
 * numeric's binary form: base-10000 digits, weight, sign, display scale.
 */
static char *
put_milli_fen_field(char *w, int64 units)
{
	uint64		magnitude = units < 0 ? -(uint64) units : (uint64) units;
	uint64		whole = magnitude / WX_BILL_UNITS_PER_FEN;
	int			fraction = (int) (magnitude % WX_BILL_UNITS_PER_FEN) * 10;	/* one base-10000 digit */
	int16		digits[6];
	int			nwhole = 0,
				ndigits;

	for (uint64 v = whole; v > 0; v /= 10000)
		nwhole++;
	for (int i = nwhole - 1; i >= 0; i--, whole /= 10000)
		digits[i] = (int16) (whole % 10000);
	ndigits = nwhole;
	if (fraction != 0)
		digits[ndigits++] = (int16) fraction;
	w = put_int32(w, 8 + 2 * ndigits);
	w = put_int16(w, (int16) ndigits);
	w = put_int16(w, (int16) (ndigits == 0 ? 0 : nwhole - 1));	/* weight of the first digit */
	w = put_int16(w, (int16) (units < 0 ? 0x4000 : 0x0000));
	w = put_int16(w, 3);		/* display scale */
	for (int i = 0; i < ndigits; i++)
		w = put_int16(w, digits[i]);
	return w;
}

/* A payment row's refund numbers are "0": no refund. */
static bool
no_refund_number(const ImportState *st, const WxBillRow *row, int c)
{
	const WxBillField *f = &row->field[c];

	return st->kind == WX_BILL_TRADE && !row->outgoing &&
		(c == WX_TC_REFUND_ID || c == WX_TC_OUT_REFUND_NO) && f->len == 1 && f->s[0] == '0';
}

/* One column of a row as a COPY binary field at w: fen for amounts, UTC for times. */
static char *
copy_value(ImportState *st, const WxBillRow *row, int c, char *w)
{
	const WxBillField *f = &row->field[c];

	if (row->empty[c] || no_refund_number(st, row, c))
		return put_int32(w, -1);	/* NULL */
	switch (wx_bill_column_type(st->kind, c))
	{
		case WX_BT_TEXT:
			return put_text_field(w, f->s, f->len);
		case WX_BT_ESCAPED:
			return put_text_field(w, st->scratch, wx_bill_unescape(f->s, f->len, st->scratch));
		case WX_BT_TIME:
			return put_beijing_time_field(w, row->time[c]);
		case WX_BT_YUAN:
			return put_int8_field(w, row->units[c] / WX_BILL_UNITS_PER_FEN);
		case WX_BT_YUAN5:
			return put_milli_fen_field(w, row->units[c]);
	}
	pg_unreachable();
}

/*
 * Note a row's (Beijing) day: a bill lists the one day it is stored as,
 * and the days of rows of another say which file it is instead.
 */
static void
note_row_day(ImportState *st, const WxBillRow *row)
{
	const char *t = wx_bill_row_time(st->kind, row);	/* yyyy-MM-dd HH:mm:ss */
	const char *d = st->bill_date;	/* yyyyMMdd */

	if (st->first_day[0] == '\0' || memcmp(t, st->first_day, 10) < 0)
		memcpy(st->first_day, t, 10);
	if (memcmp(t, st->last_day, 10) > 0)
		memcpy(st->last_day, t, 10);
	if (memcmp(t, d, 4) != 0 || memcmp(t + 5, d + 4, 2) != 0 || memcmp(t + 8, d + 6, 2) != 0)
	{
		if (st->other_day_rows++ == 0)
			st->first_other_line = row->line_no;
	}
}

/* The parser's callback: the row as a tuple of COPY's binary format. */
static bool
add_row(const WxBillRow *row, void *arg)
{
	ImportState *st = arg;
	StringInfo	buf = &st->copy;
	int			ncolumns = wx_bill_column_count(st->kind);
	const char *kind = st->kind == WX_BILL_TRADE ? (row->outgoing ? "refund" : "payment")
		: (row->outgoing ? "expense" : "income");
	char	   *w;

	note_row_day(st, row);
	enlargeStringInfo(buf, ROW_ROOM(st->nfields, row->line_len));
	w = buf->data + buf->len;
	w = put_int16(w, (int16) st->nfields);
	w = put_int8_field(w, st->bill_id);
	w = put_int32(put_int32(w, 4), (int32) row->line_no);
	w = put_text_field(w, kind, strlen(kind));
	for (int c = 0; c < ncolumns; c++)
	{
		if (st->kind == WX_BILL_TRADE && c == WX_TC_MCH_ID)
			continue;			/* checked to be the bill's merchant */
		w = copy_value(st, row, c, w);
	}
	w = put_text_field(w, row->line, row->line_len);
	buf->len = w - buf->data;
	st->batch_rows++;
	return true;
}

/* COPY's data source: the batch being loaded (COPY gives no argument). */
static const char *copy_source_data;
static size_t copy_source_left;

static int
copy_source(void *outbuf, int minread, int maxread)
{
	int			n = (int) Min((size_t) maxread, copy_source_left);

	memcpy(outbuf, copy_source_data, n);
	copy_source_data += n;
	copy_source_left -= n;
	return n;
}

/* Start a batch: COPY's binary signature, no flags, no header extension. */
static void
start_batch(ImportState *st)
{
	static const char signature[11] = "PGCOPY\n\377\r\n\0";

	resetStringInfo(&st->copy);
	enlargeStringInfo(&st->copy, sizeof(signature) + 8);
	memcpy(st->copy.data, signature, sizeof(signature));
	st->copy.len = put_int32(put_int32(st->copy.data + sizeof(signature), 0), 0) - st->copy.data;
	st->batch_rows = 0;
}

/* Load the rows collected so far with COPY, and start a new batch. */
static void
load_rows(ImportState *st)
{
	ParseState *pstate;
	CopyFromState cstate;

	if (st->batch_rows == 0)
		return;
	enlargeStringInfo(&st->copy, 2);
	st->copy.len = put_int16(st->copy.data + st->copy.len, -1) - st->copy.data;	/* the trailer */
	copy_source_data = st->copy.data;
	copy_source_left = st->copy.len;
	pstate = make_parsestate(NULL);
	/* CopyFrom finds its target as the range table's first entry. */
	(void) addRangeTableEntryForRelation(pstate, st->rows_rel, RowExclusiveLock, NULL, false, false);
	cstate = BeginCopyFrom(pstate, st->rows_rel, NULL, NULL, false, copy_source, st->attnames,
						   list_make1(makeDefElem("format", (Node *) makeString("binary"), -1)));
	(void) CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
	start_batch(st);
}

/* Store len bytes of text as the bill's next chunk. */
static void
store_chunk(ImportState *st, const char *data, size_t len)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};
	text	   *chunk = cstring_to_text_with_len(data, len);
	Datum		values[3] = {Int64GetDatum(st->bill_id), Int32GetDatum(++st->seq), PointerGetDatum(chunk)};

	wxpay_spi_exec_plan(&plan, "INSERT INTO wxpay.bill_chunks (bill_id, seq, chunk) VALUES ($1, $2, $3)",
						3, types, values, NULL, false, SPI_OK_INSERT);
	pfree(chunk);
}

/*
 * Keep a piece of the file; store what is kept in chunks of whole lines
 * once there is enough of it (all of it when final).
 */
static void
keep_text(ImportState *st, const char *data, size_t len, bool final)
{
	StringInfo	raw = &st->raw;
	char	   *nl;

	appendBinaryStringInfo(raw, data, len);
	if (final)
	{
		if (raw->len > 0)
			store_chunk(st, raw->data, raw->len);
		return;
	}
	if (raw->len < RAW_CHUNK || (nl = memrchr(raw->data, '\n', raw->len)) == NULL)
		return;
	store_chunk(st, raw->data, nl + 1 - raw->data);
	raw->len -= nl + 1 - raw->data;
	memmove(raw->data, nl + 1, raw->len);
	raw->data[raw->len] = '\0';
}

/* The type add_row writes for a column of the parser. */
static Oid
column_type(WxBillKind kind, int c)
{
	switch (wx_bill_column_type(kind, c))
	{
		case WX_BT_TIME:
			return TIMESTAMPTZOID;
		case WX_BT_YUAN:
			return INT8OID;
		case WX_BT_YUAN5:
			return NUMERICOID;
		default:
			return TEXTOID;
	}
}

/* Add a column COPY fills, checking that its type is the one add_row writes. */
static List *
add_column(List *names, Relation rel, const char *name, Oid type)
{
	AttrNumber	attnum = attnameAttNum(rel, name, false);

	if (attnum <= 0 || TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid != type)
		elog(ERROR, "column %s of %s does not have the type the bill importer writes",
			 name, RelationGetRelationName(rel));
	return lappend(names, makeString(pstrdup(name)));
}

/* The columns COPY fills, in add_row's order. */
static List *
row_attnames(WxBillKind kind, Relation rel)
{
	List	   *names = NIL;

	names = add_column(names, rel, "bill_id", INT8OID);
	names = add_column(names, rel, "line_no", INT4OID);
	names = add_column(names, rel, "kind", TEXTOID);
	for (int c = 0; c < wx_bill_column_count(kind); c++)
		if (!(kind == WX_BILL_TRADE && c == WX_TC_MCH_ID))
			names = add_column(names, rel, wx_bill_column_name(kind, c), column_type(kind, c));
	return add_column(names, rel, "raw_line", TEXTOID);
}

/* The summary as jsonb text: the count, and every stated sum in fen. */
static char *
summary_json(const WxBillParser *p)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int f = 0; f < p->nsummary; f++)
	{
		int64		v = p->summary[f].stated;

		appendStringInfo(&buf, "%s\"%s\": ", f ? ", " : "", wx_bill_summary_name(p->kind, p->summary[f].check));
		if (wx_bill_summary_is_count(p->kind, p->summary[f].check))
			appendStringInfo(&buf, INT64_FORMAT, v);
		else
			appendStringInfo(&buf, "%s" UINT64_FORMAT ".%03d", v < 0 ? "-" : "",
							 (v < 0 ? -(uint64) v : (uint64) v) / WX_BILL_UNITS_PER_FEN,
							 (int) ((v < 0 ? -(uint64) v : (uint64) v) % WX_BILL_UNITS_PER_FEN));
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * Parse and store the file as bill st->bill_id; false with error (and
 * p->error) when the parser refuses it.
 */
static bool
store_file(ImportState *st, WxBillParser *p, const char *body, size_t len, const char **error)
{
	BillSource	src;
	const char *data;
	long		n;

	source_open(&src, body, len);
	while ((n = source_next(&src, &data, error)) > 0)
	{
		if (!wx_bill_feed(p, data, n, add_row, st))
			break;
		keep_text(st, data, n, false);
		if (st->copy.len >= COPY_BATCH)
			load_rows(st);
	}
	source_close(&src);
	if (n < 0)
		return false;
	if (p->error[0] != '\0' || !wx_bill_finish(p, add_row, st))
		return (*error = p->error, false);
	keep_text(st, "", 0, true);
	load_rows(st);
	return true;
}

/*
 * The day's versions of the bill: returns the latest version (0: none),
 * and true when one of them has the same content (sha1 NULL: no bill,
 * compared with the latest only), whose bill_id, version and rows are
 * then in out.  An older version's file again (a stale copy) is that
 * version, not a new one that would make it current again.
 */
static bool
same_version(const char *mch_id, WxBillKind kind, const char *bill_date, const char *bill_type,
			 const char *sha1, int32 *latest, WxBillImport *out)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	char		nulls[5] = "     ";
	Datum		values[5] = {CStringGetTextDatum(mch_id), CStringGetTextDatum(kind == WX_BILL_TRADE ? "trade" : "fundflow"),
	CStringGetTextDatum(bill_date), CStringGetTextDatum(bill_type), wxpay_text_or_null(sha1, nulls, 4)};

	/*
	 * One import of a day at a time: the second waits, then sees the
	 * first (not read_only: a new snapshot, taken after the wait).
	 */
	wxpay_spi_exec("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('wxpay.bills'),"
				   " pg_catalog.hashtext($1 OPERATOR(pg_catalog.||) $2 OPERATOR(pg_catalog.||) $3"
				   " OPERATOR(pg_catalog.||) $4))", 4, types, values, NULL, false, SPI_OK_SELECT);
	wxpay_spi_exec("WITH day AS (SELECT * FROM wxpay.bills WHERE mch_id OPERATOR(pg_catalog.=) $1"
				   " AND kind OPERATOR(pg_catalog.=) $2 AND bill_date OPERATOR(pg_catalog.=) $3::pg_catalog.date"
				   " AND bill_type OPERATOR(pg_catalog.=) $4)"
				   " SELECT COALESCE((SELECT pg_catalog.max(version) FROM day), 0), s.version, s.bill_id, COALESCE(s.row_count, 0)"
				   " FROM (SELECT) one LEFT JOIN LATERAL (SELECT * FROM day WHERE sha1 OPERATOR(pg_catalog.=) $5"
				   "   OR ($5 IS NULL AND no_bill AND version OPERATOR(pg_catalog.=) (SELECT pg_catalog.max(version) FROM day))"
				   "   ORDER BY version DESC LIMIT 1) s ON true",
				   5, types, values, nulls, false, SPI_OK_SELECT);
	*latest = pg_strtoint32(wxpay_spi_value(0, 1));
	out->bill_id = 0;
	if (wxpay_spi_value(0, 2) == NULL)
		return false;
	out->version = pg_strtoint32(wxpay_spi_value(0, 2));
	out->bill_id = pg_strtoint64(wxpay_spi_value(0, 3));
	out->rows = pg_strtoint64(wxpay_spi_value(0, 4));
	return true;
}

/*
 * The day's next version, or the one with the same content (sha1 NULL:
 * no bill).  True when a new row was inserted.
 */
static bool
new_version(const char *mch_id, WxBillKind kind, const char *bill_date, const char *bill_type,
			const char *sha1, int64 size, WxBillImport *out)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, INT8OID};
	Datum		values[7];
	char		nulls[7] = "       ";
	int32		latest;

	if (same_version(mch_id, kind, bill_date, bill_type, sha1, &latest, out))
	{
		out->outcome = "unchanged";
		return false;
	}
	values[0] = CStringGetTextDatum(mch_id);
	values[1] = CStringGetTextDatum(kind == WX_BILL_TRADE ? "trade" : "fundflow");
	values[2] = CStringGetTextDatum(bill_date);
	values[3] = CStringGetTextDatum(bill_type);
	values[4] = Int32GetDatum(latest + 1);
	values[5] = wxpay_text_or_null(sha1, nulls, 5);
	values[6] = Int64GetDatum(size);
	wxpay_spi_exec("INSERT INTO wxpay.bills (mch_id, kind, bill_date, bill_type, version, changed, no_bill, sha1, byte_size)"
				   " VALUES ($1, $2, $3::pg_catalog.date, $4, $5, $5 OPERATOR(pg_catalog.>) 1, $6 IS NULL, $6, $7)"
				   " RETURNING bill_id", 7, types, values, nulls, false, SPI_OK_INSERT_RETURNING);
	out->bill_id = pg_strtoint64(wxpay_spi_value(0, 1));
	out->rows = 0;
	out->version = latest + 1;
	out->outcome = latest > 0 ? "new_version" : (sha1 ? "imported" : "no_bill");
	return true;
}

/* The summary and row count, once the rows are in. */
static void
finish_bill(const WxBillImport *out, const WxBillParser *p)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(out->bill_id), Int64GetDatum(p->rows),
	CStringGetTextDatum(summary_json(p))};

	wxpay_spi_exec("UPDATE wxpay.bills SET row_count = $2, summary = $3::pg_catalog.jsonb"
				   " WHERE bill_id OPERATOR(pg_catalog.=) $1", 3, types, values, NULL, false, SPI_OK_UPDATE);
}

/* What is wrong with a file whose rows are not all of st->bill_date. */
static void
other_day_reason(const ImportState *st, const WxBillParser *p, WxBillImport *out)
{
	const char *d = st->bill_date;

	if (strcmp(st->first_day, st->last_day) == 0)
		out->reason = psprintf("its rows are of %s (Beijing time), not of %.4s-%.2s-%.2s",
							   st->first_day, d, d + 4, d + 6);
	else
		out->reason = psprintf("its rows are of %s to %s (Beijing time), not all of %.4s-%.2s-%.2s",
							   st->first_day, st->last_day, d, d + 4, d + 6);
	out->detail = psprintf(INT64_FORMAT " of " INT64_FORMAT " rows are of another day; the first is on line %ld.",
						   st->other_day_rows, (int64) p->rows, st->first_other_line);
}

/*
 * Refuse the file: why in out (for wxpay_bill_import's own error), and as
 * the failure of a download (WX007: the file cannot be trusted).
 */
static bool
refuse_file(WxBillImport *out, WxBillRefusal refusal, const char *mch_id, const char *bill_date,
			const char *bill_type, WxFailure *fail)
{
	out->refusal = refusal;
	wxpay_fail(fail, WX_FAIL_UNTRUSTED,
			   psprintf("the %s bill of %s for %.4s-%.2s-%.2s is refused: %s%s%s%s", bill_type, mch_id,
						bill_date, bill_date + 4, bill_date + 6, out->reason,
						out->detail ? " (" : "", out->detail ? out->detail : "", out->detail ? ")" : ""));
	fail->hint = "Nothing was imported. Download it again later; if it stays so, ask WeChat Pay.";
	return false;
}

bool
wxpay_bill_store(const char *mch_id, WxBillKind kind, const char *bill_date,
				  const char *bill_type, const char *body, size_t len, const char *sha1,
				  WxBillImport *out, WxFailure *fail)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	const char *error = NULL;
	WxBillRefusal refusal = WX_BILL_ACCEPTED;
	ImportState st;
	WxBillParser *p;

	memset(out, 0, sizeof(*out));
	if (!hash_file(body, len, out->sha1, &out->byte_size, &error))
	{
		out->reason = psprintf("it cannot be read: %s", error);
		return refuse_file(out, WX_BILL_MALFORMED, mch_id, bill_date, bill_type, fail);
	}
	if (sha1 != NULL && pg_strcasecmp(out->sha1, sha1) != 0)
	{
		out->reason = psprintf("the SHA-1 of the file received is %s, not the hash_value %s WeChat Pay gave for it",
							   out->sha1, sha1);
		return refuse_file(out, WX_BILL_MALFORMED, mch_id, bill_date, bill_type, fail);
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	if (new_version(mch_id, kind, bill_date, bill_type, out->sha1, out->byte_size, out))
	{
		memset(&st, 0, sizeof(st));
		st.kind = kind;
		st.bill_id = out->bill_id;
		st.bill_date = bill_date;
		st.scratch = palloc(WX_BILL_MAX_LINE + 1);
		initStringInfo(&st.copy);
		initStringInfo(&st.raw);
		st.rows_rel = table_openrv(makeRangeVar("wxpay", kind == WX_BILL_TRADE ? "bill_rows" : "fund_flow_rows", -1),
								   RowExclusiveLock);
		st.attnames = row_attnames(kind, st.rows_rel);
		st.nfields = list_length(st.attnames);
		start_batch(&st);
		p = palloc(sizeof(WxBillParser));
		wx_bill_init(p, kind, kind == WX_BILL_TRADE ? mch_id : NULL);
		p->bill_type = kind == WX_BILL_TRADE ? bill_type : NULL;
		if (!store_file(&st, p, body, len, &error))
		{
			refusal = p->wrong_type ? WX_BILL_WRONG_TYPE : WX_BILL_MALFORMED;
			out->reason = pstrdup(error);
		}
		else if (st.other_day_rows > 0)
		{
			refusal = WX_BILL_OTHER_DAY;
			other_day_reason(&st, p, out);
		}
		table_close(st.rows_rel, NoLock);
		if (refusal == WX_BILL_ACCEPTED)
		{
			finish_bill(out, p);
			out->rows = p->rows;
		}
	}
	if (refusal == WX_BILL_ACCEPTED)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (refusal != WX_BILL_ACCEPTED)
		return refuse_file(out, refusal, mch_id, bill_date, bill_type, fail);
	return true;
}

void
wxpay_bill_record_none(const char *mch_id, WxBillKind kind, const char *bill_date,
					   const char *bill_type, WxBillImport *out)
{
	memset(out, 0, sizeof(*out));
	(void) new_version(mch_id, kind, bill_date, bill_type, NULL, 0, out);
}
