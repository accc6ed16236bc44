/*
 * fuzz_common.h
 *	  A malloc-backed allocator for the core's results that frees
 *	  everything after each fuzz input, and an invariant check that aborts.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

typedef struct FuzzArena
{
	void	  **blocks;
	size_t		count;
	size_t		capacity;
} FuzzArena;

static void *
fuzz_alloc(void *arg, size_t size)
{
	FuzzArena  *arena = arg;
	void	   *p;

	if (arena->count == arena->capacity)
	{
		size_t		cap = arena->capacity ? arena->capacity * 2 : 64;
		void	  **grown = realloc(arena->blocks, cap * sizeof(void *));

		if (grown == NULL)
			return NULL;
		arena->blocks = grown;
		arena->capacity = cap;
	}
	p = malloc(size ? size : 1);
	if (p != NULL)
		arena->blocks[arena->count++] = p;
	return p;
}

static void
fuzz_arena_free(FuzzArena *arena)
{
	for (size_t i = 0; i < arena->count; i++)
		free(arena->blocks[i]);
	free(arena->blocks);
	arena->blocks = NULL;
	arena->count = arena->capacity = 0;
}

#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
			abort(); \
		} \
	} while (0)

#endif
