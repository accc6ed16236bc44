/*
 * wx_xml.c
 *	  Building and safely parsing the flat XML of WeChat Pay v2.
 *
 * Parsing is defensive in layers: the body must be UTF-8 without NUL and
 * at most WX_XML_MAX_BODY bytes; a DOCTYPE (any declaration) in the prolog
 * refuses it before libxml2 runs; libxml2 gets XML_PARSE_NONET and neither NOENT nor
 * DTDLOAD, with the encoding forced to UTF-8 so a declaration cannot make
 * it read the bytes differently from our scan; and a document that still
 * has a DTD afterwards is refused.  Only the flat shape is accepted:
 * element children of the root with text or CDATA content, unique names.
 */
#include "wx_xml.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define XML_OPEN "<xml>"
#define XML_CLOSE "</xml>"
#define CDATA_OPEN "<![CDATA["
#define CDATA_CLOSE "]]>"
#define CR_REF "&#13;"

static void
set_error(WxXmlError *err, int line, int column, const char *message)
{
	if (err == NULL)
		return;
	err->line = line;
	err->column = column;
	snprintf(err->message, sizeof(err->message), "%s", message);
	wx_utf8_clip(err->message);
}

/*
 * Cut a NUL-terminated string that may end inside a UTF-8 sequence (after
 * a byte-counted copy) back to the last whole character, and replace any
 * other invalid byte with '?', so messages are always valid UTF-8.
 */
void
wx_utf8_clip(char *s)
{
	size_t		len = strlen(s);
	long		bad;

	while ((bad = wx_utf8_invalid_at(s, len, false)) >= 0)
	{
		/* A sequence cut by the end: drop it.  Anything else: mark it. */
		size_t		tail = len - (size_t) bad;

		if (tail < 4 && ((unsigned char) s[bad] & 0xC0) == 0xC0)
		{
			bool		cut = true;

			for (size_t i = 1; i < tail; i++)
				cut &= ((unsigned char) s[bad + i] & 0xC0) == 0x80;
			if (cut)
			{
				s[bad] = '\0';
				return;
			}
		}
		s[bad] = '?';
	}
}

/* At most max bytes of name, cut on a character boundary, into buf. */
static const char *
excerpt(char *buf, size_t size, const char *name, size_t max)
{
	snprintf(buf, size, "%.*s", (int) (max < size ? max : size - 1), name);
	wx_utf8_clip(buf);
	return buf;
}

long
wx_utf8_invalid_at(const char *s, size_t len, bool reject_4byte)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = p[i];
		size_t		n;
		unsigned int cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4 && !reject_4byte)
			n = 4, cp = c & 0x07;
		else
			return (long) i;
		if (i + n > len)
			return (long) i;
		for (size_t k = 1; k < n; k++)
		{
			if ((p[i + k] & 0xC0) != 0x80)
				return (long) i;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		/* Overlong forms, surrogates and values past U+10FFFF. */
		if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			(cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return (long) i;
		i += n;
	}
	return -1;
}

bool
wx_xml_name_valid(const char *name, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];
		bool		ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			c == '_' ||
			(i > 0 && ((c >= '0' && c <= '9') || c == '.' || c == '-'));

		if (!ok)
			return false;
	}
	return true;
}

long
wx_xml_value_invalid_at(const char *value, size_t len)
{
	long		bad = wx_utf8_invalid_at(value, len, false);

	for (size_t i = 0; i < len && (bad < 0 || (long) i < bad); i++)
	{
		unsigned char c = (unsigned char) value[i];

		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return (long) i;
	}
	return bad;
}

/* Append to buf at *pos, or only count when buf is NULL. */
static void
put(char *buf, size_t *pos, const char *s, size_t len)
{
	if (buf != NULL)
		memcpy(buf + *pos, s, len);
	*pos += len;
}

/*
 * One value as CDATA sections: a section closes before the '>' of any
 * "]]>", and '\r' (which parsers normalise to '\n') goes as a reference.
 */
