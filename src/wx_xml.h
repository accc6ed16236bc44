/*
 * wx_xml.h
 *	  The flat XML of WeChat Pay v2: <xml><name>value</name>...</xml>.
 *
 * Building and parsing without PostgreSQL.  The parser uses libxml2 but
 * refuses a DOCTYPE in the prolog before libxml2 sees the body, never loads
 * DTDs, never substitutes entities and never touches the network.  Memory
 * for results comes from a caller-supplied allocator that returns NULL on
 * failure rather than jumping, so libxml2 objects are always freed here.
 */
#ifndef WX_XML_H
#define WX_XML_H

#include "wx_sign.h"

/* Bodies larger than this are refused unparsed. */
#define WX_XML_MAX_BODY (1024 * 1024)

typedef enum WxXmlStatus
{
	WX_XML_OK = 0,
	WX_XML_EMPTY,				/* nothing but white space */
	WX_XML_TOO_LARGE,			/* over WX_XML_MAX_BODY */
	WX_XML_BAD_ENCODING,		/* not UTF-8, or contains NUL */
	WX_XML_DOCTYPE,				/* DOCTYPE or ENTITY declaration */
	WX_XML_MALFORMED,			/* libxml2 says not well-formed */
	WX_XML_NOT_FLAT,			/* nested elements or stray root text */
	WX_XML_DUPLICATE,			/* the same child name twice */
	WX_XML_NOMEM
} WxXmlStatus;

typedef struct WxXmlError
{
	int			line;			/* 1-based, 0 if unknown */
	int			column;			/* 1-based, 0 if unknown */
	char		message[256];	/* what went wrong, no trailing newline */
} WxXmlError;

/* A parsed document: root element name and its children, sorted by name. */
typedef struct WxXmlDoc
{
	char	   *root;
	WxParam    *params;			/* names and values are NUL-terminated */
	int			nparams;
} WxXmlDoc;

/* Allocator for results; returns NULL when out of memory. */
typedef void *(*WxAllocFn) (void *arg, size_t size);

/*
 * Parse a body.  On success fills doc with memory from alloc.  On failure
 * fills err (when not NULL) and returns the status.
 */
extern WxXmlStatus wx_xml_parse(const char *body, size_t len,
								WxAllocFn alloc, void *alloc_arg,
								WxXmlDoc *doc, WxXmlError *err);

/*
 * Whether a name can be an element of our documents: an ASCII XML name,
 * [A-Za-z_][A-Za-z0-9_.-]*, which covers every field WeChat defines.
 */
extern bool wx_xml_name_valid(const char *name, size_t len);

/*
 * Whether a value can be carried: valid UTF-8 with no control characters
 * XML 1.0 forbids.  Returns the offset of the first bad byte, or -1.
 */
extern long wx_xml_value_invalid_at(const char *value, size_t len);

/*
 * Size and text of <xml>...</xml> for params (in the given order).  Values
 * go in CDATA; "]]>" is split across two sections and '\r' is written as a
 * character reference, so every value round-trips byte for byte.
 */
extern size_t wx_xml_build_length(const WxParam *params, int nparams);
extern size_t wx_xml_build(const WxParam *params, int nparams, char *buf);

/*
 * UTF-8 validation: returns the offset of the first invalid sequence, or
 * -1.  With reject_4byte, supplementary-plane characters (emoji) count as
 * invalid, which is what the v2 API accepts.
 */
extern long wx_utf8_invalid_at(const char *s, size_t len, bool reject_4byte);

/* Cut a string back to whole UTF-8 characters; other bad bytes become '?'. */
extern void wx_utf8_clip(char *s);

#endif							/* WX_XML_H */
