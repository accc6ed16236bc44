/*
 * spi_util.c
 *	  Small SPI helpers: checked execution, saved plans, values of the last
 *	  result, and returning jsonb past SPI_finish.
 */
#include "wxpay.h"

#include "utils/builtins.h"

#include "spi_util.h"

/* Run sql with arguments; any result but expected is an internal error. */
void
wxpay_spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
			   const char *nulls, bool read_only, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);

	if (rc != expected)
		elog(ERROR, "SPI failed on \"%.60s...\": %s", sql, SPI_result_code_string(rc));
}

/* Run a saved plan of sql; any result but expected is an internal error. */
static void
exec_saved(SPIPlanPtr plan, const char *sql, Datum *values, const char *nulls,
		   bool read_only, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc != expected)
		elog(ERROR, "SPI failed on \"%.60s...\": %s", sql, SPI_result_code_string(rc));
}

/* The same through a plan saved in *slot, for statements on hot paths. */
void
wxpay_spi_exec_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types,
					Datum *values, const char *nulls, bool read_only, int expected)
{
	exec_saved(wxpay_saved_plan(slot, sql, nargs, types, 0), sql, values, nulls, read_only, expected);
}

/*
 * The same through a generic plan, made once: for statements whose plan
 * does not depend on the values (a range scan of an index) and that run so
 * often that planning them anew for each call's values costs more than the
 * statement itself.
 */
void
wxpay_spi_exec_generic_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types,
							Datum *values, const char *nulls, bool read_only, int expected)
{
	exec_saved(wxpay_saved_plan(slot, sql, nargs, types, CURSOR_OPT_GENERIC_PLAN), sql, values, nulls,
			   read_only, expected);
}

/* Column col (1-based) of row row of the last result, as text, or NULL. */
char *
wxpay_spi_value(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * A plan prepared once per backend and kept: statements on hot paths are
 * then neither parsed nor planned again.
 */
SPIPlanPtr
wxpay_saved_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types, int cursor_options)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, cursor_options);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		*slot = plan;
	}
	return *slot;
}

/*
 * The jsonb a function returns, built in the caller's memory before the
 * SPI connection (and its memory) goes away.
 */
Jsonb *
wxpay_spi_result(MemoryContext caller, const WxParamList *list)
{
	Jsonb	   *result;

	MemoryContextSwitchTo(caller);
	result = wxpay_list_to_jsonb(list);
	SPI_finish();
	return result;
}

/* A text argument for SPI, NULL (nulls[i] = 'n') when value is. */
Datum
wxpay_text_or_null(const char *value, char *nulls, int i)
{
	nulls[i] = value ? ' ' : 'n';
	return value ? CStringGetTextDatum(value) : (Datum) 0;
}