static void
put_value(char *buf, size_t *pos, const char *v, size_t len)
{
	size_t		start = 0;

	for (size_t i = 0; i <= len; i++)
	{
		bool		split_gt = i < len && v[i] == '>' && i >= 2 &&
			v[i - 1] == ']' && v[i - 2] == ']';
		bool		cr = i < len && v[i] == '\r';

		if (i < len && !split_gt && !cr)
			continue;
		if (i > start)
		{
			put(buf, pos, CDATA_OPEN, strlen(CDATA_OPEN));
			put(buf, pos, v + start, i - start);
			put(buf, pos, CDATA_CLOSE, strlen(CDATA_CLOSE));
		}
		if (cr)
		{
			put(buf, pos, CR_REF, strlen(CR_REF));
			start = i + 1;
		}
		else
			start = i;
	}
}

static size_t
build(const WxParam *params, int nparams, char *buf)
{
	size_t		pos = 0;

	put(buf, &pos, XML_OPEN, strlen(XML_OPEN));
	for (int i = 0; i < nparams; i++)
	{
		const WxParam *p = &params[i];

		put(buf, &pos, "<", 1);
		put(buf, &pos, p->name, p->name_len);
		put(buf, &pos, ">", 1);
		put_value(buf, &pos, p->value, p->value_len);
		put(buf, &pos, "</", 2);
		put(buf, &pos, p->name, p->name_len);
		put(buf, &pos, ">", 1);
	}
	put(buf, &pos, XML_CLOSE, strlen(XML_CLOSE));
	return pos;
}

size_t
wx_xml_build_length(const WxParam *params, int nparams)
{
	return build(params, nparams, NULL);
}

size_t
wx_xml_build(const WxParam *params, int nparams, char *buf)
{
	return build(params, nparams, buf);
}

