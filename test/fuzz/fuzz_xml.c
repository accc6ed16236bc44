/*
 * fuzz_xml.c
 *	  Fuzzes wx_xml_parse, then checks on whatever parses that building it
 *	  again round-trips every value and that signing and verifying agree.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "wx_sign.h"
#include "wx_xml.h"

static const char KEY[] = "192006250b4c09247ec02edce69f6a2d";

/* Build the parsed params back into XML and parse that: same values. */
static void
check_round_trip(const WxXmlDoc *doc, FuzzArena *arena)
{
	size_t		len = wx_xml_build_length(doc->params, doc->nparams);
	char	   *xml = fuzz_alloc(arena, len + 1);
	WxXmlDoc	again;

	if (xml == NULL || len > WX_XML_MAX_BODY)
		return;
	FUZZ_ASSERT(wx_xml_build(doc->params, doc->nparams, xml) == len);
	FUZZ_ASSERT(wx_xml_parse(xml, len, fuzz_alloc, arena, &again, NULL) == WX_XML_OK);
	FUZZ_ASSERT(again.nparams == doc->nparams);
	for (int i = 0; i < doc->nparams; i++)
	{
		FUZZ_ASSERT(again.params[i].name_len == doc->params[i].name_len);
		FUZZ_ASSERT(memcmp(again.params[i].name, doc->params[i].name, doc->params[i].name_len) == 0);
		FUZZ_ASSERT(again.params[i].value_len == doc->params[i].value_len);
		FUZZ_ASSERT(memcmp(again.params[i].value, doc->params[i].value, doc->params[i].value_len) == 0);
	}
}

/* A signature computed over the params verifies; a received one never crashes. */
static void
check_signature(const WxXmlDoc *doc)
{
	char		hex[WX_SIGN_MAX_HEX + 1];
	const WxParam *sign = wx_params_find(doc->params, doc->nparams, "sign");

	FUZZ_ASSERT(wx_sign_compute(WX_SIGN_HMAC_SHA256, doc->params, doc->nparams, KEY, 32, hex));
	FUZZ_ASSERT(wx_sign_equal(hex, 64, hex, 64));
	if (sign != NULL)
		(void) wx_sign_equal(hex, 64, sign->value, sign->value_len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzArena	arena = {0};
	WxXmlDoc	doc;
	WxXmlError	err;

	if (wx_xml_parse((const char *) data, size, fuzz_alloc, &arena, &doc, &err) == WX_XML_OK)
	{
		/* Parsed names are always ones the builder accepts back. */
		for (int i = 0; i < doc.nparams; i++)
			FUZZ_ASSERT(wx_utf8_invalid_at(doc.params[i].value, doc.params[i].value_len, false) < 0);
		if (wx_params_find_duplicate(doc.params, doc.nparams) == NULL)
		{
			bool		names_ok = true;

			for (int i = 0; i < doc.nparams; i++)
				names_ok &= wx_xml_name_valid(doc.params[i].name, doc.params[i].name_len) &&
					wx_xml_value_invalid_at(doc.params[i].value, doc.params[i].value_len) < 0;
			if (names_ok)
				check_round_trip(&doc, &arena);
		}
		check_signature(&doc);
	}
	else
		FUZZ_ASSERT(strlen(err.message) < sizeof(err.message));
	fuzz_arena_free(&arena);
	return 0;
}
