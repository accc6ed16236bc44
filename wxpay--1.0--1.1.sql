/* wxpay--1.0--1.1.sql: pg_wxpay 1.0 to 1.1 */

\echo Use "ALTER EXTENSION wxpay UPDATE TO '1.1'" to load this file. \quit

----------------------------------------------------------------------
-- One state vocabulary.  Which order and refund states exist, which are
-- pending (the worker follows them), paid, refundable or final is said
-- here once; CHECKs, partial indexes, views, the worker's claims and the
-- C code (through wxpay.state_vocabulary(), compared by a regression test)
-- all use these.  They are plain SQL so the planner inlines them, and an
-- index predicate written with one matches a query written with it.
----------------------------------------------------------------------

CREATE FUNCTION wxpay.order_states()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '{NOTPAY,USERPAYING,PAYERROR,SUCCESS,REFUND,CLOSED,REVOKED}'::text[] $$;
COMMENT ON FUNCTION wxpay.order_states() IS
'every order state: WeChat Pay''s trade_state words (ACCEPT is reported but never stored)';

-- PAYERROR is pending: the payer may still pay the same prepay_id, so the
-- worker keeps asking and closes it at time_expire like any unpaid order.
CREATE FUNCTION wxpay.order_state_pending(state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT state OPERATOR(pg_catalog.=) ANY ('{NOTPAY,USERPAYING,PAYERROR}'::text[]) $$;
COMMENT ON FUNCTION wxpay.order_state_pending(text) IS
'unpaid and still payable: the worker queries it, and closes it once expired';

CREATE FUNCTION wxpay.order_state_paid(state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT state OPERATOR(pg_catalog.=) ANY ('{SUCCESS,REFUND}'::text[]) $$;
COMMENT ON FUNCTION wxpay.order_state_paid(text) IS
'paid (REFUND: paid, then refunded in part or whole); such an order can be refunded';

CREATE FUNCTION wxpay.order_state_final(state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT state OPERATOR(pg_catalog.=) ANY ('{REFUND,CLOSED,REVOKED}'::text[]) $$;
COMMENT ON FUNCTION wxpay.order_state_final(text) IS
'no transition leaves this state';

CREATE FUNCTION wxpay.refund_states()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '{PROCESSING,CHANGE,SUCCESS,REFUNDCLOSE}'::text[] $$;
COMMENT ON FUNCTION wxpay.refund_states() IS 'every refund state: WeChat Pay''s refund_status words';

-- CHANGE (the bank card refused the money) is settled by hand on the
-- merchant platform and then becomes SUCCESS: the worker keeps asking.
CREATE FUNCTION wxpay.refund_state_pending(state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT state OPERATOR(pg_catalog.=) ANY ('{PROCESSING,CHANGE}'::text[]) $$;
COMMENT ON FUNCTION wxpay.refund_state_pending(text) IS 'not settled yet: the worker queries it';

CREATE FUNCTION wxpay.refund_state_final(state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT state OPERATOR(pg_catalog.=) ANY ('{SUCCESS,REFUNDCLOSE}'::text[]) $$;
COMMENT ON FUNCTION wxpay.refund_state_final(text) IS 'no transition leaves this state';

-- A closed refund returned nothing; every other one counts against the order.
CREATE FUNCTION wxpay.refund_state_counts(state text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT state OPERATOR(pg_catalog.<>) 'REFUNDCLOSE' $$;
COMMENT ON FUNCTION wxpay.refund_state_counts(text) IS
'whether the refund counts against what is left to refund of its order';

-- The same lists as the C code has them, for the test that compares them.
CREATE FUNCTION wxpay.state_vocabulary()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_state_vocabulary'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wxpay.state_vocabulary() IS
'the state lists compiled into the C code: must equal the SQL functions above';

-- Whether this process has the library loaded from shared_preload_libraries.
CREATE FUNCTION wxpay.preloaded()
RETURNS boolean
AS 'MODULE_PATHNAME', 'wxpay_preloaded'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wxpay.preloaded() IS
'whether wxpay is in shared_preload_libraries, which the worker (reconciliation) needs';

----------------------------------------------------------------------
-- Every constraint has a name that says what it keeps; the state checks
-- use the vocabulary.
----------------------------------------------------------------------


ALTER TABLE wxpay.orders RENAME CONSTRAINT orders_mch_id_fkey TO orders_merchant_fkey;
ALTER TABLE wxpay.orders RENAME CONSTRAINT orders_out_trade_no_check TO orders_out_trade_no_format;
ALTER TABLE wxpay.orders RENAME CONSTRAINT orders_trade_type_check TO orders_trade_type_valid;
ALTER TABLE wxpay.orders RENAME CONSTRAINT orders_body_check TO orders_body_length;
ALTER TABLE wxpay.orders RENAME CONSTRAINT orders_total_fee_check TO orders_total_fee_positive;
ALTER TABLE wxpay.orders RENAME CONSTRAINT orders_check TO orders_paid_has_transaction;
-- The state checks are the guard's (wxpay.state_guard, below), under the
-- same constraint names: a CHECK that calls a SQL function has it inlined
-- again at every statement that writes the table.
ALTER TABLE wxpay.orders DROP CONSTRAINT orders_state_check;
ALTER TABLE wxpay.orders DROP CONSTRAINT orders_paid_has_transaction;

ALTER TABLE wxpay.order_events RENAME CONSTRAINT order_events_source_check TO order_events_source_valid;
ALTER TABLE wxpay.order_events RENAME CONSTRAINT order_events_mch_id_out_trade_no_fkey TO order_events_order_fkey;

ALTER TABLE wxpay.notifications RENAME CONSTRAINT notifications_kind_check TO notifications_kind_valid;
ALTER TABLE wxpay.notifications RENAME CONSTRAINT notifications_outcome_check TO notifications_outcome_valid;

ALTER TABLE wxpay.refunds RENAME CONSTRAINT refunds_out_refund_no_check TO refunds_out_refund_no_format;
ALTER TABLE wxpay.refunds RENAME CONSTRAINT refunds_refund_fee_check TO refunds_refund_fee_positive;
ALTER TABLE wxpay.refunds RENAME CONSTRAINT refunds_total_fee_check TO refunds_total_fee_positive;
ALTER TABLE wxpay.refunds RENAME CONSTRAINT refunds_check TO refunds_within_total;
ALTER TABLE wxpay.refunds RENAME CONSTRAINT refunds_mch_id_out_trade_no_fkey TO refunds_order_fkey;
ALTER TABLE wxpay.refunds DROP CONSTRAINT refunds_state_check;

ALTER TABLE wxpay.refund_events RENAME CONSTRAINT refund_events_source_check TO refund_events_source_valid;
ALTER TABLE wxpay.refund_events RENAME CONSTRAINT refund_events_mch_id_out_refund_no_fkey TO refund_events_refund_fkey;

----------------------------------------------------------------------
-- The worker's claims use these, with the same predicates: PAYERROR
-- orders and CHANGE refunds are followed too, and no claim scans a table.
----------------------------------------------------------------------

DROP INDEX wxpay.orders_pending_idx;
CREATE INDEX orders_pending_idx ON wxpay.orders (next_query_at)
	WHERE wxpay.order_state_pending(state);
DROP INDEX wxpay.refunds_processing_idx;
CREATE INDEX refunds_pending_idx ON wxpay.refunds (next_query_at)
	WHERE wxpay.refund_state_pending(state);

----------------------------------------------------------------------
-- The state machines.  One trigger in C (guard.c) guards orders and
-- refunds for every writer, the same rules for both: a new row starts in
-- the first state (unless restored), the columns naming it and its amount
-- never change, WeChat Pay's ids never change once set, the state is one
-- of the vocabulary (constraint names orders_state_valid,
-- refunds_state_valid) and moves only as the machine allows (states.c,
-- shown by wxpay.state_vocabulary()), a paid order has its transaction
-- (orders_paid_has_transaction); updated_at is stamped.
----------------------------------------------------------------------

CREATE FUNCTION wxpay.state_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'wxpay_state_guard'
LANGUAGE C;
COMMENT ON FUNCTION wxpay.state_guard() IS
'the state machine of orders and refunds, for every writer (BEFORE INSERT OR UPDATE)';
DROP TRIGGER orders_guard ON wxpay.orders;
CREATE TRIGGER orders_guard BEFORE INSERT OR UPDATE ON wxpay.orders
	FOR EACH ROW EXECUTE FUNCTION wxpay.state_guard();
DROP FUNCTION wxpay.orders_guard();
DROP TRIGGER refunds_guard ON wxpay.refunds;
CREATE TRIGGER refunds_guard BEFORE INSERT OR UPDATE ON wxpay.refunds
	FOR EACH ROW EXECUTE FUNCTION wxpay.state_guard();
DROP FUNCTION wxpay.refunds_guard();

----------------------------------------------------------------------
-- The worker: what it follows, and whether it runs at all.
----------------------------------------------------------------------

CREATE OR REPLACE VIEW wxpay.worker_status AS
	SELECT mch_id, out_trade_no, state, total_fee, created_at, time_expire,
		   CASE WHEN time_expire OPERATOR(pg_catalog.<) pg_catalog.now() THEN 'close' ELSE 'query' END AS next_action,
		   next_query_at, query_count, last_query_at, last_error
	  FROM wxpay.orders
	 WHERE wxpay.order_state_pending(state)
	 ORDER BY next_query_at;

CREATE VIEW wxpay.worker AS
	SELECT wxpay.preloaded() AS preloaded,
		   pg_catalog.current_setting('wxpay.database', true) AS database,
		   a.pid IS NOT NULL AS running,
		   a.pid, a.backend_start, a.state, a.wait_event_type, a.wait_event, a.query AS activity
	  FROM (SELECT 1) one
	  LEFT JOIN pg_catalog.pg_stat_activity a
		ON a.backend_type OPERATOR(pg_catalog.=) 'wxpay worker';
REVOKE ALL ON wxpay.worker FROM PUBLIC;
COMMENT ON VIEW wxpay.worker IS
'whether the reconciling worker is configured (preloaded) and running, and what it is doing';

-- Said at CREATE EXTENSION and ALTER EXTENSION UPDATE: without the worker
-- nothing reconciles, so lost notifications stay lost until someone asks.
DO $$
BEGIN
	IF NOT wxpay.preloaded() THEN
		RAISE WARNING 'wxpay is not in shared_preload_libraries: orders will not be reconciled in the background'
			USING HINT = 'Everything else works. For the worker, add wxpay to shared_preload_libraries and restart the server.';
	ELSIF pg_catalog.current_setting('wxpay.database', true) OPERATOR(pg_catalog.<>) pg_catalog.current_database() THEN
		RAISE NOTICE 'the wxpay worker reconciles database "%", not this one',
			pg_catalog.current_setting('wxpay.database', true)
			USING HINT = 'Set wxpay.database to this database and restart the server, or use wxpay in that database.';
	END IF;
END
$$;

-- The worker's scans for due work and its paid-events publish, as it runs
-- them: a test and bench section 6 EXPLAIN each.
CREATE FUNCTION wxpay.worker_queries(OUT name text, OUT query text, OUT argtypes text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'wxpay_worker_queries'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION wxpay.worker_queries() FROM PUBLIC;
COMMENT ON FUNCTION wxpay.worker_queries() IS
'the SQL the worker uses to find due orders and refunds and to publish paid events, for EXPLAIN';

----------------------------------------------------------------------
-- Client parameters for the JS-SDK's wx.chooseWXPay, which wants the
-- signed timeStamp as "timestamp".
----------------------------------------------------------------------

CREATE FUNCTION @extschema@.wxpay_jssdk_params(mch_id text, prepay_id text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_jssdk_params'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_jssdk_params(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_jssdk_params(text, text) IS
'signed parameters for the JS-SDK''s wx.chooseWXPay: appId, timestamp, nonceStr, package, signType, paySign';

----------------------------------------------------------------------
-- Payments WeChat Pay reported that paid nothing here: a verified
-- notification for an order we do not have (made in a transaction that
-- rolled back, say), with another amount, or for an order closed here.
----------------------------------------------------------------------

ALTER TABLE wxpay.notifications ADD COLUMN verified boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN wxpay.notifications.verified IS
'whether the body was authentic (payments: signature verified; refunds: req_info decrypted), whatever its outcome';

-- The handlers record it: new C symbols, so a 1.0 schema (new library,
-- ALTER EXTENSION UPDATE not run yet) keeps recording without it.
CREATE OR REPLACE FUNCTION @extschema@.wxpay_handle_notify(body text)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_handle_notify_1_1'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION @extschema@.wxpay_handle_refund_notify(body text)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_handle_refund_notify_1_1'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE VIEW wxpay.unmatched_payments AS
	SELECT mch_id, out_trade_no, transaction_id,
		   (@extschema@.wxpay_from_xml(pg_catalog.min(body)) OPERATOR(pg_catalog.->>) 'total_fee') AS total_fee,
		   pg_catalog.min(received_at) AS first_received_at, pg_catalog.max(received_at) AS last_received_at,
		   pg_catalog.count(*) AS deliveries, pg_catalog.max(reason) AS reason
	  FROM wxpay.notifications n
	 WHERE kind OPERATOR(pg_catalog.=) 'pay' AND verified AND outcome OPERATOR(pg_catalog.=) 'rejected'
	   AND NOT EXISTS (SELECT FROM wxpay.orders o
						WHERE o.mch_id OPERATOR(pg_catalog.=) n.mch_id
						  AND o.out_trade_no OPERATOR(pg_catalog.=) n.out_trade_no
						  AND o.transaction_id OPERATOR(pg_catalog.=) n.transaction_id)
	 GROUP BY mch_id, out_trade_no, transaction_id;
REVOKE ALL ON wxpay.unmatched_payments FROM PUBLIC;
COMMENT ON VIEW wxpay.unmatched_payments IS
'authentic payments that paid no order here (unknown order, other amount, closed here): refund or reconcile by hand';

----------------------------------------------------------------------
-- Merchant rows are checked by a trigger, not by CHECK constraints: a
-- failed CHECK or NOT NULL prints the whole row (the API key, the private
-- key) into the server log and to the client.  The trigger names the rule
-- and the column, never a secret, and its error leaves the statement (with
-- its literals) out of the log.  The rules are said here and nowhere else.
----------------------------------------------------------------------

CREATE FUNCTION wxpay.refuse_row(sqlstate text, table_name text, column_name text,
	constraint_name text, message text, hint text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'wxpay_refuse_row'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wxpay.refuse_row(text, text, text, text, text, text) IS
'raise an integrity error (class 23) naming the table, column and constraint, without the row or the statement';

ALTER TABLE wxpay.merchants DROP CONSTRAINT merchants_mch_id_check;
ALTER TABLE wxpay.merchants DROP CONSTRAINT merchants_appid_check;
ALTER TABLE wxpay.merchants DROP CONSTRAINT merchants_api_key_check;
ALTER TABLE wxpay.merchants DROP CONSTRAINT merchants_sign_type_check;
ALTER TABLE wxpay.merchants DROP CONSTRAINT merchants_notify_url_check;
ALTER TABLE wxpay.merchants DROP CONSTRAINT merchants_api_base_check;
ALTER TABLE wxpay.merchants DROP CONSTRAINT merchants_check;

-- Each rule: the column, whether it has a value (if it needs one), whether
-- the value is acceptable (NULL: no value to judge), the name the rule's
-- errors carry, and what a good value looks like.  Only values that are
-- not secret are quoted back.
CREATE FUNCTION wxpay.merchants_validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	who text := COALESCE(' ' || quote_literal(NEW.mch_id), '');
BEGIN
	FOR r IN
		SELECT * FROM (VALUES
			('mch_id', NEW.mch_id IS NOT NULL, NEW.mch_id ~ '^[0-9A-Za-z_-]{1,32}$', 'merchants_mch_id_format',
			 format('mch_id %s must be 1 to 32 letters, digits, "_" or "-"', quote_literal(NEW.mch_id)), NULL),
			('appid', NEW.appid IS NOT NULL, NEW.appid ~ '^[0-9A-Za-z_-]{1,32}$', 'merchants_appid_format',
			 format('appid %s of merchant%s must be 1 to 32 letters, digits, "_" or "-"', quote_literal(NEW.appid), who), NULL),
			('api_key', NEW.api_key IS NOT NULL, NEW.api_key ~ '^[\x21-\x7e]{32}$', 'merchants_api_key_format',
			 format('api_key of merchant%s must be 32 printable ASCII characters', who),
			 'It is the API key set on the merchant platform (Account Center > API security); the value is not shown.'),
			('sign_type', NEW.sign_type IS NOT NULL, NEW.sign_type IN ('MD5', 'HMAC-SHA256'), 'merchants_sign_type_valid',
			 format('sign_type %s of merchant%s must be MD5 or HMAC-SHA256', quote_literal(NEW.sign_type), who), NULL),
			('notify_url', true,
			 NEW.notify_url ~ '^https?://[^?#[:space:]]+$' AND length(NEW.notify_url) <= 256, 'merchants_notify_url_format',
			 format('notify_url %s of merchant%s must be an http(s) URL of at most 256 characters without "?" or "#"',
					quote_literal(NEW.notify_url), who),
			 'WeChat Pay refuses notify URLs with query parameters.'),
			('api_base', NEW.api_base IS NOT NULL,
			 NEW.api_base ~ '^https://[^/?#[:space:]]+(/[^?#[:space:]]*[^/?#[:space:]])?$'
			 OR NEW.api_base ~ '^http://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?$', 'merchants_api_base_format',
			 format('api_base %s of merchant%s must be an https:// URL without a trailing "/"', quote_literal(NEW.api_base), who),
			 'Production is https://api.mch.weixin.qq.com; http:// is accepted only for loopback.'),
			('key_pem', true, (NEW.cert_pem IS NULL) = (NEW.key_pem IS NULL), 'merchants_cert_and_key_together',
			 format('cert_pem and key_pem of merchant%s are set together or not at all', who),
			 'They are apiclient_cert.pem and apiclient_key.pem, for /secapi/ (refunds).'),
			('created_at', NEW.created_at IS NOT NULL, true, NULL, NULL, NULL),
			('updated_at', NEW.updated_at IS NOT NULL, true, NULL, NULL, NULL)
		) AS v(col, present, ok, con, message, hint)
	LOOP
		IF NOT r.present THEN
			PERFORM wxpay.refuse_row('23502', 'merchants', r.col, NULL,
									 format('%s of merchant%s is required', r.col, who));
		ELSIF NOT COALESCE(r.ok, true) THEN
			PERFORM wxpay.refuse_row('23514', 'merchants', r.col, r.con, r.message, r.hint);
		END IF;
	END LOOP;
	RETURN NEW;
END
$$;
CREATE TRIGGER merchants_validate BEFORE INSERT OR UPDATE ON wxpay.merchants
	FOR EACH ROW EXECUTE FUNCTION wxpay.merchants_validate();

----------------------------------------------------------------------
-- The audit trail.  History rows are written only by the extension: the
-- triggers that record a change run as its owner (an operator may be
-- granted UPDATE on orders without any right on their history), set
-- db_user and created_at themselves, and map the change's source the same
-- way for orders and refunds; history_guard refuses every other writer of
-- order_events, refund_events and notifications, whatever it was granted.
--
-- Restoring a dump: a superuser session with check_function_bodies off
-- (every pg_dump script and pg_restore sets it; nothing else does) writing
-- outside the extension's functions may insert orders and refunds in any
-- state, and no history row is added for them: the dump carries their
-- history, and the identity sequences' positions come with it.
----------------------------------------------------------------------

CREATE FUNCTION wxpay.change_actor()
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_change_actor'
LANGUAGE C STABLE PARALLEL RESTRICTED;
REVOKE ALL ON FUNCTION wxpay.change_actor() FROM PUBLIC;
COMMENT ON FUNCTION wxpay.change_actor() IS
'the role a change is made for (the session''s role, or the caller of an autonomous step): the history''s db_user';

CREATE FUNCTION wxpay.change_is_restore()
RETURNS boolean
AS 'MODULE_PATHNAME', 'wxpay_change_is_restore'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION wxpay.change_is_restore() IS
'whether a row is being restored: a superuser with check_function_bodies off, outside the extension''s functions';

CREATE FUNCTION wxpay.history_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'wxpay_history_guard'
LANGUAGE C;
COMMENT ON FUNCTION wxpay.history_guard() IS
'refuses history rows from anybody but the extension (its owner) and superusers';

CREATE TRIGGER order_events_written_by_wxpay BEFORE INSERT ON wxpay.order_events
	FOR EACH ROW EXECUTE FUNCTION wxpay.history_guard();
CREATE TRIGGER refund_events_written_by_wxpay BEFORE INSERT ON wxpay.refund_events
	FOR EACH ROW EXECUTE FUNCTION wxpay.history_guard();
CREATE TRIGGER notifications_written_by_wxpay BEFORE INSERT ON wxpay.notifications
	FOR EACH ROW EXECUTE FUNCTION wxpay.history_guard();

-- The history of orders and refunds: one trigger in C (history.c), which
-- writes a row for each new row and each change of state, with the source
-- the extension's code named (any other writer is 'manual'), the actor,
-- the time and, for orders, the transaction; a move to SUCCESS is a paid
-- event.  SECURITY DEFINER: it writes as the owner, whom history_guard lets.
CREATE FUNCTION wxpay.history_record()
RETURNS trigger
AS 'MODULE_PATHNAME', 'wxpay_history_record'
LANGUAGE C SECURITY DEFINER;
REVOKE ALL ON FUNCTION wxpay.history_record() FROM PUBLIC;
COMMENT ON FUNCTION wxpay.history_record() IS
'writes order_events and refund_events (AFTER INSERT OR UPDATE on orders and refunds)';
DROP TRIGGER orders_record ON wxpay.orders;
CREATE TRIGGER orders_record AFTER INSERT OR UPDATE ON wxpay.orders
	FOR EACH ROW EXECUTE FUNCTION wxpay.history_record();
DROP FUNCTION wxpay.orders_record();
DROP TRIGGER refunds_record ON wxpay.refunds;
CREATE TRIGGER refunds_record AFTER INSERT OR UPDATE ON wxpay.refunds
	FOR EACH ROW EXECUTE FUNCTION wxpay.history_record();
DROP FUNCTION wxpay.refunds_record();

SELECT pg_catalog.pg_extension_config_dump('wxpay.order_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.refund_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.notifications_id_seq', '');

----------------------------------------------------------------------
-- Who may act for a merchant, and see its rows.  allowed_roles holds
-- names, as before; when they are written, the trigger resolves them to
-- the roles' OIDs (allowed_role_oids), and only the OIDs count.  So a
-- dropped role's entry matches nobody, a new role created under the same
-- name inherits nothing, and a renamed role keeps its access.  The same
-- rule (wxpay.merchant_allows) decides the functions and row-level
-- security on every table with a mch_id; the extension's own code, its
-- owner and superusers are not subject to it.
----------------------------------------------------------------------

ALTER TABLE wxpay.merchants ADD COLUMN allowed_role_oids oid[];
COMMENT ON COLUMN wxpay.merchants.allowed_role_oids IS
'the roles of allowed_roles as resolved when allowed_roles was written; only these count (a dropped role''s OID matches nobody)';
-- Names that no longer resolve were dropped roles: they match nobody.
UPDATE wxpay.merchants m
   SET allowed_role_oids = ARRAY(SELECT g.oid FROM pg_catalog.unnest(m.allowed_roles) r
								  JOIN pg_catalog.pg_roles g ON g.rolname OPERATOR(pg_catalog.=) r)
 WHERE allowed_roles IS NOT NULL;

-- allowed_roles is resolved to OIDs when it is written (named in an INSERT
-- or an UPDATE's SET list, even with the same value: that is a decision),
-- never later, so a role dropped and created again under its name does not
-- inherit.  The OIDs are never written directly.
CREATE FUNCTION wxpay.merchants_resolve_roles()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	missing text;
BEGIN
	IF TG_OP = 'UPDATE' AND NEW.allowed_role_oids IS DISTINCT FROM OLD.allowed_role_oids THEN
		PERFORM wxpay.refuse_row('23514', 'merchants', 'allowed_role_oids', NULL,
			format('allowed_role_oids of merchant %s follows allowed_roles and is not set directly', quote_literal(NEW.mch_id)),
			'Set allowed_roles; its roles are resolved when it is written.');
	END IF;
	SELECT string_agg(quote_ident(n), ', ') INTO missing
	  FROM unnest(NEW.allowed_roles) n WHERE NOT EXISTS (SELECT FROM pg_roles g WHERE g.rolname = n);
	IF missing IS NOT NULL THEN
		PERFORM wxpay.refuse_row('23503', 'merchants', 'allowed_roles', NULL,
			format('allowed_roles of merchant %s names roles that do not exist: %s', quote_literal(NEW.mch_id), missing),
			'Create the role first, or leave it out.');
	END IF;
	NEW.allowed_role_oids := CASE WHEN NEW.allowed_roles IS NOT NULL THEN
		ARRAY(SELECT g.oid FROM unnest(NEW.allowed_roles) n JOIN pg_roles g ON g.rolname = n) END;
	RETURN NEW;
END
$$;
CREATE TRIGGER merchants_resolve_roles BEFORE INSERT OR UPDATE OF allowed_roles, allowed_role_oids
	ON wxpay.merchants FOR EACH ROW EXECUTE FUNCTION wxpay.merchants_resolve_roles();

-- The role the session acts as (its SET ROLE), even inside SECURITY DEFINER.
CREATE FUNCTION wxpay.acting_role()
RETURNS oid
AS 'MODULE_PATHNAME', 'wxpay_acting_role'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wxpay.acting_role() IS
'the role the session acts as (session user or SET ROLE), not the definer of the function running';

-- In C (merchant.c): every unified order and notification asks it, and a
-- SQL function with a SET clause is parsed and planned again at each call.
CREATE FUNCTION wxpay.merchant_allows(role_oids oid[], role oid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'wxpay_merchant_allows'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wxpay.merchant_allows(oid[], oid) IS
'whether role may act for a merchant with these allowed roles: NULL allows every role granted EXECUTE; superusers may always';

-- The merchants the acting role may act for: every row policy uses it.
CREATE FUNCTION wxpay.visible_merchants()
RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(pg_catalog.array_agg(mch_id), '{}') FROM wxpay.merchants
	 WHERE wxpay.merchant_allows(allowed_role_oids, wxpay.acting_role())
$$;
COMMENT ON FUNCTION wxpay.visible_merchants() IS
'the merchants the acting role may act for and see the rows of';

CREATE OR REPLACE VIEW wxpay.merchant_info AS
	SELECT mch_id, appid, sign_type, notify_url, api_base,
		   ca_pem IS NOT NULL AS has_ca, cert_pem IS NOT NULL AS has_client_cert,
		   allowed_roles, created_at, updated_at,
		   ARRAY(SELECT o::regrole FROM pg_catalog.unnest(allowed_role_oids) o) AS allowed_role_ids
	  FROM wxpay.merchants
	 WHERE mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]);
COMMENT ON VIEW wxpay.merchant_info IS
'the merchants the caller may act for, without their secrets; allowed_role_ids shows what allowed_roles resolved to (a number: a dropped role)';

ALTER TABLE wxpay.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.order_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.refund_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.notifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_by_merchant ON wxpay.orders
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
CREATE POLICY order_events_by_merchant ON wxpay.order_events
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
CREATE POLICY refunds_by_merchant ON wxpay.refunds
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
CREATE POLICY refund_events_by_merchant ON wxpay.refund_events
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
-- A body that names no merchant, or one nobody may act for, is the owner's.
CREATE POLICY notifications_by_merchant ON wxpay.notifications
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));

-- Views over these tables see what the caller may see.
ALTER VIEW wxpay.worker_status SET (security_invoker = true);
ALTER VIEW wxpay.unmatched_payments SET (security_invoker = true);

----------------------------------------------------------------------
-- DROP DATABASE fails while the worker is connected to the database:
-- wxpay.worker_leave() sends it away for a while first.
----------------------------------------------------------------------

CREATE FUNCTION wxpay.worker_leave(away interval DEFAULT '10 minutes')
RETURNS boolean
AS 'MODULE_PATHNAME', 'wxpay_worker_leave'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION wxpay.worker_leave(interval) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.worker_leave(interval) IS
'ask the worker to leave its database for this long and wait until it has (then DROP DATABASE works); ''0'' calls it back';

----------------------------------------------------------------------
-- In-store payments (micropay, 付款码).  The till scans the payer's code;
-- wxpay_micropay records the order and asks WeChat Pay.  An outcome not
-- known at once (USERPAYING, SYSTEMERROR) is followed by the worker on a
-- fast schedule (wxpay.micropay_interval), and an order still unpaid when
-- its window (wxpay.micropay_window) closes is reversed over mutual TLS
-- until WeChat Pay confirms it: REVOKED.
----------------------------------------------------------------------

ALTER TABLE wxpay.orders DROP CONSTRAINT orders_trade_type_valid;
ALTER TABLE wxpay.orders ADD CONSTRAINT orders_trade_type_valid
	CHECK (trade_type OPERATOR(pg_catalog.=) ANY (ARRAY['APP', 'JSAPI', 'NATIVE', 'MWEB', 'MICROPAY']));
ALTER TABLE wxpay.orders ADD COLUMN reverse_after timestamptz;
ALTER TABLE wxpay.orders ADD COLUMN reverse_requested_at timestamptz;
ALTER TABLE wxpay.orders ADD COLUMN reverse_count integer NOT NULL DEFAULT 0;
ALTER TABLE wxpay.orders ADD CONSTRAINT orders_reverse_only_micropay
	CHECK (trade_type OPERATOR(pg_catalog.=) 'MICROPAY'
		   OR (reverse_after IS NULL AND reverse_requested_at IS NULL));
COMMENT ON COLUMN wxpay.orders.reverse_after IS
'micropay: when the worker stops waiting for the payer and reverses the order if it is still unpaid';
COMMENT ON COLUMN wxpay.orders.reverse_requested_at IS
'micropay: when a reverse was decided (window over unpaid, or wxpay_reverse); the worker repeats it until the order is REVOKED';
COMMENT ON COLUMN wxpay.orders.reverse_count IS 'micropay: reverse requests sent so far';
COMMENT ON COLUMN wxpay.orders.params IS
'the optional fields sent, as given; for micropay also auth_code_hmac (HMAC-SHA256 of the payer''s code under the API key: the code itself is never stored)';

ALTER TABLE wxpay.order_events DROP CONSTRAINT order_events_source_valid;
ALTER TABLE wxpay.order_events ADD CONSTRAINT order_events_source_valid
	CHECK (source OPERATOR(pg_catalog.=) ANY
		   (ARRAY['unifiedorder', 'notify', 'query', 'close', 'refund', 'manual', 'micropay', 'reverse']));

-- (OR REPLACE replaces the options too: security_invoker is said again.)
CREATE OR REPLACE VIEW wxpay.worker_status WITH (security_invoker = true) AS
	SELECT mch_id, out_trade_no, state, total_fee, created_at, time_expire,
		   CASE WHEN reverse_requested_at IS NOT NULL THEN 'reverse'
				WHEN reverse_after IS NOT NULL THEN 'query'
				WHEN time_expire OPERATOR(pg_catalog.<) pg_catalog.now() THEN 'close'
				ELSE 'query' END AS next_action,
		   next_query_at, query_count, last_query_at, last_error
	  FROM wxpay.orders
	 WHERE wxpay.order_state_pending(state)
	 ORDER BY next_query_at;

CREATE FUNCTION @extschema@.wxpay_micropay(mch_id text, out_trade_no text, total_fee integer,
	body text, spbill_create_ip text, auth_code text, extra jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_micropay'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_micropay(text, text, integer, text, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_micropay(text, text, integer, text, text, text, jsonb) IS
'charge the payer''s scanned code (付款码); recorded and committed before it is sent; returns state SUCCESS, USERPAYING or UNKNOWN at once';

CREATE FUNCTION @extschema@.wxpay_reverse(mch_id text, out_trade_no text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_reverse'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_reverse(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_reverse(text, text) IS
'cancel an unpaid micropay order over mutual TLS; state REVOKED once WeChat Pay confirms, else the worker repeats the reverse';

CREATE FUNCTION @extschema@.wxpay_micropay_wait(mch_id text, out_trade_no text, timeout interval)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_micropay_wait'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_micropay_wait(text, text, interval) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_micropay_wait(text, text, interval) IS
'wait, woken at the commit that settles it, until the order is no longer pending or timeout passes; returns its state';

----------------------------------------------------------------------
-- Paid events.  A NOTIFY in the paying transaction takes PostgreSQL's
-- global notification lock from pre-commit to the end of the commit, WAL
-- flush included, so paying commits could not be grouped; and every
-- listener, whatever its grants, read every payment's details.  Instead:
-- the transition to SUCCESS is an order_events row that commits with the
-- order; at commit the worker is woken (shared memory only); it appends
-- the newly committed ones to wxpay.paid_events in commit-safe order (only
-- events of transactions older than its snapshot's xmin, so none is
-- skipped by a slower commit) and sends one NOTIFY wxpay_order_paid per
-- batch, whose payload is only the newest seq.  Listeners read the events
-- back, under their own row security, with wxpay.paid_events_next(), which
-- keeps an acknowledged position per consumer.
----------------------------------------------------------------------

ALTER TABLE wxpay.order_events ADD COLUMN xid xid8;
COMMENT ON COLUMN wxpay.order_events.xid IS
'the transaction that wrote the event (NULL before 1.1): the worker publishes paid events in a safe order by it';
CREATE INDEX order_events_paid_xid_idx ON wxpay.order_events (xid) WHERE new_state OPERATOR(pg_catalog.=) 'SUCCESS';

CREATE TABLE wxpay.paid_events (
	seq			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id	bigint NOT NULL UNIQUE CONSTRAINT paid_events_event_fkey REFERENCES wxpay.order_events,
	mch_id		text NOT NULL,
	published_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
REVOKE ALL ON wxpay.paid_events FROM PUBLIC;
COMMENT ON TABLE wxpay.paid_events IS
'every transition of an order to SUCCESS, in the order the worker published it (seq); append-only';
CREATE TRIGGER paid_events_written_by_wxpay BEFORE INSERT ON wxpay.paid_events
	FOR EACH ROW EXECUTE FUNCTION wxpay.history_guard();
CREATE TRIGGER paid_events_append_only BEFORE UPDATE OR DELETE ON wxpay.paid_events
	FOR EACH ROW EXECUTE FUNCTION wxpay.forbid_change();
CREATE TRIGGER paid_events_no_truncate BEFORE TRUNCATE ON wxpay.paid_events
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.forbid_change();
ALTER TABLE wxpay.paid_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY paid_events_by_merchant ON wxpay.paid_events
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
SELECT pg_catalog.pg_extension_config_dump('wxpay.paid_events', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.paid_events_seq_seq', '');

-- Payments made before 1.1 are history, not news: published as they are.
INSERT INTO wxpay.paid_events (event_id, mch_id)
SELECT id, mch_id FROM wxpay.order_events WHERE new_state OPERATOR(pg_catalog.=) 'SUCCESS' ORDER BY id;

-- Where each consumer (per role) is: the seq of the last event it took.
CREATE TABLE wxpay.paid_event_consumers (
	role		oid NOT NULL,
	consumer	text NOT NULL CONSTRAINT paid_event_consumers_name_format
				CHECK (consumer OPERATOR(pg_catalog.~) '^[0-9A-Za-z_.:-]{1,64}$'),
	last_seq	bigint NOT NULL,
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (role, consumer)
);
REVOKE ALL ON wxpay.paid_event_consumers FROM PUBLIC;
COMMENT ON TABLE wxpay.paid_event_consumers IS
'each consumer''s acknowledged position in wxpay.paid_events (the last seq it took), per role';
SELECT pg_catalog.pg_extension_config_dump('wxpay.paid_event_consumers', '');

-- The next paid events for consumer (of the calling role), at most max,
-- of the merchants the caller may see; the position moves past them in the
-- caller's transaction, so a rollback hands them out again (at least
-- once).  A new consumer starts after the newest event.
CREATE FUNCTION @extschema@.wxpay_paid_events_next(consumer text, max integer DEFAULT 100)
RETURNS TABLE (seq bigint, mch_id text, out_trade_no text, transaction_id text, total_fee integer,
			   paid_at timestamptz, published_at timestamptz)
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me constant oid := wxpay.acting_role();
	visible constant text[] := wxpay.visible_merchants();
	pos bigint;
	last bigint;
	taken integer := 0;
	p record;
BEGIN
	IF max < 1 OR max > 10000 THEN
		RAISE EXCEPTION 'max must be between 1 and 10000, not %', max USING ERRCODE = '22023';
	END IF;
	SELECT c.last_seq INTO pos FROM wxpay.paid_event_consumers c
	 WHERE c.role = me AND c.consumer = wxpay_paid_events_next.consumer FOR UPDATE;
	IF NOT FOUND THEN
		pos := COALESCE((SELECT pe.seq FROM wxpay.paid_events pe ORDER BY pe.seq DESC LIMIT 1), 0);
		INSERT INTO wxpay.paid_event_consumers (role, consumer, last_seq)
		VALUES (me, wxpay_paid_events_next.consumer, pos);
	END IF;
	last := pos;
	FOR p IN SELECT pe.seq, pe.mch_id, pe.published_at, e.out_trade_no
			   FROM wxpay.paid_events pe JOIN wxpay.order_events e ON e.id = pe.event_id
			  WHERE pe.seq > pos ORDER BY pe.seq
	LOOP
		last := p.seq;
		CONTINUE WHEN NOT p.mch_id = ANY (visible);
		RETURN QUERY SELECT p.seq, o.mch_id, o.out_trade_no, o.transaction_id, o.total_fee, o.paid_at, p.published_at
					   FROM wxpay.orders o WHERE o.mch_id = p.mch_id AND o.out_trade_no = p.out_trade_no;
		taken := taken + 1;
		EXIT WHEN taken >= max;
	END LOOP;
	UPDATE wxpay.paid_event_consumers c SET last_seq = last, updated_at = now()
	 WHERE c.role = me AND c.consumer = wxpay_paid_events_next.consumer AND last > pos;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.wxpay_paid_events_next(text, integer) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_paid_events_next(text, integer) IS
'the paid events after this consumer''s position (its own merchants only), advancing the position in this transaction';

-- Move a consumer (of the calling role) to just after seq after_seq: 0
-- replays everything.
CREATE FUNCTION @extschema@.wxpay_paid_events_seek(consumer text, after_seq bigint)
RETURNS void
LANGUAGE sql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO wxpay.paid_event_consumers (role, consumer, last_seq)
	VALUES (wxpay.acting_role(), consumer, after_seq)
	ON CONFLICT (role, consumer) DO UPDATE SET last_seq = excluded.last_seq, updated_at = pg_catalog.now()
$$;
REVOKE ALL ON FUNCTION @extschema@.wxpay_paid_events_seek(text, bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_paid_events_seek(text, bigint) IS
'set this consumer''s position in wxpay.paid_events (0: from the beginning)';

-- An order or refund made due now (UPDATE ... SET next_query_at = now(),
-- to have it asked again at once) wakes the worker at commit.
CREATE FUNCTION wxpay.wake_worker()
RETURNS trigger
AS 'MODULE_PATHNAME', 'wxpay_wake_worker_trigger'
LANGUAGE C;
COMMENT ON FUNCTION wxpay.wake_worker() IS 'wakes the worker when the transaction commits';
CREATE TRIGGER orders_due_now AFTER UPDATE OF next_query_at ON wxpay.orders
	FOR EACH ROW WHEN (NEW.next_query_at OPERATOR(pg_catalog.<=) pg_catalog.now()
					   AND NEW.next_query_at OPERATOR(pg_catalog.<) OLD.next_query_at)
	EXECUTE FUNCTION wxpay.wake_worker();
CREATE TRIGGER refunds_due_now AFTER UPDATE OF next_query_at ON wxpay.refunds
	FOR EACH ROW WHEN (NEW.next_query_at OPERATOR(pg_catalog.<=) pg_catalog.now()
					   AND NEW.next_query_at OPERATOR(pg_catalog.<) OLD.next_query_at)
	EXECUTE FUNCTION wxpay.wake_worker();

----------------------------------------------------------------------
-- API v3 merchants (issue 18).  A merchant speaks v2 or v3
-- (merchants.protocol).  A v3 merchant's APIv3 key and certificate serial
-- are in wxpay.merchant_v3; it signs with merchants.key_pem (the same
-- apiclient_key.pem as v2's client certificate).  WeChat Pay's keys that
-- verify its answers and notifications are in wxpay.wechatpay_keys: any
-- number of platform certificates by serial, and at most one WeChat Pay
-- public key under its PUB_KEY_ID_... id.  These tables have no CHECK
-- (a failed CHECK echoes the whole row, secrets included): triggers
-- validate each row and raise messages that never show a secret.
----------------------------------------------------------------------

ALTER TABLE wxpay.merchants ADD COLUMN protocol text NOT NULL DEFAULT 'v2';
COMMENT ON COLUMN wxpay.merchants.protocol IS
'v2 (XML, MD5 / HMAC-SHA256 with api_key) or v3 (JSON, RSA with key_pem; settings in wxpay.merchant_v3)';

-- What a PEM text holds, for the triggers: 'private key', 'public key'
-- or 'certificate' (RSA of at least 2048 bits), else NULL.
CREATE FUNCTION wxpay.pem_kind(pem text)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_pem_kind'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION wxpay.pem_kind(text) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.pem_kind(text) IS
'private key, public key or certificate (RSA >= 2048 bits), else NULL';

CREATE FUNCTION wxpay.pem_certificate_serial(pem text)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_pem_certificate_serial'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION wxpay.pem_certificate_serial(text) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.pem_certificate_serial(text) IS
'a certificate''s serial as WeChat Pay shows it: upper-case hex, two digits per byte (a leading 0 is kept)';

CREATE FUNCTION wxpay.pem_keys_match(private_pem text, public_pem text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'wxpay_pem_keys_match'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION wxpay.pem_keys_match(text, text) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.pem_keys_match(text, text) IS
'whether a private key belongs to a certificate or public key';

CREATE FUNCTION wxpay.pem_certificate_validity(pem text, OUT not_before timestamptz, OUT not_after timestamptz)
AS 'MODULE_PATHNAME', 'wxpay_pem_certificate_validity'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION wxpay.pem_certificate_validity(text) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.pem_certificate_validity(text) IS
'a certificate''s notBefore and notAfter, else NULL';

CREATE FUNCTION wxpay.merchants_protocol_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.protocol IS NULL OR NEW.protocol NOT IN ('v2', 'v3') THEN
		PERFORM wxpay.refuse_row('23514', 'merchants', 'protocol', 'merchants_protocol_valid',
			format('protocol of merchant %s must be v2 or v3', quote_literal(NEW.mch_id)));
	END IF;
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION wxpay.merchants_protocol_check() FROM PUBLIC;
CREATE TRIGGER merchants_protocol_valid
	BEFORE INSERT OR UPDATE OF protocol ON wxpay.merchants
	FOR EACH ROW EXECUTE FUNCTION wxpay.merchants_protocol_check();

CREATE TABLE wxpay.merchant_v3 (
	mch_id		text PRIMARY KEY
				CONSTRAINT merchant_v3_merchant_fkey REFERENCES wxpay.merchants ON UPDATE CASCADE ON DELETE CASCADE,
	apiv3_key	text NOT NULL,
	serial_no	text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON wxpay.merchant_v3 FROM PUBLIC;
COMMENT ON TABLE wxpay.merchant_v3 IS
'API v3 settings of a merchant (its private key is merchants.key_pem); no PUBLIC access';
COMMENT ON COLUMN wxpay.merchant_v3.apiv3_key IS
'the 32-character APIv3 key from the merchant platform: the AES-256-GCM key of notifications and platform certificates';
COMMENT ON COLUMN wxpay.merchant_v3.serial_no IS
'serial of apiclient_cert.pem (upper-case hex); NULL on insert derives it from merchants.cert_pem';
SELECT pg_catalog.pg_extension_config_dump('wxpay.merchant_v3', '');

-- Validates a row against its merchant's key and certificate; messages
-- name the merchant and the column, never a value of a secret.
CREATE FUNCTION wxpay.merchant_v3_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m record;
	who text := quote_literal(COALESCE(NEW.mch_id, ''));
	cert_serial text;
BEGIN
	SELECT cert_pem, key_pem INTO m FROM wxpay.merchants WHERE mch_id = NEW.mch_id;
	IF NOT FOUND THEN
		PERFORM wxpay.refuse_row('23503', 'merchant_v3', 'mch_id', 'merchant_v3_merchant_fkey',
			format('unknown merchant %s', who), 'Insert the merchant into wxpay.merchants first.');
	END IF;
	IF NEW.apiv3_key IS NULL OR NEW.apiv3_key !~ '^[\x21-\x7e]{32}$' THEN
		PERFORM wxpay.refuse_row('23514', 'merchant_v3', 'apiv3_key', 'merchant_v3_apiv3_key_format',
			format('apiv3_key of merchant %s must be 32 printable ASCII characters', who),
			'It is the APIv3 key set on the merchant platform (API安全, APIv3密钥), the AES-256 key as it is; the value is not shown.');
	END IF;
	IF m.key_pem IS NULL OR wxpay.pem_kind(m.key_pem) IS DISTINCT FROM 'private key' THEN
		PERFORM wxpay.refuse_row('23514', 'merchants', 'key_pem', 'merchant_v3_needs_private_key',
			format('merchant %s needs key_pem, an unencrypted RSA private key of at least 2048 bits, for API v3', who),
			'Set wxpay.merchants.key_pem to apiclient_key.pem (and cert_pem to apiclient_cert.pem).');
	END IF;
	IF m.cert_pem IS NOT NULL THEN
		cert_serial := wxpay.pem_certificate_serial(m.cert_pem);
		IF cert_serial IS NULL OR wxpay.pem_kind(m.cert_pem) IS DISTINCT FROM 'certificate' THEN
			PERFORM wxpay.refuse_row('23514', 'merchants', 'cert_pem', 'merchant_v3_certificate',
				format('cert_pem of merchant %s is not an RSA certificate', who));
		END IF;
		IF NOT wxpay.pem_keys_match(m.key_pem, m.cert_pem) THEN
			PERFORM wxpay.refuse_row('23514', 'merchants', 'key_pem', 'merchant_v3_key_matches_certificate',
				format('key_pem of merchant %s does not belong to its cert_pem', who),
				'apiclient_key.pem and apiclient_cert.pem come as a pair from the merchant platform.');
		END IF;
	END IF;
	IF NEW.serial_no IS NULL THEN
		IF cert_serial IS NULL THEN
			PERFORM wxpay.refuse_row('23502', 'merchant_v3', 'serial_no', NULL,
				format('merchant %s has no cert_pem to take the certificate serial from', who),
				'Give serial_no (the merchant platform shows it under API安全) or set cert_pem.');
		END IF;
		NEW.serial_no := cert_serial;
	ELSIF NEW.serial_no !~ '^[0-9A-Fa-f]{1,40}$' THEN
		PERFORM wxpay.refuse_row('23514', 'merchant_v3', 'serial_no', 'merchant_v3_serial_no_format',
			format('serial_no of merchant %s must be the certificate serial in hex', who));
	ELSE
		NEW.serial_no := upper(NEW.serial_no);
		IF cert_serial IS NOT NULL AND NEW.serial_no <> cert_serial THEN
			PERFORM wxpay.refuse_row('23514', 'merchant_v3', 'serial_no', 'merchant_v3_serial_no_of_certificate',
				format('serial_no %s of merchant %s is not the serial %s of its cert_pem', NEW.serial_no, who, cert_serial));
		END IF;
	END IF;
	NEW.updated_at := now();
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION wxpay.merchant_v3_check() FROM PUBLIC;
CREATE TRIGGER merchant_v3_valid
	BEFORE INSERT OR UPDATE ON wxpay.merchant_v3
	FOR EACH ROW EXECUTE FUNCTION wxpay.merchant_v3_check();

-- A new key pair on wxpay.merchants (an API certificate renewed) goes
-- through the same checks as the merchant_v3 row, and the serial follows a
-- new certificate: otherwise the old serial would stay and every v3 call
-- would fail with SIGN_ERROR at WeChat Pay.
CREATE FUNCTION wxpay.merchant_v3_recheck()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE wxpay.merchant_v3
	   SET serial_no = CASE WHEN NEW.cert_pem IS DISTINCT FROM OLD.cert_pem
							 AND NEW.cert_pem IS NOT NULL THEN NULL ELSE serial_no END
	 WHERE mch_id OPERATOR(pg_catalog.=) NEW.mch_id;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION wxpay.merchant_v3_recheck() FROM PUBLIC;
CREATE TRIGGER merchants_v3_keys_recheck
	AFTER UPDATE OF cert_pem, key_pem ON wxpay.merchants
	FOR EACH ROW
	WHEN (OLD.cert_pem IS DISTINCT FROM NEW.cert_pem OR OLD.key_pem IS DISTINCT FROM NEW.key_pem)
	EXECUTE FUNCTION wxpay.merchant_v3_recheck();

CREATE TABLE wxpay.wechatpay_keys (
	mch_id		text NOT NULL
				CONSTRAINT wechatpay_keys_merchant_fkey REFERENCES wxpay.merchants ON UPDATE CASCADE ON DELETE CASCADE,
	serial		text NOT NULL,
	kind		text NOT NULL,
	pem			text NOT NULL,
	effective_at timestamptz,
	expires_at	timestamptz,
	source		text NOT NULL DEFAULT 'manual',
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (mch_id, serial)
);
CREATE UNIQUE INDEX wechatpay_keys_one_public_key ON wxpay.wechatpay_keys (mch_id)
	WHERE kind OPERATOR(pg_catalog.=) 'public_key';
REVOKE ALL ON wxpay.wechatpay_keys FROM PUBLIC;
COMMENT ON TABLE wxpay.wechatpay_keys IS
'keys that verify WeChat Pay''s v3 answers and notifications, chosen by Wechatpay-Serial; no PUBLIC access';
COMMENT ON COLUMN wxpay.wechatpay_keys.serial IS
'a platform certificate''s serial (upper-case hex; NULL on insert takes it from the certificate) or the public key''s PUB_KEY_ID_...';
COMMENT ON COLUMN wxpay.wechatpay_keys.kind IS 'certificate or public_key (set from pem)';
COMMENT ON COLUMN wxpay.wechatpay_keys.pem IS 'the platform certificate, or pub_key.pem';
COMMENT ON COLUMN wxpay.wechatpay_keys.expires_at IS 'a key is not used after this (NULL: no limit); a certificate''s is at most its notAfter, and taken from it when not given';
COMMENT ON COLUMN wxpay.wechatpay_keys.source IS 'manual (inserted by the DBA) or download (GET /v3/certificates)';
SELECT pg_catalog.pg_extension_config_dump('wxpay.wechatpay_keys', '');

CREATE FUNCTION wxpay.wechatpay_keys_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	what text := CASE WHEN NEW.pem IS NOT NULL THEN wxpay.pem_kind(NEW.pem) END;
	who text := quote_literal(COALESCE(NEW.mch_id, ''));
	validity record;
BEGIN
	IF NEW.source IS NULL OR NEW.source NOT IN ('manual', 'download') THEN
		PERFORM wxpay.refuse_row('23514', 'wechatpay_keys', 'source', 'wechatpay_keys_source_valid',
			format('source of a WeChat Pay key of merchant %s must be manual or download', who));
	END IF;
	IF what IS NULL OR what NOT IN ('certificate', 'public key') THEN
		PERFORM wxpay.refuse_row('23514', 'wechatpay_keys', 'pem', 'wechatpay_keys_pem_kind',
			format('a WeChat Pay key of merchant %s must be a platform certificate or a public key PEM (RSA, at least 2048 bits)', who),
			'pub_key.pem from the merchant platform, or a certificate from GET /v3/certificates.');
	END IF;
	IF what = 'public key' THEN
		IF NEW.serial IS NULL OR NEW.serial !~ '^PUB_KEY_ID_[0-9]{1,40}$' THEN
			PERFORM wxpay.refuse_row('23514', 'wechatpay_keys', 'serial', 'wechatpay_keys_public_key_id',
				format('a WeChat Pay public key of merchant %s needs its id PUB_KEY_ID_... as serial', who),
				'The merchant platform shows the id next to the key (API安全, 微信支付公钥).');
		END IF;
		IF EXISTS (SELECT FROM wxpay.wechatpay_keys k
					WHERE k.mch_id = NEW.mch_id AND k.kind = 'public_key' AND k.serial <> NEW.serial
					  AND (TG_OP = 'INSERT' OR k.serial <> OLD.serial)) THEN
			PERFORM wxpay.refuse_row('23505', 'wechatpay_keys', 'serial', 'wechatpay_keys_one_public_key',
				format('merchant %s already has a WeChat Pay public key', who),
				'A merchant has one WeChat Pay public key: UPDATE its row, or DELETE it first.');
		END IF;
		NEW.kind := 'public_key';
	ELSE
		IF NEW.serial IS NULL THEN
			NEW.serial := wxpay.pem_certificate_serial(NEW.pem);
		ELSIF upper(NEW.serial) <> wxpay.pem_certificate_serial(NEW.pem) THEN
			PERFORM wxpay.refuse_row('23514', 'wechatpay_keys', 'serial', 'wechatpay_keys_serial_of_certificate',
				format('serial %s is not the serial %s of the certificate for merchant %s',
					   quote_literal(NEW.serial), wxpay.pem_certificate_serial(NEW.pem), who));
		END IF;
		NEW.serial := upper(NEW.serial);
		NEW.kind := 'certificate';
		-- A certificate is not believed outside its own validity, whatever
		-- the row says.
		validity := wxpay.pem_certificate_validity(NEW.pem);
		NEW.effective_at := GREATEST(NEW.effective_at, validity.not_before);
		NEW.expires_at := LEAST(NEW.expires_at, validity.not_after);
	END IF;
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION wxpay.wechatpay_keys_check() FROM PUBLIC;
CREATE TRIGGER wechatpay_keys_valid
	BEFORE INSERT OR UPDATE ON wxpay.wechatpay_keys
	FOR EACH ROW EXECUTE FUNCTION wxpay.wechatpay_keys_check();

CREATE OR REPLACE VIEW wxpay.merchant_info AS
	SELECT mch_id, appid, sign_type, notify_url, api_base,
		   ca_pem IS NOT NULL AS has_ca, cert_pem IS NOT NULL AS has_client_cert,
		   allowed_roles, created_at, updated_at,
		   ARRAY(SELECT o::regrole FROM pg_catalog.unnest(allowed_role_oids) o) AS allowed_role_ids,
		   protocol
	  FROM wxpay.merchants
	 WHERE mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]);

----------------------------------------------------------------------
-- API v3 endpoints and platform certificates (issue 18, outbound side).
-- A v3 merchant's orders, queries, closes and refunds go through the same
-- SQL functions as v2's; a query by WeChat Pay's transaction id is new
-- for both protocols.  The worker downloads platform certificates into
-- wxpay.wechatpay_keys (source download) and records each merchant's
-- last download here.
----------------------------------------------------------------------

CREATE FUNCTION @extschema@.wxpay_orderquery_by_transaction_id(mch_id text, transaction_id text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_orderquery_by_transaction_id'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_orderquery_by_transaction_id(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_orderquery_by_transaction_id(text, text) IS
'ask WeChat Pay for the order a transaction_id names, apply it to wxpay.orders, return the verified answer';

CREATE TABLE wxpay.cert_downloads (
	mch_id		text PRIMARY KEY
				CONSTRAINT cert_downloads_merchant_fkey REFERENCES wxpay.merchants ON UPDATE CASCADE ON DELETE CASCADE,
	checked_at	timestamptz NOT NULL,
	status		text NOT NULL
				CONSTRAINT cert_downloads_status_valid CHECK (status IN ('ok', 'none', 'error')),
	message		text
);
REVOKE ALL ON wxpay.cert_downloads FROM PUBLIC;
COMMENT ON TABLE wxpay.cert_downloads IS
'the worker''s last GET /v3/certificates per v3 merchant: ok, none (404 RESOURCE_NOT_EXISTS: a public-key merchant) or error';

----------------------------------------------------------------------
-- API v3 notifications (issue 18): wxpay_handle_notify_v3 judges
-- payment and refund notifications of v3 merchants.  A v3 body names its
-- merchant only inside the encrypted resource, so the web tier passes
-- the mch_id of the notify URL (one URL per merchant).  The body is
-- recorded with its signature headers (only Wechatpay-* and Request-ID:
-- nothing secret) and, once verified, with its decrypted resource.
----------------------------------------------------------------------

ALTER TABLE wxpay.notifications ADD COLUMN headers jsonb;
ALTER TABLE wxpay.notifications ADD COLUMN resource jsonb;
COMMENT ON COLUMN wxpay.notifications.headers IS
'API v3: the Wechatpay-Timestamp, -Nonce, -Signature, -Serial, -Signature-Type and Request-ID headers received (NULL: a v2 body)';
COMMENT ON COLUMN wxpay.notifications.resource IS
'API v3: the resource decrypted with the APIv3 key, once the signature verified';

CREATE FUNCTION @extschema@.wxpay_handle_notify_v3(mch_id text, headers jsonb, body text,
	OUT status integer, OUT reply text)
RETURNS record
AS 'MODULE_PATHNAME', 'wxpay_handle_notify_v3'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_handle_notify_v3(text, jsonb, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_handle_notify_v3(text, jsonb, text) IS
'judge an API v3 notification (TRANSACTION.SUCCESS, REFUND.*) of the merchant its notify URL names, apply it once, record it; returns the HTTP status and body for WeChat Pay';

-- The amount of a v3 payment is in its decrypted resource.
CREATE OR REPLACE VIEW wxpay.unmatched_payments WITH (security_invoker = true) AS
	SELECT mch_id, out_trade_no, transaction_id, pg_catalog.min(total_fee) AS total_fee,
		   pg_catalog.min(received_at) AS first_received_at, pg_catalog.max(received_at) AS last_received_at,
		   pg_catalog.count(*) AS deliveries, pg_catalog.max(reason) AS reason
	  FROM (SELECT n.*, CASE WHEN n.headers IS NULL
							 THEN @extschema@.wxpay_from_xml(n.body) OPERATOR(pg_catalog.->>) 'total_fee'
							 ELSE n.resource OPERATOR(pg_catalog.#>>) '{amount,total}' END AS total_fee
			  FROM wxpay.notifications n) n
	 WHERE kind OPERATOR(pg_catalog.=) 'pay' AND verified AND outcome OPERATOR(pg_catalog.=) 'rejected'
	   AND NOT EXISTS (SELECT FROM wxpay.orders o
						WHERE o.mch_id OPERATOR(pg_catalog.=) n.mch_id
						  AND o.out_trade_no OPERATOR(pg_catalog.=) n.out_trade_no
						  AND o.transaction_id OPERATOR(pg_catalog.=) n.transaction_id)
	 GROUP BY mch_id, out_trade_no, transaction_id;

----------------------------------------------------------------------
-- Daily bills (issue 17): every bill WeChat Pay has for a merchant's day,
-- stored whole (in chunks of whole lines) and parsed into typed rows, each
-- different file a new version; and reconciliation of the trade bills
-- against our orders and refunds.  Amounts are integer fen, times
-- timestamptz (the files are in Beijing time).  The bills are unsigned:
-- nothing here changes an order or a refund on their word alone.
----------------------------------------------------------------------

-- Like every merchant column, checked by a trigger (a NOT NULL failure
-- would print the row, API key included), and shown in merchant_info.
ALTER TABLE wxpay.merchants ADD COLUMN bills_enabled boolean DEFAULT false;
COMMENT ON COLUMN wxpay.merchants.bills_enabled IS
'whether the worker downloads and reconciles this merchant''s daily ALL bill';
CREATE FUNCTION wxpay.merchants_validate_bills()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.bills_enabled IS NULL THEN
		PERFORM wxpay.refuse_row('23502', 'merchants', 'bills_enabled', NULL,
								 format('bills_enabled of merchant%s is required', COALESCE(' ' || quote_literal(NEW.mch_id), '')),
								 'true: the worker fetches the merchant''s daily bill; false: it does not.');
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER merchants_validate_bills BEFORE INSERT OR UPDATE OF bills_enabled ON wxpay.merchants
	FOR EACH ROW EXECUTE FUNCTION wxpay.merchants_validate_bills();
CREATE OR REPLACE VIEW wxpay.merchant_info AS
	SELECT mch_id, appid, sign_type, notify_url, api_base,
		   ca_pem IS NOT NULL AS has_ca, cert_pem IS NOT NULL AS has_client_cert,
		   allowed_roles, created_at, updated_at,
		   ARRAY(SELECT o::regrole FROM pg_catalog.unnest(allowed_role_oids) o) AS allowed_role_ids,
		   protocol, bills_enabled
	  FROM wxpay.merchants
	 WHERE mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]);

CREATE TABLE wxpay.bills (
	bill_id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	mch_id		text NOT NULL CONSTRAINT bills_merchant_fkey REFERENCES wxpay.merchants ON UPDATE RESTRICT ON DELETE RESTRICT,
	kind		text NOT NULL
				CONSTRAINT bills_kind_valid CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['trade', 'fundflow'])),
	bill_date	date NOT NULL,
	bill_type	text NOT NULL,
	version		integer NOT NULL CONSTRAINT bills_version_positive CHECK (version OPERATOR(pg_catalog.>) 0),
	changed		boolean NOT NULL,
	no_bill		boolean NOT NULL,
	fetched_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	byte_size	bigint NOT NULL CONSTRAINT bills_byte_size_valid CHECK (byte_size OPERATOR(pg_catalog.>=) 0),
	sha1		text CONSTRAINT bills_sha1_format CHECK (sha1 OPERATOR(pg_catalog.~) '^[0-9a-f]{40}$'),
	row_count	bigint,
	summary		jsonb,
	discrepancies integer,
	CONSTRAINT bills_type_valid CHECK (CASE kind
		WHEN 'trade' THEN bill_type OPERATOR(pg_catalog.=) ANY (ARRAY['ALL', 'SUCCESS', 'REFUND', 'RECHARGE_REFUND'])
		ELSE bill_type OPERATOR(pg_catalog.=) ANY (ARRAY['Basic', 'Operation', 'Fees']) END),
	CONSTRAINT bills_no_bill_has_no_file CHECK (no_bill OPERATOR(pg_catalog.=) (sha1 IS NULL)),
	CONSTRAINT bills_version_key UNIQUE (mch_id, kind, bill_date, bill_type, version)
);
REVOKE ALL ON wxpay.bills FROM PUBLIC;
COMMENT ON TABLE wxpay.bills IS
'every bill file downloaded: one row per different file of a (merchant, kind, day, type); an identical re-download adds nothing';
COMMENT ON COLUMN wxpay.bills.bill_type IS 'trade: ALL, SUCCESS, REFUND, RECHARGE_REFUND; fundflow: the account_type Basic, Operation, Fees';
COMMENT ON COLUMN wxpay.bills.changed IS 'a later version whose file differs from the one before: WeChat Pay changed the day''s bill';
COMMENT ON COLUMN wxpay.bills.no_bill IS 'WeChat Pay answered No Bill Exist: the day had no trades';
COMMENT ON COLUMN wxpay.bills.byte_size IS 'size of the (decompressed) file';
COMMENT ON COLUMN wxpay.bills.sha1 IS 'SHA-1 of the decompressed file, lower-case hex';
COMMENT ON COLUMN wxpay.bills.summary IS 'the summary line, checked against the rows at import: count, and every sum in fen';
COMMENT ON COLUMN wxpay.bills.discrepancies IS 'rows of wxpay.bill_discrepancies when it was imported (the view is live)';

-- The file in chunks of whole lines, about 1 MB each: an import never
-- holds the file twice.  Compressed with lz4 where the server has it
-- (Debian's does): a bill's text shrinks about sevenfold, and lz4 writes
-- it in half the time it takes to store it uncompressed; pglz would cost
-- more than it saves, so without lz4 the chunks are stored as they are.
CREATE TABLE wxpay.bill_chunks (
	bill_id		bigint NOT NULL CONSTRAINT bill_chunks_bill_fkey REFERENCES wxpay.bills ON UPDATE RESTRICT ON DELETE CASCADE,
	seq			integer NOT NULL,
	chunk		text NOT NULL,
	PRIMARY KEY (bill_id, seq)
);
DO $$
BEGIN
	ALTER TABLE wxpay.bill_chunks ALTER COLUMN chunk SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
	ALTER TABLE wxpay.bill_chunks ALTER COLUMN chunk SET STORAGE EXTERNAL;
END
$$;
REVOKE ALL ON wxpay.bill_chunks FROM PUBLIC;
COMMENT ON TABLE wxpay.bill_chunks IS 'the bill files, byte for byte, in order of seq; wxpay.bill_text(bill) joins them';

CREATE FUNCTION wxpay.bill_text(bill wxpay.bills)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.string_agg(chunk, '' ORDER BY seq) FROM wxpay.bill_chunks WHERE bill_id OPERATOR(pg_catalog.=) bill.bill_id $$;
REVOKE ALL ON FUNCTION wxpay.bill_text(wxpay.bills) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.bill_text(wxpay.bills) IS
'the whole file as downloaded (BOM and CRLF included): SELECT wxpay.bill_text(b) FROM wxpay.bills b';

-- Rows are loaded with COPY's machinery, a million at a time; a foreign
-- key to wxpay.bills would cost a lookup per row, so bill_id is checked by
-- the importer that writes it, and rows are never written otherwise.
CREATE TABLE wxpay.bill_rows (
	bill_id		bigint NOT NULL,
	line_no		integer NOT NULL,
	kind		text NOT NULL
				CONSTRAINT bill_rows_kind_valid CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['payment', 'refund'])),
	trade_time	timestamptz NOT NULL,
	appid		text,
	sub_mch_id	text,
	device_info text,
	transaction_id text NOT NULL,
	out_trade_no text NOT NULL,
	openid		text,
	trade_type	text,
	trade_state text NOT NULL,
	bank_type	text,
	fee_type	text,
	settlement_fee bigint,
	coupon_fee	bigint,
	refund_applied_at timestamptz,
	refund_success_at timestamptz,
	refund_id	text,
	out_refund_no text,
	refund_fee	bigint,
	coupon_refund_fee bigint,
	refund_type text,
	refund_status text,
	body		text,
	attach		text,
	service_fee numeric(20, 3),
	rate		text,
	total_fee	bigint,
	refund_request_fee bigint,
	rate_note	text,
	raw_line	text NOT NULL,
	PRIMARY KEY (bill_id, line_no)
);
-- Refund rows are few: the reconciliation finds them without a scan.
CREATE INDEX bill_rows_refunds ON wxpay.bill_rows (bill_id, out_refund_no) WHERE kind OPERATOR(pg_catalog.=) 'refund';
REVOKE ALL ON wxpay.bill_rows FROM PUBLIC;
COMMENT ON TABLE wxpay.bill_rows IS
'one row per payment or refund line of a trade bill; amounts in fen, times from Beijing time; the line as it was in raw_line';
COMMENT ON COLUMN wxpay.bill_rows.settlement_fee IS '应结订单金额 (legacy bills: 总金额), fen';
COMMENT ON COLUMN wxpay.bill_rows.total_fee IS '订单金额, fen (absent from legacy bills)';
COMMENT ON COLUMN wxpay.bill_rows.service_fee IS '手续费 in fen, exactly: the bill gives five decimals of yuan';
COMMENT ON COLUMN wxpay.bill_rows.refund_fee IS '退款金额, fen';
COMMENT ON COLUMN wxpay.bill_rows.refund_request_fee IS '申请退款金额, fen';

CREATE TABLE wxpay.fund_flow_rows (
	bill_id		bigint NOT NULL,
	line_no		integer NOT NULL,
	kind		text NOT NULL
				CONSTRAINT fund_flow_rows_kind_valid CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['income', 'expense'])),
	booked_at	timestamptz NOT NULL,
	biz_transaction_id text,
	flow_id		text NOT NULL,
	biz_name	text,
	biz_type	text,
	direction	text NOT NULL,
	amount		bigint NOT NULL,
	balance		bigint,
	applicant	text,
	remark		text,
	voucher_no	text,
	raw_line	text NOT NULL,
	PRIMARY KEY (bill_id, line_no)
);
REVOKE ALL ON wxpay.fund_flow_rows FROM PUBLIC;
COMMENT ON TABLE wxpay.fund_flow_rows IS
'one row per line of a fund-flow bill (资金账单); amount and balance in fen; remark and voucher_no unescaped (\r, \n)';

-- Written only by the extension (its functions and the worker), like the
-- history tables; checked once per statement, so the rows' COPY stays
-- batched.
CREATE TRIGGER bills_written_by_wxpay BEFORE INSERT OR UPDATE OR DELETE ON wxpay.bills
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.history_guard(
		'Bills are written by wxpay_downloadbill, wxpay_downloadfundflow, wxpay_bill_import and the worker.');
CREATE TRIGGER bill_chunks_written_by_wxpay BEFORE INSERT OR UPDATE OR DELETE ON wxpay.bill_chunks
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.history_guard(
		'Bills are written by wxpay_downloadbill, wxpay_downloadfundflow, wxpay_bill_import and the worker.');
CREATE TRIGGER bill_rows_written_by_wxpay BEFORE INSERT OR UPDATE OR DELETE ON wxpay.bill_rows
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.history_guard(
		'Bills are written by wxpay_downloadbill, wxpay_downloadfundflow, wxpay_bill_import and the worker.');
CREATE TRIGGER fund_flow_rows_written_by_wxpay BEFORE INSERT OR UPDATE OR DELETE ON wxpay.fund_flow_rows
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.history_guard(
		'Bills are written by wxpay_downloadbill, wxpay_downloadfundflow, wxpay_bill_import and the worker.');

SELECT pg_catalog.pg_extension_config_dump('wxpay.bills', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.bills_bill_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.bill_chunks', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.bill_rows', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.fund_flow_rows', '');

CREATE FUNCTION @extschema@.wxpay_downloadbill(mch_id text, bill_date date, bill_type text DEFAULT 'ALL',
											  gzip boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_downloadbill'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_downloadbill(text, date, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_downloadbill(text, date, text, boolean) IS
'download a day''s trade bill (/pay/downloadbill), store it and its rows, reconcile it; returns bill_id, version, outcome, rows, byte_size, sha1';

CREATE FUNCTION @extschema@.wxpay_downloadfundflow(mch_id text, bill_date date, account_type text DEFAULT 'Basic',
												  gzip boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_downloadfundflow'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_downloadfundflow(text, date, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_downloadfundflow(text, date, text, boolean) IS
'download a day''s fund-flow bill (/pay/downloadfundflow, client certificate, HMAC-SHA256) and store it and its rows';

-- The bill each day is judged by: the latest version.
CREATE VIEW wxpay.current_bills AS
	SELECT DISTINCT ON (mch_id, kind, bill_date, bill_type) *
	  FROM wxpay.bills
	 ORDER BY mch_id, kind, bill_date, bill_type, version DESC;
REVOKE ALL ON wxpay.current_bills FROM PUBLIC;
COMMENT ON VIEW wxpay.current_bills IS 'the latest version of every day''s bill';

-- A payment belongs to the Beijing day of its payment time, a refund to
-- the day WeChat Pay accepted it (here: the day it was recorded, which is
-- when it was sent).  A day is a range of timestamps, so a merchant's day
-- is found through these indexes, whatever its history's length.
CREATE INDEX orders_paid_at_idx ON wxpay.orders (mch_id, paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX refunds_created_at_idx ON wxpay.refunds (mch_id, created_at);

-- The parts are NOT MATERIALIZED, and the payments' part is computed per
-- bill (LATERAL), so that a query for one bill (bill_id = ...) reads that
-- bill's rows only.  A bill's payments and the orders paid here that day
-- meet in one full join on out_trade_no, each side read once; only what
-- does not match there is looked up by its order's key (a payment of
-- another day's order, an unknown one).
-- The bill's totals are its summary's (checked against its rows at
-- import), not its rows added up again.
-- A day's ALL bill and its SUCCESS and REFUND bills tell the same cases:
-- each side is reconciled from one bill only, so no case counts twice.
-- The payments from the newest (fetched last) of the day's ALL and SUCCESS
-- bills, the refunds from the newest of its ALL and REFUND bills, ALL on a
-- tie: a bill superseded (a No Bill Exist answer, then a real bill of
-- another type) no longer reports what it lacked.
CREATE VIEW wxpay.bill_discrepancies AS
	WITH day_bills AS NOT MATERIALIZED (
		SELECT bill_id, mch_id, bill_date, bill_type, summary,
			   bill_type OPERATOR(pg_catalog.<>) 'REFUND' AND bill_id OPERATOR(pg_catalog.=) pg_catalog.first_value(bill_id) OVER (
				   PARTITION BY mch_id, bill_date, bill_type OPERATOR(pg_catalog.=) 'REFUND'
				   ORDER BY fetched_at DESC, bill_type OPERATOR(pg_catalog.<>) 'ALL', bill_id DESC) AS pays,
			   bill_type OPERATOR(pg_catalog.<>) 'SUCCESS' AND bill_id OPERATOR(pg_catalog.=) pg_catalog.first_value(bill_id) OVER (
				   PARTITION BY mch_id, bill_date, bill_type OPERATOR(pg_catalog.=) 'SUCCESS'
				   ORDER BY fetched_at DESC, bill_type OPERATOR(pg_catalog.<>) 'ALL', bill_id DESC) AS refunds
		  FROM wxpay.current_bills
		 WHERE kind OPERATOR(pg_catalog.=) 'trade' AND bill_type OPERATOR(pg_catalog.<>) 'RECHARGE_REFUND'
	), b AS NOT MATERIALIZED (
		SELECT bill_id, mch_id, bill_date, bill_type, pays, refunds,
			   bill_date::pg_catalog.timestamp AT TIME ZONE 'Asia/Shanghai' AS day_start,
			   (bill_date OPERATOR(pg_catalog.+) 1)::pg_catalog.timestamp AT TIME ZONE 'Asia/Shanghai' AS day_end,
			   COALESCE(summary OPERATOR(pg_catalog.->>) 'total_fee', summary OPERATOR(pg_catalog.->>) 'settlement_fee', '0')::pg_catalog.numeric::bigint AS paid_total,
			   COALESCE(summary OPERATOR(pg_catalog.->>) 'refund_request_fee', summary OPERATOR(pg_catalog.->>) 'refund_fee', '0')::pg_catalog.numeric::bigint AS refunded_total
		  FROM day_bills
		 WHERE pays OR refunds
	), ref AS NOT MATERIALIZED (
		SELECT b.*, r.line_no, r.out_trade_no, r.out_refund_no, r.refund_id,
			   COALESCE(r.refund_request_fee, r.refund_fee) AS fee
		  FROM b JOIN wxpay.bill_rows r ON r.bill_id OPERATOR(pg_catalog.=) b.bill_id
		 WHERE b.refunds AND r.kind OPERATOR(pg_catalog.=) 'refund'
	), refunded_here AS NOT MATERIALIZED (
		SELECT b.bill_id, f.out_trade_no, f.out_refund_no, f.refund_id, f.refund_fee, f.state
		  FROM b JOIN wxpay.refunds f ON f.mch_id OPERATOR(pg_catalog.=) b.mch_id
		 WHERE b.refunds AND wxpay.refund_state_counts(f.state)
		   AND f.created_at OPERATOR(pg_catalog.>=) b.day_start AND f.created_at OPERATOR(pg_catalog.<) b.day_end
	), not_in_bill AS NOT MATERIALIZED (
		-- Our refunds of the day the bill lacks.  One sent just before
		-- midnight is dated by WeChat Pay's acceptance, after it: found in
		-- the next day's bill, it is that day's, like a payment of another
		-- day's order.
		SELECT h.* FROM refunded_here h JOIN b USING (bill_id)
		 WHERE NOT EXISTS (SELECT FROM ref r WHERE r.bill_id OPERATOR(pg_catalog.=) h.bill_id
								AND r.out_refund_no OPERATOR(pg_catalog.=) h.out_refund_no)
		   AND NOT EXISTS (SELECT FROM wxpay.current_bills n JOIN wxpay.bill_rows r
								ON r.bill_id OPERATOR(pg_catalog.=) n.bill_id AND r.kind OPERATOR(pg_catalog.=) 'refund'
							   AND r.out_refund_no OPERATOR(pg_catalog.=) h.out_refund_no
							WHERE n.mch_id OPERATOR(pg_catalog.=) b.mch_id AND n.kind OPERATOR(pg_catalog.=) 'trade'
							  AND n.bill_type OPERATOR(pg_catalog.<>) 'SUCCESS'
							  AND n.bill_date OPERATOR(pg_catalog.=) (b.bill_date OPERATOR(pg_catalog.+) 1))
	)
	SELECT b.mch_id, b.bill_date, b.bill_id, b.bill_type, d.kind, d.out_trade_no, NULL::text AS out_refund_no, d.transaction_id,
		   d.bill_fee, d.local_fee, d.local_state, d.line_no
	  FROM b CROSS JOIN LATERAL (
		-- What does not match between the bill's payments and the orders
		-- paid here that day: few rows, kept for the two uses below.
		WITH u AS MATERIALIZED (
			SELECT p.line_no, COALESCE(p.out_trade_no, h.out_trade_no) AS out_trade_no, p.transaction_id, p.fee,
				   h.total_fee AS here_fee
			  FROM (SELECT r.line_no, r.out_trade_no, r.transaction_id, COALESCE(r.total_fee, r.settlement_fee) AS fee
					  FROM wxpay.bill_rows r
					 WHERE b.pays AND r.bill_id OPERATOR(pg_catalog.=) b.bill_id AND r.kind OPERATOR(pg_catalog.=) 'payment') p
			  FULL JOIN
				   (SELECT o.out_trade_no, o.transaction_id, o.total_fee FROM wxpay.orders o
					 WHERE b.pays AND o.mch_id OPERATOR(pg_catalog.=) b.mch_id
					   AND wxpay.order_state_paid(o.state)
					   AND o.paid_at OPERATOR(pg_catalog.>=) b.day_start AND o.paid_at OPERATOR(pg_catalog.<) b.day_end) h
				ON h.out_trade_no OPERATOR(pg_catalog.=) p.out_trade_no
			 WHERE p.out_trade_no IS NULL OR h.out_trade_no IS NULL
				OR h.transaction_id OPERATOR(pg_catalog.<>) p.transaction_id OR h.total_fee OPERATOR(pg_catalog.<>) p.fee
		)
		-- Each such payment, judged by its order (of whatever day).
		SELECT CASE WHEN u.line_no IS NULL THEN 'success_not_in_bill'
					WHEN o.out_trade_no IS NULL THEN 'payment_unknown_here'
					WHEN NOT wxpay.order_state_paid(o.state) THEN 'paid_not_success_here'
					WHEN o.transaction_id OPERATOR(pg_catalog.<>) u.transaction_id THEN 'transaction_id_differs'
					ELSE 'amount_differs' END AS kind,
			   u.out_trade_no, COALESCE(u.transaction_id, o.transaction_id) AS transaction_id,
			   u.fee AS bill_fee, o.total_fee::bigint AS local_fee, o.state AS local_state, u.line_no
		  FROM u LEFT JOIN LATERAL (
			SELECT x.out_trade_no, x.state, x.transaction_id, x.total_fee FROM wxpay.orders x
			 WHERE x.mch_id OPERATOR(pg_catalog.=) b.mch_id AND x.out_trade_no OPERATOR(pg_catalog.=) u.out_trade_no
			 LIMIT 1) o ON true
		 WHERE u.line_no IS NULL OR o.out_trade_no IS NULL OR NOT wxpay.order_state_paid(o.state)
			OR o.transaction_id OPERATOR(pg_catalog.<>) u.transaction_id OR o.total_fee OPERATOR(pg_catalog.<>) u.fee
		-- The day's payment totals: the bill's (its summary, equal to its
		-- rows at import) and ours, which is the bill's less its side of
		-- the mismatches plus ours (matching payments count alike).
		UNION ALL
		SELECT 'payment_totals_differ', NULL, NULL, b.paid_total,
			   (b.paid_total OPERATOR(pg_catalog.-) COALESCE(pg_catalog.sum(u.fee), 0)
				OPERATOR(pg_catalog.+) COALESCE(pg_catalog.sum(u.here_fee), 0))::bigint, NULL, NULL
		  FROM u
		HAVING COALESCE(pg_catalog.sum(u.fee), 0) OPERATOR(pg_catalog.<>) COALESCE(pg_catalog.sum(u.here_fee), 0)
	) d
	UNION ALL
	SELECT r.mch_id, r.bill_date, r.bill_id, r.bill_type,
		   CASE WHEN f.out_refund_no IS NULL THEN 'refund_unknown_here' ELSE 'refund_amount_differs' END,
		   r.out_trade_no, r.out_refund_no, r.refund_id, r.fee, f.refund_fee, f.state, r.line_no
	  FROM ref r
	  LEFT JOIN wxpay.refunds f ON f.mch_id OPERATOR(pg_catalog.=) r.mch_id AND f.out_refund_no OPERATOR(pg_catalog.=) r.out_refund_no
	 WHERE f.out_refund_no IS NULL OR f.refund_fee OPERATOR(pg_catalog.<>) r.fee
	UNION ALL
	SELECT b.mch_id, b.bill_date, b.bill_id, b.bill_type, 'refund_not_in_bill', h.out_trade_no, h.out_refund_no, h.refund_id,
		   NULL, h.refund_fee, h.state, NULL
	  FROM not_in_bill h JOIN b USING (bill_id)
	UNION ALL
	SELECT b.mch_id, b.bill_date, b.bill_id, b.bill_type, t.kind, NULL, NULL, NULL, t.bill_fee, t.local_fee, NULL, NULL
	  FROM b CROSS JOIN LATERAL (
		-- Ours: the bill's refunds we made (of whatever day), and ours it lacks.
		VALUES ('refund_totals_differ', b.refunded_total,
				(SELECT COALESCE(pg_catalog.sum(f.refund_fee), 0)::bigint FROM ref r JOIN wxpay.refunds f
					ON f.mch_id OPERATOR(pg_catalog.=) r.mch_id AND f.out_refund_no OPERATOR(pg_catalog.=) r.out_refund_no
				  WHERE r.bill_id OPERATOR(pg_catalog.=) b.bill_id AND wxpay.refund_state_counts(f.state))
				OPERATOR(pg_catalog.+)
				(SELECT COALESCE(pg_catalog.sum(h.refund_fee), 0)::bigint FROM not_in_bill h WHERE h.bill_id OPERATOR(pg_catalog.=) b.bill_id))
	  ) AS t(kind, bill_fee, local_fee)
	 WHERE b.refunds AND t.bill_fee OPERATOR(pg_catalog.<>) t.local_fee;
REVOKE ALL ON wxpay.bill_discrepancies FROM PUBLIC;
COMMENT ON VIEW wxpay.bill_discrepancies IS
'what each day''s current trade bills and our orders and refunds disagree on, one row per case (each side of a day from one bill: bill_type), with a kind (see README "Daily bills")';

-- Counted, and announced, when a trade bill is imported.  The payload
-- says which merchant and day to look at and how many cases there are:
-- any role can LISTEN on any channel, so no order number and no amount.
CREATE FUNCTION wxpay.bill_reconcile(bill bigint)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b wxpay.bills;
	n integer;
BEGIN
	SELECT * INTO STRICT b FROM wxpay.bills WHERE bill_id OPERATOR(pg_catalog.=) bill;
	SELECT pg_catalog.count(*) INTO n FROM wxpay.bill_discrepancies d WHERE d.bill_id OPERATOR(pg_catalog.=) bill;
	UPDATE wxpay.bills SET discrepancies = n WHERE bill_id OPERATOR(pg_catalog.=) bill;
	IF n OPERATOR(pg_catalog.>) 0 THEN
		PERFORM pg_catalog.pg_notify('wxpay_bill_discrepancy',
			pg_catalog.jsonb_build_object('mch_id', b.mch_id, 'bill_date', b.bill_date, 'bill_type', b.bill_type,
										  'bill_id', b.bill_id, 'discrepancies', n)::text);
	END IF;
	RETURN n;
END
$$;
REVOKE ALL ON FUNCTION wxpay.bill_reconcile(bigint) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.bill_reconcile(bigint) IS
'count a bill''s discrepancies into wxpay.bills.discrepancies and NOTIFY wxpay_bill_discrepancy when there are any';

-- The bill functions written in SQL name their merchant as the C ones do:
-- an unknown merchant, or one the caller may not act for, is an error
-- (wxpay_merchant_get's), not an empty answer.  Called by the SECURITY
-- DEFINER functions below, whose caller it checks.
CREATE FUNCTION wxpay.merchant_require(mch_id text)
RETURNS void
AS 'MODULE_PATHNAME', 'wxpay_merchant_require'
LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION wxpay.merchant_require(text) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.merchant_require(text) IS
'raises unless mch_id is a merchant the caller may act for (22023 unknown, 42501 not allowed)';

-- SECURITY DEFINER, like the other merchant functions: the merchant check
-- decides what the caller sees.
CREATE FUNCTION @extschema@.wxpay_bill_summary(mch_id text, bill_date date)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result jsonb;
BEGIN
	PERFORM wxpay.merchant_require($1);
	WITH b AS (
		SELECT * FROM wxpay.current_bills c
		 WHERE c.mch_id OPERATOR(pg_catalog.=) $1 AND c.bill_date OPERATOR(pg_catalog.=) $2
		   AND c.kind OPERATOR(pg_catalog.=) 'trade' AND c.bill_type OPERATOR(pg_catalog.<>) 'RECHARGE_REFUND'
		 ORDER BY c.bill_type OPERATOR(pg_catalog.<>) 'ALL' LIMIT 1
	)
	SELECT pg_catalog.jsonb_build_object(
		'bill_id', b.bill_id, 'bill_type', b.bill_type, 'version', b.version, 'no_bill', b.no_bill,
		'fetched_at', b.fetched_at, 'rows', b.row_count, 'summary', b.summary,
		'payments', (SELECT pg_catalog.count(*) FROM wxpay.bill_rows r WHERE r.bill_id OPERATOR(pg_catalog.=) b.bill_id AND r.kind OPERATOR(pg_catalog.=) 'payment'),
		'refunds', (SELECT pg_catalog.count(*) FROM wxpay.bill_rows r WHERE r.bill_id OPERATOR(pg_catalog.=) b.bill_id AND r.kind OPERATOR(pg_catalog.=) 'refund'),
		'discrepancies', (SELECT pg_catalog.count(*) FROM wxpay.bill_discrepancies d
						   WHERE d.mch_id OPERATOR(pg_catalog.=) b.mch_id AND d.bill_date OPERATOR(pg_catalog.=) b.bill_date),
		'by_kind', COALESCE((SELECT pg_catalog.jsonb_object_agg(k.kind, k.n) FROM
			(SELECT d.kind, pg_catalog.count(*) AS n FROM wxpay.bill_discrepancies d
			  WHERE d.mch_id OPERATOR(pg_catalog.=) b.mch_id AND d.bill_date OPERATOR(pg_catalog.=) b.bill_date
			  GROUP BY d.kind) k), '{}'))
	  INTO result
	  FROM b;
	RETURN result;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.wxpay_bill_summary(text, date) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_bill_summary(text, date) IS
'a day''s reconciliation: its current trade bill (ALL first), its row counts, and the day''s discrepancies by kind (NULL: no bill downloaded)';

-- The fix for "paid at WeChat Pay but not paid here" goes through the
-- verified path, never through the unsigned bill: a pending order is
-- queried by the worker at once (orderquery's signed answer is applied as
-- usual); an order already final here (closed after a lost notification)
-- is asked about now, and the verified answer says whether it was paid,
-- which the state machine cannot apply: it is to be refunded or settled
-- by hand.
CREATE FUNCTION @extschema@.wxpay_bill_recheck(mch_id text, bill_date date,
											  OUT out_trade_no text, OUT local_state text, OUT action text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d record;
	answer jsonb;
BEGIN
	PERFORM wxpay.merchant_require($1);
	FOR d IN SELECT x.out_trade_no, x.local_state FROM wxpay.bill_discrepancies x
			  WHERE x.mch_id OPERATOR(pg_catalog.=) $1 AND x.bill_date OPERATOR(pg_catalog.=) $2
				AND x.kind OPERATOR(pg_catalog.=) 'paid_not_success_here'
			  ORDER BY x.out_trade_no
	LOOP
		out_trade_no := d.out_trade_no;
		local_state := d.local_state;
		IF wxpay.order_state_pending(d.local_state) THEN
			UPDATE wxpay.orders o SET next_query_at = pg_catalog.now()
			 WHERE o.mch_id OPERATOR(pg_catalog.=) $1 AND o.out_trade_no OPERATOR(pg_catalog.=) d.out_trade_no;
			action := 'query scheduled: the worker applies what orderquery verifies';
		ELSE
			BEGIN
				answer := @extschema@.wxpay_orderquery($1, d.out_trade_no);
				action := pg_catalog.format('verified by orderquery: trade_state %s', answer OPERATOR(pg_catalog.->>) 'trade_state');
			EXCEPTION WHEN SQLSTATE 'WX008' THEN
				-- SQLERRM says what to do; wxpay_refund takes only an order paid here.
				action := pg_catalog.format('verified by orderquery, not applicable here (%s is final): %s'
											' (on the merchant platform: wxpay_refund refuses an order not paid here)',
											d.local_state, SQLERRM);
			END;
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.wxpay_bill_recheck(text, date) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_bill_recheck(text, date) IS
'for each payment the day''s bill has and we do not count as paid: schedule the verified orderquery (pending orders) or run it (final ones); what was done';

-- The worker's attempts at each day's ALL bill (bill_worker.c).
CREATE TABLE wxpay.bill_fetches (
	mch_id		text NOT NULL CONSTRAINT bill_fetches_merchant_fkey REFERENCES wxpay.merchants ON UPDATE RESTRICT ON DELETE CASCADE,
	bill_date	date NOT NULL,
	attempts	integer NOT NULL,
	last_attempt_at timestamptz NOT NULL,
	next_attempt_at timestamptz NOT NULL,
	last_error	text,
	bill_id		bigint CONSTRAINT bill_fetches_bill_fkey REFERENCES wxpay.bills ON UPDATE RESTRICT ON DELETE SET NULL,
	PRIMARY KEY (mch_id, bill_date)
);
REVOKE ALL ON wxpay.bill_fetches FROM PUBLIC;
COMMENT ON TABLE wxpay.bill_fetches IS
'the worker''s attempts at a day''s ALL bill: how often, the last error (Bill Creating ...), when it tries again, the bill it got';
CREATE TRIGGER bill_fetches_written_by_wxpay BEFORE INSERT OR UPDATE OR DELETE ON wxpay.bill_fetches
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.history_guard(
		'The worker records its attempts at each day''s bill; wxpay_bill_backfill fetches a day again.');
SELECT pg_catalog.pg_extension_config_dump('wxpay.bill_fetches', '');

-- Over merchant_info (the caller's merchants, no secrets), so a role
-- needs no right on wxpay.merchants to read it.
CREATE VIEW wxpay.bill_status AS
	SELECT m.mch_id, d.day AS bill_date,
		   CASE WHEN b.bill_id IS NOT NULL THEN 'done'
				WHEN f.attempts IS NOT NULL THEN 'retrying'
				ELSE 'waiting' END AS status,
		   b.bill_id, b.fetched_at, b.no_bill, b.row_count,
		   -- live: the day's cases now, not those found at import
		   CASE WHEN b.bill_id IS NOT NULL THEN
				(SELECT pg_catalog.count(*)::integer FROM wxpay.bill_discrepancies x
				  WHERE x.mch_id OPERATOR(pg_catalog.=) m.mch_id AND x.bill_date OPERATOR(pg_catalog.=) d.day) END AS discrepancies,
		   f.attempts, f.last_attempt_at, f.last_error,
		   CASE WHEN b.bill_id IS NULL THEN
				GREATEST(f.next_attempt_at,
						 (d.day OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.+)
						  COALESCE(pg_catalog.current_setting('wxpay.bill_fetch_after', true), '10:00')::pg_catalog.time)
						 AT TIME ZONE 'Asia/Shanghai') END AS next_attempt_at
	  FROM wxpay.merchant_info m
	 CROSS JOIN (SELECT (pg_catalog.now() AT TIME ZONE 'Asia/Shanghai')::pg_catalog.date OPERATOR(pg_catalog.-) 1 AS day) d
	  LEFT JOIN wxpay.current_bills b ON b.mch_id OPERATOR(pg_catalog.=) m.mch_id AND b.kind OPERATOR(pg_catalog.=) 'trade'
		   AND b.bill_type OPERATOR(pg_catalog.=) 'ALL' AND b.bill_date OPERATOR(pg_catalog.=) d.day
	  LEFT JOIN wxpay.bill_fetches f ON f.mch_id OPERATOR(pg_catalog.=) m.mch_id AND f.bill_date OPERATOR(pg_catalog.=) d.day
	 WHERE m.bills_enabled;
REVOKE ALL ON wxpay.bill_status FROM PUBLIC;
COMMENT ON VIEW wxpay.bill_status IS
'for every merchant with bills_enabled: yesterday''s ALL bill (Beijing time), whether the worker has it, the day''s open discrepancies (live), its retries';

-- Which days have a complete bill WeChat Pay still keeps: the rule of
-- wxpay_downloadbill, wxpay_downloadfundflow and wxpay_bill_import (C:
-- wxpay_bill_check_date), for SQL callers.
CREATE FUNCTION wxpay.bill_check_date(day date, downloadable boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_bill_check_date_sql'
LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION wxpay.bill_check_date(date, boolean) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.bill_check_date(date, boolean) IS
'day as yyyyMMdd, or 22023: not over yet in Beijing time, or (downloadable) older than the three months WeChat Pay keeps';

-- Days the worker did not fetch (bills enabled later, the worker down):
-- each day's ALL bill through wxpay_downloadbill, a failure reported for
-- its day without stopping the others.
CREATE FUNCTION @extschema@.wxpay_bill_backfill(mch_id text, from_date date, to_date date,
											   OUT bill_date date, OUT outcome text, OUT discrepancies integer)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	answer jsonb;
BEGIN
	PERFORM wxpay.merchant_require(mch_id);
	IF from_date OPERATOR(pg_catalog.>) to_date THEN
		RAISE EXCEPTION 'from_date % is after to_date %', from_date, to_date USING ERRCODE = '22023';
	END IF;
	PERFORM wxpay.bill_check_date(from_date, true), wxpay.bill_check_date(to_date, true);
	FOR bill_date IN SELECT d::pg_catalog.date FROM pg_catalog.generate_series(from_date, to_date, '1 day') d LOOP
		BEGIN
			answer := @extschema@.wxpay_downloadbill(mch_id, bill_date, 'ALL', true);
			outcome := answer OPERATOR(pg_catalog.->>) 'outcome';
			discrepancies := (answer OPERATOR(pg_catalog.->>) 'discrepancies')::integer;
		EXCEPTION WHEN OTHERS THEN
			outcome := pg_catalog.format('failed (%s): %s', SQLSTATE, SQLERRM);
			discrepancies := NULL;
		END;
		RETURN NEXT;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.wxpay_bill_backfill(text, date, date) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_bill_backfill(text, date, date) IS
'download and reconcile each day''s ALL bill of a range (at most the last three months, yesterday at the latest); one row per day';

CREATE FUNCTION @extschema@.wxpay_bill_import(mch_id text, bill_date date, bill_type text, file bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_bill_import'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_bill_import(text, date, text, bytea) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_bill_import(text, date, text, bytea) IS
'import a bill file obtained otherwise (text or gzip; trade bill_type or fund-flow account_type) exactly as a downloaded one';

-- Row security like the other tables with a merchant: a role sees the
-- bills of the merchants it may act for; rows and chunks follow their bill.
ALTER TABLE wxpay.bills ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.bill_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.bill_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.fund_flow_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE wxpay.bill_fetches ENABLE ROW LEVEL SECURITY;
CREATE POLICY bills_by_merchant ON wxpay.bills
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
CREATE POLICY bill_chunks_by_merchant ON wxpay.bill_chunks
	USING (bill_id IN (SELECT bill_id FROM wxpay.bills));
CREATE POLICY bill_rows_by_merchant ON wxpay.bill_rows
	USING (bill_id IN (SELECT bill_id FROM wxpay.bills));
CREATE POLICY fund_flow_rows_by_merchant ON wxpay.fund_flow_rows
	USING (bill_id IN (SELECT bill_id FROM wxpay.bills));
CREATE POLICY bill_fetches_by_merchant ON wxpay.bill_fetches
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
ALTER VIEW wxpay.current_bills SET (security_invoker = true);
ALTER VIEW wxpay.bill_discrepancies SET (security_invoker = true);
ALTER VIEW wxpay.bill_status SET (security_invoker = true);

----------------------------------------------------------------------
-- A unified order writes its order twice: the row before the request,
-- the prepay_id after the answer.  Nothing looks orders up by prepay_id
-- (the client parameters are signed from the caller's), so the index on
-- it only made the second write a new index entry in every index of the
-- table; without it, and with room left in each page for that second
-- version, the update is HOT (heap-only: no index is written).
----------------------------------------------------------------------

DROP INDEX wxpay.orders_prepay_id_idx;
ALTER TABLE wxpay.orders SET (fillfactor = 90);

----------------------------------------------------------------------
-- The rules on an order's or a refund's own columns were CHECK
-- constraints.  PostgreSQL reads and prepares every CHECK expression
-- again for each statement that writes the table: for the orders' five,
-- a quarter of the database work of a unified order's two writes, and
-- part of every notification and worker answer.  The state guard
-- (wxpay.state_guard(), C) keeps them now, under the same constraint
-- names and SQLSTATE (23514); a rule on columns that never change
-- (out_trade_no, trade_type, body, total_fee; a refund's numbers and
-- amounts) is checked when the row is new.  Like the state machine,
-- they are not checked where triggers do not run: under
-- session_replication_role = replica (rows from a server that checked
-- them) or with the trigger disabled by the table's owner.
----------------------------------------------------------------------

ALTER TABLE wxpay.orders
	DROP CONSTRAINT orders_out_trade_no_format,
	DROP CONSTRAINT orders_trade_type_valid,
	DROP CONSTRAINT orders_body_length,
	DROP CONSTRAINT orders_total_fee_positive,
	DROP CONSTRAINT orders_reverse_only_micropay;
ALTER TABLE wxpay.refunds
	DROP CONSTRAINT refunds_out_refund_no_format,
	DROP CONSTRAINT refunds_refund_fee_positive,
	DROP CONSTRAINT refunds_total_fee_positive,
	DROP CONSTRAINT refunds_within_total;
COMMENT ON FUNCTION wxpay.state_guard() IS
'the state machine of orders and refunds and the rules on their columns (the constraints orders_out_trade_no_format, orders_trade_type_valid, orders_body_length, orders_total_fee_positive, orders_reverse_only_micropay, refunds_out_refund_no_format, refunds_refund_fee_positive, refunds_total_fee_positive, refunds_within_total), for every writer (BEFORE INSERT OR UPDATE)';

----------------------------------------------------------------------
-- Retention.  wxpay.notifications keeps every body received, duplicates
-- included, and is most of what a paid order leaves on disk.
-- wxpay.archive_notifications(older_than) moves the bodies no decision
-- reads again (accepted or duplicate, of orders no longer pending or
-- refunds that are final, received before the horizon) into
-- wxpay.notifications_archive, in one statement; a DBA exports that table
-- (COPY ... TO) and may then TRUNCATE it (the owner only).  Rejected
-- bodies, orders, refunds and their histories are never moved: they are
-- the audit trail.  A duplicate delivered after its body moved is judged
-- against its order, as always, and answered SUCCESS with no second
-- transition.
----------------------------------------------------------------------

CREATE TABLE wxpay.notifications_archive (
	id			bigint PRIMARY KEY,
	kind		text NOT NULL,
	received_at timestamptz NOT NULL,
	body		text NOT NULL,
	mch_id		text,
	out_trade_no text,
	out_refund_no text,
	transaction_id text,
	outcome		text NOT NULL,
	reason		text,
	verified	boolean NOT NULL,
	headers		jsonb,
	resource	jsonb,
	archived_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON wxpay.notifications_archive FROM PUBLIC;
COMMENT ON TABLE wxpay.notifications_archive IS
'notification bodies moved out of wxpay.notifications by wxpay.archive_notifications(), to export; append-only';
CREATE TRIGGER notifications_archive_written_by_wxpay BEFORE INSERT ON wxpay.notifications_archive
	FOR EACH ROW EXECUTE FUNCTION wxpay.history_guard();
CREATE TRIGGER notifications_archive_append_only BEFORE UPDATE OR DELETE ON wxpay.notifications_archive
	FOR EACH ROW EXECUTE FUNCTION wxpay.forbid_change();
ALTER TABLE wxpay.notifications_archive ENABLE ROW LEVEL SECURITY;
CREATE POLICY notifications_archive_by_merchant ON wxpay.notifications_archive
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
SELECT pg_catalog.pg_extension_config_dump('wxpay.notifications_archive', '');

-- The append-only guard lets exactly one thing through: the archive's
-- move out of notifications (its change source, set only by C code).
CREATE OR REPLACE FUNCTION wxpay.forbid_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND TG_TABLE_NAME = 'notifications'
	   AND wxpay.change_source() = 'archive' THEN
		RETURN OLD;
	END IF;
	RAISE EXCEPTION '% on % is not allowed: it is a permanent record', TG_OP, TG_TABLE_NAME
		USING ERRCODE = '23514';
END
$$;

CREATE FUNCTION wxpay.archive_notifications(older_than interval)
RETURNS bigint
AS 'MODULE_PATHNAME', 'wxpay_archive_notifications'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION wxpay.archive_notifications(interval) FROM PUBLIC;
COMMENT ON FUNCTION wxpay.archive_notifications(interval) IS
'moves settled notification bodies received more than older_than ago into wxpay.notifications_archive; returns how many';

----------------------------------------------------------------------
-- Payment anomalies (trial-v3 #5): an authentic report (a
-- notification or a query answer, v2 or v3) of an order already paid here,
-- with its transaction but another amount.  The order stays as paid and a
-- notification is answered as a success (refusing it only makes WeChat Pay
-- re-send it), but it is recorded with the outcome 'anomaly', logged as a
-- WARNING and kept here for the DBA to reconcile (src/anomalies.c).
----------------------------------------------------------------------

ALTER TABLE wxpay.notifications DROP CONSTRAINT notifications_outcome_valid;
ALTER TABLE wxpay.notifications ADD CONSTRAINT notifications_outcome_valid
	CHECK (outcome OPERATOR(pg_catalog.=) ANY (ARRAY['accepted', 'duplicate', 'anomaly', 'rejected']));

CREATE TABLE wxpay.payment_anomalies (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	found_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	mch_id		text NOT NULL,
	out_trade_no text NOT NULL,
	transaction_id text,
	source		text NOT NULL,
	reported_total_fee text,
	order_total_fee integer NOT NULL,
	reason		text NOT NULL
);
CREATE INDEX payment_anomalies_order_idx ON wxpay.payment_anomalies (mch_id, out_trade_no);
REVOKE ALL ON wxpay.payment_anomalies FROM PUBLIC;
COMMENT ON TABLE wxpay.payment_anomalies IS
'authentic reports (notifications, query answers) of a paid order with another amount: the order is left as paid; reconcile by hand';
COMMENT ON COLUMN wxpay.payment_anomalies.source IS
'what reported it: notify, query (the change source of order_events)';
COMMENT ON COLUMN wxpay.payment_anomalies.reported_total_fee IS
'the amount in fen as WeChat Pay reported it (text: as received)';
ALTER TABLE wxpay.payment_anomalies ENABLE ROW LEVEL SECURITY;
CREATE POLICY payment_anomalies_by_merchant ON wxpay.payment_anomalies
	USING (mch_id OPERATOR(pg_catalog.=) ANY ((SELECT wxpay.visible_merchants())::text[]));
SELECT pg_catalog.pg_extension_config_dump('wxpay.payment_anomalies', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.payment_anomalies_id_seq', '');

----------------------------------------------------------------------
-- The merchant cache.  Every notification, unified order and worker
-- answer loads its merchant; a backend keeps the rows it loaded and
-- forgets them whenever wxpay.merchants or wxpay.merchant_v3 changes:
-- these statement triggers queue a relcache invalidation of the table,
-- which every backend receives once the change commits (merchant.c).
-- They fire always (session_replication_role = replica too); while
-- either is missing or disabled, backends read the tables at every call.
----------------------------------------------------------------------

CREATE FUNCTION wxpay.merchant_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'wxpay_merchant_changed'
LANGUAGE C;
COMMENT ON FUNCTION wxpay.merchant_changed() IS
'empties every backend''s merchant cache once a change to wxpay.merchants or wxpay.merchant_v3 commits';
CREATE TRIGGER merchants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wxpay.merchants
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.merchant_changed();
ALTER TABLE wxpay.merchants ENABLE ALWAYS TRIGGER merchants_changed;
CREATE TRIGGER merchant_v3_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wxpay.merchant_v3
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.merchant_changed();
ALTER TABLE wxpay.merchant_v3 ENABLE ALWAYS TRIGGER merchant_v3_changed;