/* First occurrence of needle in a body that may lack a NUL, or NULL. */
static const char *
find_bytes(const char *hay, size_t len, const char *needle)
{
	size_t		nlen = strlen(needle);

	for (size_t i = 0; i + nlen <= len; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			return hay + i;
	return NULL;
}

/* Line and column (1-based) of a byte offset, for error messages. */
static void
locate(const char *body, size_t offset, int *line, int *column)
{
	*line = 1;
	*column = 1;
	for (size_t i = 0; i < offset; i++)
	{
		if (body[i] == '\n')
			(*line)++, *column = 1;
		else if (((unsigned char) body[i] & 0xC0) != 0x80)
			(*column)++;
	}
}

/*
 * The first markup declaration ("<!" other than a comment) of the prolog,
 * or NULL.  A DOCTYPE can only stand before the root element; text that
 * looks like one inside a value (CDATA, say) is just text.  Anything a
 * parser could take for a declaration later is malformed XML to libxml2,
 * and its tree is checked for a DTD after parsing as well.
 */
static const char *
prolog_declaration(const char *body, size_t len)
{
	const char *p = body;
	const char *end = body + len;

	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (p < end)
	{
		const char *close;

		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		else if (end - p >= 2 && memcmp(p, "<?", 2) == 0)
		{
			if ((close = find_bytes(p, (size_t) (end - p), "?>")) == NULL)
				return NULL;	/* unterminated: malformed to libxml2 */
			p = close + 2;
		}
		else if (end - p >= 4 && memcmp(p, "<!--", 4) == 0)
		{
			if ((close = find_bytes(p + 4, (size_t) (end - p - 4), "-->")) == NULL)
				return NULL;
			p = close + 3;
		}
		else if (end - p >= 2 && memcmp(p, "<!", 2) == 0)
			return p;
		else
			return NULL;		/* the root element (or junk) starts */
	}
	return NULL;
}

/* The checks that run before libxml2 sees a byte. */
static WxXmlStatus
precheck(const char *body, size_t len, WxXmlError *err)
{
	const char *bad;
	long		at;
	int			line,
				column;
	size_t		i;

	if (len > WX_XML_MAX_BODY)
	{
		set_error(err, 0, 0, "body exceeds the 1 MB limit");
		return WX_XML_TOO_LARGE;
	}
	for (i = 0; i < len; i++)
		if (body[i] != ' ' && body[i] != '\t' && body[i] != '\n' && body[i] != '\r')
			break;
	if (i == len)
	{
		set_error(err, 0, 0, "body is empty");
		return WX_XML_EMPTY;
	}
	bad = memchr(body, '\0', len);
	at = bad != NULL ? bad - body : wx_utf8_invalid_at(body, len, false);
	if (at >= 0)
	{
		locate(body, (size_t) at, &line, &column);
		set_error(err, line, column, "body is not valid UTF-8 text");
		return WX_XML_BAD_ENCODING;
	}
	if ((bad = prolog_declaration(body, len)) != NULL)
	{
		locate(body, (size_t) (bad - body), &line, &column);
		set_error(err, line, column, "DOCTYPE and ENTITY declarations are not allowed");
		return WX_XML_DOCTYPE;
	}
	return WX_XML_OK;
}

static bool
is_blank(const xmlChar *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return false;
	return true;
}

static char *
copy_string(WxAllocFn alloc, void *arg, const char *s, size_t len)
{
	char	   *copy = alloc(arg, len + 1);

	if (copy != NULL)
	{
		memcpy(copy, s, len);
		copy[len] = '\0';
	}
	return copy;
}

/*
 * Elements with a namespace or attributes are refused: WeChat Pay sends
 * neither, and libxml2 reports a prefixed name by its local part, so
 * <x:total_fee> would otherwise pass for a signed total_fee.
 */
static WxXmlStatus
check_plain_element(xmlNodePtr elem, WxXmlError *err)
{
	char		msg[200];
	char		name[65];

	if (elem->ns == NULL && elem->nsDef == NULL && elem->properties == NULL)
		return WX_XML_OK;
	snprintf(msg, sizeof(msg), "element <%s> has %s, which WeChat Pay documents never have",
			 excerpt(name, sizeof(name), (const char *) elem->name, 64),
			 elem->properties != NULL ? "attributes" : "a namespace");
	set_error(err, (int) xmlGetLineNo(elem), 0, msg);
	return WX_XML_NOT_FLAT;
}

/* Text of a child element: its text and CDATA nodes, concatenated. */
static WxXmlStatus
child_text(xmlNodePtr elem, WxAllocFn alloc, void *arg, WxParam *param,
		   WxXmlError *err)
{
	size_t		len = 0;
	char	   *value;
	xmlNodePtr	n;
	WxXmlStatus st;

	if ((st = check_plain_element(elem, err)) != WX_XML_OK)
		return st;
	for (n = elem->children; n != NULL; n = n->next)
	{
		if (n->type == XML_ELEMENT_NODE)
		{
			char		msg[200];
			char		name[65];

			snprintf(msg, sizeof(msg), "element <%s> has child elements; only flat documents are accepted",
					 excerpt(name, sizeof(name), (const char *) elem->name, 64));
			set_error(err, (int) xmlGetLineNo(n), 0, msg);
			return WX_XML_NOT_FLAT;
		}
		if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
			n->content != NULL)
			len += strlen((const char *) n->content);
	}
	value = alloc(arg, len + 1);
	if (value == NULL)
		return WX_XML_NOMEM;
	len = 0;
	for (n = elem->children; n != NULL; n = n->next)
		if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
			n->content != NULL)
		{
			size_t		l = strlen((const char *) n->content);

			memcpy(value + len, n->content, l);
			len += l;
		}
	value[len] = '\0';
	param->value = value;
	param->value_len = len;
	param->name = copy_string(alloc, arg, (const char *) elem->name,
							  strlen((const char *) elem->name));
	param->name_len = param->name ? strlen(param->name) : 0;
	return param->name ? WX_XML_OK : WX_XML_NOMEM;
}

