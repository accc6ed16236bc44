/*
 * shmem.c
 *	  The extension's shared memory: one request hook and one startup hook
 *	  for every part that keeps state there (the worker's shared state, the
 *	  order waiters).
 *
 * A part registers its name, size and initialiser from _PG_init while the
 * library is preloaded; its pointer is set in every process once the
 * segment exists.  Without shared_preload_libraries nothing is registered
 * and every pointer stays NULL, which each part treats as "no worker".
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "wxpay.h"

#define MAX_PARTS 4

typedef struct WxShmemPart
{
	const char *name;
	Size		(*size) (void);
	void		(*init) (void *part);
	void	  **where;
} WxShmemPart;

static WxShmemPart parts[MAX_PARTS];
static int	nparts = 0;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* Ask for every part's space. */
static void
request_shmem(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	for (int i = 0; i < nparts; i++)
		RequestAddinShmemSpace(MAXALIGN(parts[i].size()));
}

/* Find every part, initialising the ones the postmaster creates. */
static void
startup_shmem(void)
{
	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (int i = 0; i < nparts; i++)
	{
		bool		found;
		void	   *part = ShmemInitStruct(parts[i].name, parts[i].size(), &found);

		if (!found)
			parts[i].init(part);
		*parts[i].where = part;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Register a part (from _PG_init while preloading); *where is set at startup. */
void
wxpay_shmem_add(const char *name, Size (*size) (void), void (*init) (void *part), void **where)
{
	Assert(process_shared_preload_libraries_in_progress);
	if (nparts == MAX_PARTS)
		elog(ERROR, "wxpay: too many shared memory parts");
	parts[nparts++] = (WxShmemPart) {name, size, init, where};
	if (nparts == 1)
	{
		prev_shmem_request = shmem_request_hook;
		shmem_request_hook = request_shmem;
		prev_shmem_startup = shmem_startup_hook;
		shmem_startup_hook = startup_shmem;
	}
}
