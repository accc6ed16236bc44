/*
 * xml.c
 *	  SQL functions wxpay_to_xml and wxpay_from_xml, and the parse and
 *	  build helpers the API calls and notification handlers use.
 *
 * libxml2 keeps global state inside the server (error handler, entity
 * loader), so every parse runs between pg_xml_init and pg_xml_done with
 * PG_TRY, as core's xml.c and contrib/xml2 do.  The parse itself is the
 * PostgreSQL-free wx_xml_parse, which allocates through palloc_extended
 * with MCXT_ALLOC_NO_OOM so that it never longjmps past libxml2 objects.
 */
#include "wxpay.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/xml.h"

PG_FUNCTION_INFO_V1(wxpay_to_xml);
PG_FUNCTION_INFO_V1(wxpay_from_xml);

static void *
palloc_no_oom(void *arg, size_t size)
{
	return palloc_extended(size, MCXT_ALLOC_NO_OOM);
}

/* Build <xml>...</xml> from a list, refusing what XML cannot carry. */
char *
wxpay_xml_from_list(const WxParamList *list, size_t *len)
{
	char	   *buf;

	for (int i = 0; i < list->count; i++)
	{
		const WxParam *p = &list->items[i];
		long		bad;

		if (!wx_xml_name_valid(p->name, p->name_len))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" is not a valid XML element name", p->name),
					 errhint("Names must start with an ASCII letter or underscore and contain only ASCII letters, digits, '_', '.' and '-'.")));
		if ((bad = wx_xml_value_invalid_at(p->value, p->value_len)) >= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of \"%s\" contains a character XML cannot carry at byte %ld",
							p->name, bad + 1)));
	}
	*len = wx_xml_build_length(list->items, list->count);
	buf = palloc(*len + 1);
	wx_xml_build(list->items, list->count, buf);
	buf[*len] = '\0';
	return buf;
}

/*
 * Parse a body into list without raising for bad input: the status says
 * what went wrong and err where.  Only out-of-memory and errors inside
 * PostgreSQL's own libxml2 handler raise.
 */
WxXmlStatus
wxpay_xml_parse(const char *body, size_t len, WxParamList *list, char **root,
				WxXmlError *err)
{
	PgXmlErrorContext *xmlerrcxt;
	WxXmlDoc	doc;
	WxXmlStatus status;

	xmlerrcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	PG_TRY();
	{
		status = wx_xml_parse(body, len, palloc_no_oom, NULL, &doc, err);
	}
	PG_CATCH();
	{
		pg_xml_done(xmlerrcxt, true);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/*
	 * The core reports libxml2's errors through the parser context; any that
	 * also reached PostgreSQL's handler belong to a parse already failed.
	 */
	pg_xml_done(xmlerrcxt, status != WX_XML_OK);

	if (status == WX_XML_NOMEM)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while parsing XML")));
	if (status == WX_XML_OK)
	{
		list->items = doc.params;
		list->count = list->capacity = doc.nparams;
		if (root != NULL)
			*root = doc.root;
	}
	return status;
}

/* Raise the error a failed parse deserves; what names the body. */
void
wxpay_xml_report(WxXmlStatus status, const WxXmlError *err, size_t len,
				 const char *what)
{
	switch (status)
	{
		case WX_XML_OK:
		case WX_XML_NOMEM:
			return;
		case WX_XML_TOO_LARGE:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s of %zu bytes exceeds the limit of %d bytes",
							what, len, WX_XML_MAX_BODY)));
			break;
		case WX_XML_BAD_ENCODING:
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("%s is not valid UTF-8 (line %d, column %d)",
							what, err->line, err->column)));
			break;
		case WX_XML_DOCTYPE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_XML_DOCUMENT),
					 errmsg("%s contains a DOCTYPE or ENTITY declaration at line %d, column %d",
							what, err->line, err->column),
					 errdetail("Declarations are refused before parsing, which rules out entity expansion and external entities (XXE).")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_XML_DOCUMENT),
					 errmsg("%s is not a valid WeChat Pay XML document", what),
					 err->line > 0 ?
					 errdetail("%s at line %d, column %d.", err->message, err->line, err->column) :
					 errdetail("%s.", err->message)));
	}
}

/*
 * wxpay_to_xml(params jsonb) -> text
 */
Datum
wxpay_to_xml(PG_FUNCTION_ARGS)
{
	Jsonb	   *params = PG_GETARG_JSONB_P(0);
	WxParamList list;
	size_t		len;
	char	   *xml;

	wxpay_list_from_jsonb(params, &list, "params");
	/* Bytewise name order: stable output whatever jsonb's key order is. */
	wx_params_sort(list.items, list.count);
	xml = wxpay_xml_from_list(&list, &len);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(xml, len));
}

/*
 * wxpay_from_xml(body text) -> jsonb
 */
Datum
wxpay_from_xml(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	size_t		len = VARSIZE_ANY_EXHDR(body);
	WxParamList list;
	WxXmlError	err;
	WxXmlStatus status;

	status = wxpay_xml_parse(VARDATA_ANY(body), len, &list, NULL, &err);
	wxpay_xml_report(status, &err, len, "XML body");
	PG_RETURN_JSONB_P(wxpay_list_to_jsonb(&list));
}