/* Collect the root's children into doc. */
static WxXmlStatus
collect(xmlNodePtr root, WxAllocFn alloc, void *arg, WxXmlDoc *doc,
		WxXmlError *err)
{
	int			count = 0;
	xmlNodePtr	n;
	WxXmlStatus st;
	const WxParam *dup;

	for (n = root->children; n != NULL; n = n->next)
	{
		if (n->type == XML_ELEMENT_NODE)
			count++;
		else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
				 n->content != NULL && !is_blank(n->content))
		{
			set_error(err, (int) xmlGetLineNo(n), 0,
					  "text directly inside the root element; only flat documents are accepted");
			return WX_XML_NOT_FLAT;
		}
	}
	if ((st = check_plain_element(root, err)) != WX_XML_OK)
		return st;
	doc->root = copy_string(alloc, arg, (const char *) root->name,
							strlen((const char *) root->name));
	doc->params = alloc(arg, sizeof(WxParam) * (count > 0 ? count : 1));
	if (doc->root == NULL || doc->params == NULL)
		return WX_XML_NOMEM;
	doc->nparams = 0;
	for (n = root->children; n != NULL; n = n->next)
	{
		if (n->type != XML_ELEMENT_NODE)
			continue;
		st = child_text(n, alloc, arg, &doc->params[doc->nparams], err);
		if (st != WX_XML_OK)
			return st;
		doc->nparams++;
	}

	/* Sorting makes duplicates adjacent: O(n log n) even for huge bodies. */
	wx_params_sort(doc->params, doc->nparams);
	if ((dup = wx_params_find_duplicate(doc->params, doc->nparams)) != NULL)
	{
		char		msg[200];
		char		name[65];

		snprintf(msg, sizeof(msg), "element <%s> appears more than once",
				 excerpt(name, sizeof(name), dup->name, 64));
		set_error(err, 0, 0, msg);
		return WX_XML_DUPLICATE;
	}
	return WX_XML_OK;
}

static void
libxml_error(xmlParserCtxtPtr ctxt, WxXmlError *err)
{
	const xmlError *e = xmlCtxtGetLastError(ctxt);
	char		msg[256];
	size_t		len;

	if (e == NULL || e->message == NULL)
	{
		set_error(err, 0, 0, "not well-formed XML");
		return;
	}
	snprintf(msg, sizeof(msg), "%s", e->message);
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	set_error(err, e->line, e->int2, msg);
}

WxXmlStatus
wx_xml_parse(const char *body, size_t len, WxAllocFn alloc, void *alloc_arg,
			 WxXmlDoc *doc, WxXmlError *err)
{
	xmlParserCtxtPtr ctxt;
	xmlDocPtr	xdoc;
	xmlNodePtr	root;
	WxXmlStatus st;

	set_error(err, 0, 0, "");
	if ((st = precheck(body, len, err)) != WX_XML_OK)
		return st;

	ctxt = xmlNewParserCtxt();
	if (ctxt == NULL)
		return WX_XML_NOMEM;
	xdoc = xmlCtxtReadMemory(ctxt, body, (int) len, NULL, "UTF-8",
							 XML_PARSE_NONET | XML_PARSE_NOERROR |
							 XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	if (xdoc == NULL || !ctxt->wellFormed)
	{
		libxml_error(ctxt, err);
		st = WX_XML_MALFORMED;
	}
	else if (xdoc->intSubset != NULL || xdoc->extSubset != NULL)
	{
		set_error(err, 0, 0, "DOCTYPE and ENTITY declarations are not allowed");
		st = WX_XML_DOCTYPE;
	}
	else if ((root = xmlDocGetRootElement(xdoc)) == NULL)
	{
		set_error(err, 0, 0, "document has no root element");
		st = WX_XML_MALFORMED;
	}
	else
		st = collect(root, alloc, alloc_arg, doc, err);

	if (xdoc != NULL)
		xmlFreeDoc(xdoc);
	xmlFreeParserCtxt(ctxt);
	return st;
}
