/*
 * fuzz_refund.c
 *	  Fuzzes req_info decryption (base64, AES-256-ECB, PKCS#7) and the
 *	  parse of whatever decrypts.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "wx_aes.h"
#include "wx_xml.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *plain = malloc(wx_base64_decoded_max(size) + 1);
	size_t		len;
	FuzzArena	arena = {0};
	WxXmlDoc	doc;

	if (wx_refund_decrypt((const char *) data, size, "192006250b4c09247ec02edce69f6a2d", 32,
						  plain, &len) == WX_AES_OK)
	{
		FUZZ_ASSERT(len < wx_base64_decoded_max(size));
		(void) wx_xml_parse((char *) plain, len, fuzz_alloc, &arena, &doc, NULL);
	}
	fuzz_arena_free(&arena);
	free(plain);
	return 0;
}
