/*
 * spi_util.h
 *	  Small SPI helpers shared by every file that runs SQL.
 */
#ifndef WXPAY_SPI_UTIL_H
#define WXPAY_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"
#include "utils/jsonb.h"

struct WxParamList;

extern void wxpay_spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
						   const char *nulls, bool read_only, int expected);
extern void wxpay_spi_exec_plan(SPIPlanPtr *slot, const char *sql, int nargs,
								Oid *types, Datum *values, const char *nulls,
								bool read_only, int expected);
extern void wxpay_spi_exec_generic_plan(SPIPlanPtr *slot, const char *sql, int nargs,
										Oid *types, Datum *values, const char *nulls,
										bool read_only, int expected);
extern char *wxpay_spi_value(int row, int col);
extern SPIPlanPtr wxpay_saved_plan(SPIPlanPtr *slot, const char *sql, int nargs,
								   Oid *types, int cursor_options);
extern Jsonb *wxpay_spi_result(MemoryContext caller, const struct WxParamList *list);
extern Datum wxpay_text_or_null(const char *value, char *nulls, int i);

#endif							/* WXPAY_SPI_UTIL_H */
