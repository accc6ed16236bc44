/*
 * wxpay.c
 *	  Module entry point of pg_wxpay: the magic block and _PG_init.
 *
 * _PG_init runs in the postmaster when the library is preloaded, so it
 * only defines settings and registers workers; libcurl and OpenSSL are
 * initialised lazily in the process that uses them.
 */
#include "wxpay.h"

#include "fmgr.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;
}
