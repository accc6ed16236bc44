/*
 * wxpay.c
 *	  Module entry point of pg_wxpay: the magic block, settings, _PG_init.
 *
 * _PG_init runs in the postmaster when the library is preloaded, so it
 * only defines settings and registers callbacks and workers; libcurl is
 * initialised lazily in the process that uses it.
 */
#include "wxpay.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "http.h"

PG_MODULE_MAGIC;

int			wxpay_order_ttl = 7200;

void		_PG_init(void);

static void
define_settings(void)
{
	DefineCustomIntVariable("wxpay.http_timeout",
							"Total time limit of one request to WeChat Pay.",
							NULL,
							&wxpay_http_timeout,
							10000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.connect_timeout",
							"Time limit for connecting to WeChat Pay, TLS handshake included.",
							NULL,
							&wxpay_connect_timeout,
							5000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wxpay.order_ttl",
							"How long a new order stays payable (its time_expire).",
							"WeChat Pay requires at least one minute.",
							&wxpay_order_ttl,
							7200, 60, 30 * 24 * 3600,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("wxpay");
}

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;
	define_settings();
	wxpay_orders_init();
}
