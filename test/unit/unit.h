/*
 * unit.h
 *	  The check counters and CHECK macro the core's unit-test files share
 *	  (defined in test_core.c).
 */
#ifndef UNIT_H
#define UNIT_H

extern int	passed;
extern int	failed;
extern void check(int ok, const char *what, const char *file, int line);

#define CHECK(cond, what) check((cond), (what), __FILE__, __LINE__)

/* test_v3.c */
extern void test_v3(void);

#endif
