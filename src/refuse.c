/*
 * refuse.c
 *	  Refusing a row of a table that holds secrets without echoing it.
 *
 * A failed CHECK or NOT NULL constraint prints "Failing row contains (...)",
 * the whole row, into the server log and to the client, and the failing
 * statement (with its literals) follows it into the log.  The tables that
 * hold keys are therefore validated by BEFORE triggers that raise through
 * wxpay.refuse_row(): a message that names the rule, the column and the
 * constraint, and neither the row nor the statement.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(wxpay_refuse_row);

/* A text argument as a C string, or NULL. */
static char *
arg_cstring(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * wxpay.refuse_row(sqlstate, table, column, constraint, message, hint) -> void
 *
 * Always raises: the SQLSTATE (class 23), the message and hint given, the
 * table, column and constraint as error fields, and no STATEMENT line.
 */
Datum
wxpay_refuse_row(PG_FUNCTION_ARGS)
{
	char	   *sqlstate = arg_cstring(fcinfo, 0);
	char	   *table = arg_cstring(fcinfo, 1);
	char	   *column = arg_cstring(fcinfo, 2);
	char	   *constraint = arg_cstring(fcinfo, 3);
	char	   *message = arg_cstring(fcinfo, 4);
	char	   *hint = arg_cstring(fcinfo, 5);

	if (sqlstate == NULL || strlen(sqlstate) != 5 || strncmp(sqlstate, "23", 2) != 0 ||
		strspn(sqlstate, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 5 || message == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wxpay.refuse_row needs an integrity SQLSTATE (class 23) and a message")));

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4])),
			 errmsg_internal("%s", message),
			 hint ? errhint("%s", hint) : 0,
			 errhidestmt(true),
			 table ? err_generic_string(PG_DIAG_SCHEMA_NAME, "wxpay") : 0,
			 table ? err_generic_string(PG_DIAG_TABLE_NAME, table) : 0,
			 column ? err_generic_string(PG_DIAG_COLUMN_NAME, column) : 0,
			 constraint ? err_generic_string(PG_DIAG_CONSTRAINT_NAME, constraint) : 0));
	PG_RETURN_VOID();
}
