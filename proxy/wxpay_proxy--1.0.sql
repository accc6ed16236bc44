/* wxpay_proxy--1.0.sql: pg_wxpay behind PL/Proxy */

\echo Use "CREATE EXTENSION wxpay_proxy" to load this file. \quit

-- The proxy database holds no merchant secrets and no orders: its tables
-- say which shard each merchant lives on, and keep the notifications that
-- could not be delivered to a shard.  The functions the application calls
-- are generated from a shard's catalogue (wxpay_proxy.sync) into the
-- schema wxpay has them in on the shard, and routed there by PL/Proxy.
CREATE SCHEMA wxpay_proxy;
REVOKE ALL ON SCHEMA wxpay_proxy FROM PUBLIC;
-- The generated functions call the routing functions below as the caller.
GRANT USAGE ON SCHEMA wxpay_proxy TO PUBLIC;
COMMENT ON SCHEMA wxpay_proxy IS
'pg_wxpay behind PL/Proxy: shards, the merchant directory, undeliverable notifications, the generator';

----------------------------------------------------------------------
-- The stable hash of mch_id: 32-bit FNV-1a over the UTF-8 bytes, as an
-- unsigned number.  Defined here, not borrowed (hashtext may change
-- between PostgreSQL versions and platforms), and tested with fixed
-- vectors.  It places a new merchant: home shard = hash mod shards.
----------------------------------------------------------------------

CREATE FUNCTION wxpay_proxy.mch_hash(mch_id text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bytes constant bytea := convert_to(mch_id, 'UTF8');
	h bigint := 2166136261;			-- the FNV offset basis
BEGIN
	FOR i IN 0 .. length(bytes) - 1 LOOP
		h := ((h # get_byte(bytes, i)) * 16777619) & 4294967295;	-- the FNV prime, mod 2^32
	END LOOP;
	RETURN h;
END
$$;
COMMENT ON FUNCTION wxpay_proxy.mch_hash(text) IS
'32-bit FNV-1a of the UTF-8 bytes of mch_id, 0 to 4294967295: the same on every version and platform';

----------------------------------------------------------------------
-- Shards and the PL/Proxy cluster.  Shards are numbered 0 to N-1; the
-- cluster is the SQL/MED server wxpay_shards, whose partitions p0..pP-1
-- (P a power of two, at least 16, as PL/Proxy requires) name shard
-- (i mod N), so partition s < N is shard s and routing returns s.
----------------------------------------------------------------------

CREATE TABLE wxpay_proxy.shards (
	shard		integer PRIMARY KEY
				CONSTRAINT shards_number_range CHECK (shard >= 0 AND shard < 1024),
	connstr		text NOT NULL UNIQUE
				CONSTRAINT shards_connstr_without_credentials
				CHECK (connstr !~* '(^|\s)(user|password)\s*='),
	ident		text UNIQUE,
	added_at	timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON wxpay_proxy.shards FROM PUBLIC;
COMMENT ON TABLE wxpay_proxy.shards IS
'the pg_wxpay shards, numbered from 0: libpq connection strings without user or password (those are in the user mappings)';
COMMENT ON COLUMN wxpay_proxy.shards.ident IS
'system identifier and database of the shard, learned by configure(): cross-shard readers name their rows'' shard by it';
SELECT pg_catalog.pg_extension_config_dump('wxpay_proxy.shards', '');

-- The identity of the database a partition reaches.
CREATE FUNCTION wxpay_proxy.shard_ident(i_shard integer)
RETURNS text
LANGUAGE plproxy
AS $$
	CLUSTER 'wxpay_shards';
	RUN ON i_shard;
	SELECT (pg_catalog.pg_control_system()).system_identifier::text || '/' || pg_catalog.current_database() AS shard_ident;
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.shard_ident(integer) FROM PUBLIC;

-- (Re)writes the cluster from wxpay_proxy.shards and learns each shard's
-- identity, so a wrong connection string fails here and not in a payment.
-- ALTER SERVER keeps the user mappings.  Returns the partition count.
CREATE FUNCTION wxpay_proxy.configure(connection_lifetime integer DEFAULT 1800)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
	top integer;
	parts integer := 16;
	have text[];
	want text[];
	opts text[] := ARRAY[format('connection_lifetime %L', connection_lifetime::text)];
	s record;
BEGIN
	SELECT count(*), max(shard) INTO n, top FROM wxpay_proxy.shards;
	IF n = 0 OR top <> n - 1 THEN
		RAISE EXCEPTION 'shards must be numbered 0 to N-1 (there are %, the highest is %)', n, top
			USING ERRCODE = '22023', HINT = 'INSERT INTO wxpay_proxy.shards (shard, connstr) VALUES (0, ''host=... dbname=...''), ...';
	END IF;
	WHILE parts < n LOOP
		parts := parts * 2;
	END LOOP;
	SELECT array_agg(format('p%s %L', i, (SELECT connstr FROM wxpay_proxy.shards WHERE shard = i % n)) ORDER BY i)
	  INTO STRICT want FROM generate_series(0, parts - 1) i;
	SELECT array_agg(split_part(o, '=', 1)) INTO have
	  FROM pg_foreign_server, unnest(srvoptions) o WHERE srvname = 'wxpay_shards';
	IF NOT EXISTS (SELECT FROM pg_foreign_server WHERE srvname = 'wxpay_shards') THEN
		EXECUTE format('CREATE SERVER wxpay_shards FOREIGN DATA WRAPPER plproxy OPTIONS (%s)',
					   array_to_string(opts || want, ', '));
	ELSE
		-- SET what exists, ADD what is new, DROP partitions beyond the count.
		SELECT array_agg(CASE WHEN split_part(w, ' ', 1) = ANY (have) THEN 'SET ' ELSE 'ADD ' END || w)
			   || COALESCE((SELECT array_agg('DROP ' || h) FROM unnest(have) h
							WHERE h ~ '^p[0-9]+$' AND substr(h, 2)::integer >= parts), '{}')
		  INTO STRICT opts FROM unnest(opts || want) w;
		EXECUTE format('ALTER SERVER wxpay_shards OPTIONS (%s)', array_to_string(opts, ', '));
	END IF;
	IF NOT EXISTS (SELECT FROM pg_user_mappings WHERE srvname = 'wxpay_shards' AND usename IN (current_user, 'public')) THEN
		RAISE NOTICE 'the shards are not checked yet: there is no user mapping for % on wxpay_shards', current_user
			USING HINT = 'CREATE USER MAPPING FOR CURRENT_USER SERVER wxpay_shards OPTIONS (user ..., password ...), then run configure() again.';
		RETURN parts;
	END IF;
	FOR s IN SELECT shard FROM wxpay_proxy.shards ORDER BY shard LOOP
		UPDATE wxpay_proxy.shards SET ident = wxpay_proxy.shard_ident(s.shard) WHERE shard = s.shard;
	END LOOP;
	RETURN parts;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.configure(integer) FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.configure(integer) IS
'write the PL/Proxy cluster wxpay_shards from wxpay_proxy.shards and check every shard answers; returns the partition count';

-- Every shard, whether it answers, and what went wrong if not.
CREATE FUNCTION wxpay_proxy.shard_health(OUT shard integer, OUT connstr text, OUT reachable boolean, OUT error text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
BEGIN
	FOR s IN SELECT d.shard, d.connstr, d.ident FROM wxpay_proxy.shards d ORDER BY d.shard LOOP
		shard := s.shard;
		connstr := s.connstr;
		BEGIN
			reachable := wxpay_proxy.shard_ident(s.shard) IS NOT DISTINCT FROM s.ident;
			error := CASE WHEN NOT reachable THEN 'answers as another database than configure() found' END;
		EXCEPTION WHEN OTHERS THEN
			reachable := false;
			error := SQLERRM;
		END;
		RETURN NEXT;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.shard_health() FROM PUBLIC;

----------------------------------------------------------------------
-- The merchant directory: which shard each merchant lives on.  A new
-- merchant goes to its home shard (mch_hash mod N); a moved one keeps
-- the shard it was moved to.  A frozen merchant (being moved) is routed
-- nowhere: calls raise WX001 (retry), notifications are kept for replay.
----------------------------------------------------------------------

CREATE TABLE wxpay_proxy.merchants (
	mch_id		text PRIMARY KEY
				CONSTRAINT merchants_mch_id_format CHECK (mch_id ~ '^[0-9A-Za-z_-]{1,32}$'),
	shard		integer NOT NULL CONSTRAINT merchants_shard_fkey REFERENCES wxpay_proxy.shards
				ON UPDATE RESTRICT ON DELETE RESTRICT,
	frozen_at	timestamptz,
	moved_from	integer,
	moved_at	timestamptz,
	registered_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON wxpay_proxy.merchants FROM PUBLIC;
COMMENT ON TABLE wxpay_proxy.merchants IS
'which shard each merchant is on; frozen_at set while it is being moved (its calls and notifications wait)';
SELECT pg_catalog.pg_extension_config_dump('wxpay_proxy.merchants', '');

CREATE FUNCTION wxpay_proxy.home_shard(mch_id text)
RETURNS integer
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (wxpay_proxy.mch_hash(mch_id) % count(*))::integer FROM wxpay_proxy.shards $$;
COMMENT ON FUNCTION wxpay_proxy.home_shard(text) IS
'the shard a new merchant goes to: mch_hash(mch_id) mod the number of shards';

-- Registers a merchant (on its home shard unless told otherwise) and
-- returns its shard: create its wxpay.merchants row there.
CREATE FUNCTION wxpay_proxy.add_merchant(mch_id text, shard integer DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO wxpay_proxy.merchants (mch_id, shard)
	VALUES (mch_id, COALESCE(shard, wxpay_proxy.home_shard(mch_id)))
	RETURNING merchants.shard
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.add_merchant(text, integer) FROM PUBLIC;

-- The merchants of every shard, with the shard they are on.
CREATE FUNCTION wxpay_proxy.shard_merchants(OUT shard_ident text, OUT mch_id text)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
	CLUSTER 'wxpay_shards';
	RUN ON ALL;
	SELECT (pg_catalog.pg_control_system()).system_identifier::text || '/' || pg_catalog.current_database() AS shard_ident,
		   m.mch_id FROM wxpay.merchant_info m;
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.shard_merchants() FROM PUBLIC;

-- Registers every merchant found on a shard that the directory does not
-- know (an existing pg_wxpay server becoming shard 0, say), where it is.
-- A merchant found on two shards is refused: that is a move half done.
CREATE FUNCTION wxpay_proxy.discover_merchants()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	twice text;
	added integer;
BEGIN
	CREATE TEMP TABLE found ON COMMIT DROP AS
		SELECT s.shard, f.mch_id FROM wxpay_proxy.shard_merchants() f JOIN wxpay_proxy.shards s ON s.ident = f.shard_ident;
	SELECT string_agg(t.mch_id, ', ') INTO twice
	  FROM (SELECT f.mch_id FROM found f
			 WHERE NOT EXISTS (SELECT FROM wxpay_proxy.merchants m WHERE m.mch_id = f.mch_id)
			 GROUP BY f.mch_id HAVING count(*) > 1) t;
	IF twice IS NOT NULL THEN
		RAISE EXCEPTION 'merchants on more than one shard: %', twice
			USING ERRCODE = '23505', HINT = 'Finish or undo their move (README, "Scaling out"), then register them.';
	END IF;
	INSERT INTO wxpay_proxy.merchants (mch_id, shard)
	SELECT f.mch_id, f.shard FROM found f ON CONFLICT (mch_id) DO NOTHING;
	GET DIAGNOSTICS added = ROW_COUNT;
	DROP TABLE found;
	RETURN added;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.discover_merchants() FROM PUBLIC;

-- The advisory lock class of a merchant's routing (any number, fixed).
CREATE FUNCTION wxpay_proxy.routing_lock_class()
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 2004381816 $$;

-- The shard of a merchant, for RUN ON.  Each call holds the merchant's
-- routing lock (shared) until its transaction ends, so a freeze can wait
-- for the calls already routed; a repeatable-read caller also locks the
-- row, so it cannot act on a directory entry older than a freeze.
CREATE FUNCTION wxpay_proxy.route(mch_id text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m record;
BEGIN
	IF mch_id IS NULL THEN
		RAISE EXCEPTION 'the call names no merchant the proxy can read' USING ERRCODE = '22023';
	END IF;
	PERFORM pg_advisory_xact_lock_shared(wxpay_proxy.routing_lock_class(), hashtext(mch_id));
	IF current_setting('transaction_isolation') = 'read committed' THEN
		SELECT d.shard, d.frozen_at INTO m FROM wxpay_proxy.merchants d WHERE d.mch_id = route.mch_id;
	ELSE
		SELECT d.shard, d.frozen_at INTO m FROM wxpay_proxy.merchants d WHERE d.mch_id = route.mch_id FOR SHARE;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'merchant % is not known to the proxy', quote_literal(left(mch_id, 40))
			USING ERRCODE = '22023',
			HINT = 'A DBA registers merchants with wxpay_proxy.add_merchant() or wxpay_proxy.discover_merchants().';
	END IF;
	IF m.frozen_at IS NOT NULL THEN
		RAISE EXCEPTION 'merchant % is being moved to another shard', quote_literal(mch_id)
			USING ERRCODE = 'WX001', HINT = 'Retry with identical parameters in a moment.';
	END IF;
	RETURN m.shard;
END
$$;
COMMENT ON FUNCTION wxpay_proxy.route(text) IS
'the shard of a merchant, for PL/Proxy''s RUN ON; raises 22023 for an unknown merchant, WX001 while it is moved';

----------------------------------------------------------------------
-- Notifications the proxy could not deliver: no merchant to be read, an
-- unknown or frozen merchant, a shard that is down.  Each is recorded
-- here and answered FAIL (WeChat Pay delivers it again later); a frozen
-- merchant's are replayed once it is moved.
----------------------------------------------------------------------

CREATE TABLE wxpay_proxy.notifications (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	handler		text NOT NULL,
	mch_id		text,
	arguments	jsonb NOT NULL,
	sqlstate	text NOT NULL,
	reason		text NOT NULL,
	replayed_at timestamptz,
	replay_reply text
);
CREATE INDEX notifications_unreplayed_idx ON wxpay_proxy.notifications (mch_id, id) WHERE replayed_at IS NULL;
REVOKE ALL ON wxpay_proxy.notifications FROM PUBLIC;
COMMENT ON TABLE wxpay_proxy.notifications IS
'notifications no shard took: the handler called, its arguments, why (the error), and the reply of a replay';
SELECT pg_catalog.pg_extension_config_dump('wxpay_proxy.notifications', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay_proxy.notifications_id_seq', '');

-- The mch_id of a v2 body, read without parsing it: exactly one
-- <mch_id> element, with a well-formed value; NULL for anything else (a
-- DOCTYPE, over 1 MB, none, two).  Never raises.  The shard judges the
-- body; this only decides where it goes.
CREATE FUNCTION wxpay_proxy.body_mch_id(body text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN octet_length(body) <= 1048576 AND body !~* '<!(DOCTYPE|ENTITY)'
				 AND (SELECT count(*) FROM regexp_matches(body, '<mch_id[\s/>]', 'g')) = 1 THEN
		(SELECT COALESCE(m[1], m[2]) FROM regexp_matches(body,
			'<mch_id>\s*(?:<!\[CDATA\[([0-9A-Za-z_-]{1,32})\]\]>|([0-9A-Za-z_-]{1,32}))\s*</mch_id>') m)
	END
$$;
COMMENT ON FUNCTION wxpay_proxy.body_mch_id(text) IS
'the mch_id a v2 notification body names, or NULL; never raises';

-- Holds a merchant's routing lock (shared) until the transaction ends.  A
-- notification handler takes it before its attempt, so the lock still
-- covers the record of a failed attempt (the attempt's own is released
-- with its subtransaction): a replay, which waits for the lock, sees every
-- notification kept before it.
CREATE FUNCTION wxpay_proxy.hold_routing(mch_id text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT FROM pg_advisory_xact_lock_shared(wxpay_proxy.routing_lock_class(), hashtext(mch_id)) WHERE mch_id IS NOT NULL $$;

-- Records an undeliverable notification and returns the FAIL reply (v2
-- XML, or the v3 JSON body).  Runs as the extension's owner: callers of
-- the handlers cannot read or change the table.
CREATE FUNCTION wxpay_proxy.refuse_notification(handler text, mch_id text, arguments jsonb,
	sqlstate text, reason text, reply_format text)
RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO wxpay_proxy.notifications (handler, mch_id, arguments, sqlstate, reason)
	VALUES (handler, mch_id, arguments, sqlstate, left(reason, 1000));
	SELECT CASE reply_format
		WHEN 'json' THEN '{"code": "FAIL", "message": "失败"}'
		ELSE '<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[rejected]]></return_msg></xml>' END
$$;
COMMENT ON FUNCTION wxpay_proxy.refuse_notification(text, text, jsonb, text, text, text) IS
'record a notification no shard took, and return the FAIL reply (xml: v2, json: v3)';

----------------------------------------------------------------------
-- The application's functions, generated from a shard's catalogue: every
-- function of the wxpay extension outside its schema wxpay.  How each is
-- routed follows from its signature:
--   merchant:     first argument mch_id text: RUN ON its merchant's shard;
--   notification: wxpay_handle_*: routed by the mch_id argument, or by the
--                 mch_id read from the body, and never raising (undelivered
--                 bodies go to wxpay_proxy.notifications, answered FAIL);
--   all:          set-returning or void without mch_id (the paid-event
--                 readers): RUN ON ALL, the rows of every shard;
--   any:          pure functions (not SECURITY DEFINER): RUN ON ANY.
-- Anything else is refused, so a new kind of function cannot be
-- mis-routed silently: the drift check fails until the generator knows it.
----------------------------------------------------------------------

-- The shard's API, read from its pg_proc.
CREATE FUNCTION wxpay_proxy.shard_api(i_shard integer,
	OUT schema_name text, OUT function_name text, OUT arguments text, OUT identity_arguments text,
	OUT result text, OUT retset boolean, OUT is_strict boolean, OUT security_definer boolean,
	OUT in_names text[], OUT in_types text[], OUT out_names text[], OUT out_types text[],
	OUT public_execute boolean, OUT description text)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
	CLUSTER 'wxpay_shards';
	RUN ON i_shard;
	SELECT n.nspname::text AS schema_name, p.proname::text AS function_name,
		   pg_catalog.pg_get_function_arguments(p.oid) AS arguments,
		   pg_catalog.pg_get_function_identity_arguments(p.oid) AS identity_arguments,
		   pg_catalog.pg_get_function_result(p.oid) AS result,
		   p.proretset AS retset, p.proisstrict AS is_strict, p.prosecdef AS security_definer,
		   ARRAY(SELECT COALESCE(p.proargnames[a.i], '') FROM pg_catalog.unnest(COALESCE(p.proallargtypes, p.proargtypes::pg_catalog.oid[])) WITH ORDINALITY a(t, i)
				  WHERE COALESCE(p.proargmodes[a.i], 'i') IN ('i', 'b', 'v') ORDER BY a.i) AS in_names,
		   ARRAY(SELECT pg_catalog.format_type(a.t, NULL) FROM pg_catalog.unnest(COALESCE(p.proallargtypes, p.proargtypes::pg_catalog.oid[])) WITH ORDINALITY a(t, i)
				  WHERE COALESCE(p.proargmodes[a.i], 'i') IN ('i', 'b', 'v') ORDER BY a.i) AS in_types,
		   ARRAY(SELECT COALESCE(p.proargnames[a.i], '') FROM pg_catalog.unnest(p.proallargtypes) WITH ORDINALITY a(t, i)
				  WHERE p.proargmodes[a.i] IN ('o', 'b', 't') ORDER BY a.i) AS out_names,
		   ARRAY(SELECT pg_catalog.format_type(a.t, NULL) FROM pg_catalog.unnest(p.proallargtypes) WITH ORDINALITY a(t, i)
				  WHERE p.proargmodes[a.i] IN ('o', 'b', 't') ORDER BY a.i) AS out_types,
		   p.proacl IS NULL OR EXISTS (SELECT FROM pg_catalog.aclexplode(p.proacl) x
										WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE') AS public_execute,
		   pg_catalog.obj_description(p.oid, 'pg_proc') AS description
	  FROM pg_catalog.pg_proc p
	  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
	  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e'
	  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'wxpay'
	 WHERE n.nspname <> 'wxpay' AND p.prokind = 'f'
	 ORDER BY 1, 2, 4;
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.shard_api(integer) FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.shard_api(integer) IS
'the application functions of the wxpay extension on a shard, from its pg_proc';

-- A function's signature as DROP FUNCTION takes it: schema.name(types).
CREATE FUNCTION wxpay_proxy.api_signature(schema_name text, function_name text, in_types text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT format('%I.%I(%s)', schema_name, function_name, array_to_string(in_types, ', ')) $$;

-- How a function of the shard's API is routed (see above), or NULL.
CREATE FUNCTION wxpay_proxy.routing_kind(function_name text, in_names text[], in_types text[],
	retset boolean, result text, security_definer boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN function_name LIKE 'wxpay\_handle\_%' AND in_names[1] = 'mch_id' AND in_types[1] = 'text' THEN 'notification'
		WHEN function_name LIKE 'wxpay\_handle\_%' AND in_names = ARRAY['body'] AND in_types = ARRAY['text'] THEN 'notification'
		WHEN function_name LIKE 'wxpay\_handle\_%' THEN NULL
		WHEN in_names[1] = 'mch_id' AND in_types[1] = 'text' THEN 'merchant'
		WHEN retset OR result = 'void' THEN 'all'
		WHEN NOT security_definer THEN 'any'
	END
$$;

-- The SQL of the proxy functions for one function of the shard's API: a
-- function of the same name and signature in the same schema, and for
-- notifications and void functions an inner PL/Proxy function of that
-- name in schema wxpay_proxy.
CREATE FUNCTION wxpay_proxy.function_sql(f record)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind constant text := wxpay_proxy.routing_kind(f.function_name, f.in_names, f.in_types, f.retset, f.result, f.security_definer);
	target constant text := format('%I.%I', f.schema_name, f.function_name);
	inner_fn constant text := format('wxpay_proxy.%I', f.function_name);
	header constant text := format('CREATE OR REPLACE FUNCTION %s(%s) RETURNS %s', target, f.arguments, f.result);
	params text := '';
	arglist text := '';
	strictness constant text := CASE WHEN f.is_strict THEN ' STRICT' ELSE '' END;
	by_body boolean;
	refuse text;
	fails text;
	sql text[];
BEGIN
	IF kind IS NULL THEN
		RAISE EXCEPTION 'wxpay_proxy does not know how to route %(%)', target, f.identity_arguments
			USING ERRCODE = '0A000',
			HINT = 'Its signature fits none of wxpay_proxy.routing_kind()''s rules: teach the generator before it is proxied.';
	END IF;
	FOR i IN 1 .. cardinality(f.in_names) LOOP
		params := params || CASE WHEN i > 1 THEN ', ' ELSE '' END || '$' || i;
		arglist := arglist || CASE WHEN i > 1 THEN ', ' ELSE '' END || quote_ident(f.in_names[i]);
	END LOOP;
	IF kind = 'merchant' THEN
		sql := ARRAY[format(E'%s LANGUAGE plproxy VOLATILE%s AS $wx$\n\tCLUSTER ''wxpay_shards'';\n\tRUN ON wxpay_proxy.route(mch_id);\n\tTARGET %s;\n$wx$',
							header, strictness, target)];
	ELSIF kind = 'notification' THEN
		-- The merchant: the mch_id argument, or the one the body names, read
		-- once; the inner PL/Proxy function then takes it first.
		by_body := f.in_names[1] <> 'mch_id';
		refuse := format('wxpay_proxy.refuse_notification(%L, routed, jsonb_build_array(%s), SQLSTATE, SQLERRM, %%L)',
						 wxpay_proxy.api_signature(f.schema_name, f.function_name, f.in_types), params);
		IF f.result = 'text' THEN
			fails := format('RETURN ' || refuse || ';', 'xml');
			sql := ARRAY[format('RETURN %s(%s);', inner_fn, CASE WHEN by_body THEN 'routed, ' ELSE '' END || params)];
		ELSIF f.out_names = ARRAY['status', 'reply'] AND f.out_types = ARRAY['integer', 'text'] THEN
			fails := format('status := 500; reply := ' || refuse || '; RETURN;', 'json');
			sql := ARRAY[format('SELECT r.status, r.reply INTO status, reply FROM %s(%s) r; RETURN;',
								inner_fn, CASE WHEN by_body THEN 'routed, ' ELSE '' END || params)];
		ELSE
			RAISE EXCEPTION 'wxpay_proxy does not know the reply of %(%): %', target, f.identity_arguments, f.result
				USING ERRCODE = '0A000', HINT = 'A notification handler returns text (v2) or (status integer, reply text) (v3).';
		END IF;
		sql := ARRAY[
			CASE WHEN by_body THEN
				format(E'CREATE OR REPLACE FUNCTION %s(routed_mch_id text, %s) RETURNS %s LANGUAGE plproxy VOLATILE AS $wx$\n\tCLUSTER ''wxpay_shards'';\n\tRUN ON wxpay_proxy.route(routed_mch_id);\n\tSELECT * FROM %s(%s);\n$wx$',
					   inner_fn, f.arguments, f.result, target, arglist)
			ELSE
				format(E'CREATE OR REPLACE FUNCTION %s(%s) RETURNS %s LANGUAGE plproxy VOLATILE AS $wx$\n\tCLUSTER ''wxpay_shards'';\n\tRUN ON wxpay_proxy.route(mch_id);\n\tTARGET %s;\n$wx$',
					   inner_fn, f.arguments, f.result, target)
			END,
			format(E'%s LANGUAGE plpgsql VOLATILE%s SET search_path = pg_catalog, pg_temp AS $wx$\n#variable_conflict use_variable\nDECLARE\n\trouted constant text := %s;\nBEGIN\n\tPERFORM wxpay_proxy.hold_routing(routed);\n\tBEGIN\n\t\t%s\n\tEXCEPTION WHEN OTHERS THEN\n\t\t%s\n\tEND;\nEND\n$wx$',
				   header, strictness,
				   CASE WHEN by_body THEN format('wxpay_proxy.body_mch_id($%s)', array_position(f.in_names, 'body')) ELSE '$1' END,
				   sql[1], fails)];
	ELSIF kind = 'all' AND f.result = 'void' THEN
		sql := ARRAY[
			format(E'CREATE OR REPLACE FUNCTION %s(%s) RETURNS SETOF integer LANGUAGE plproxy VOLATILE%s AS $wx$\n\tCLUSTER ''wxpay_shards'';\n\tRUN ON ALL;\n\tSELECT 1 AS done FROM %s(%s);\n$wx$',
				   inner_fn, f.arguments, strictness, target, arglist),
			format(E'%s LANGUAGE sql VOLATILE%s AS $wx$ SELECT FROM %s(%s) $wx$', header, strictness, inner_fn, params)];
	ELSE
		sql := ARRAY[format(E'%s LANGUAGE plproxy VOLATILE%s AS $wx$\n\tCLUSTER ''wxpay_shards'';\n\tRUN ON %s;\n\tTARGET %s;\n$wx$',
							header, strictness, CASE kind WHEN 'all' THEN 'ALL' ELSE 'ANY' END, target)];
	END IF;
	IF NOT f.public_execute THEN
		sql := sql || format('REVOKE ALL ON FUNCTION %s(%s) FROM PUBLIC', target, f.identity_arguments);
	END IF;
	RETURN sql || format('COMMENT ON FUNCTION %s(%s) IS %L', target, f.identity_arguments,
						 COALESCE(f.description || ' ', '') || '(wxpay_proxy: ' || kind || ')');
END
$$;

-- The whole generated SQL for the API of shard i_shard, one statement a
-- row: what sync() runs; `psql -Atc 'SELECT wxpay_proxy.generate()'`
-- prints it as a script.
CREATE FUNCTION wxpay_proxy.generate_statements(i_shard integer DEFAULT 0,
	OUT signature text, OUT kind text, OUT statement text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	f record;
BEGIN
	FOR f IN SELECT * FROM wxpay_proxy.shard_api(i_shard) LOOP
		signature := wxpay_proxy.api_signature(f.schema_name, f.function_name, f.in_types);
		kind := wxpay_proxy.routing_kind(f.function_name, f.in_names, f.in_types, f.retset, f.result, f.security_definer);
		FOREACH statement IN ARRAY wxpay_proxy.function_sql(f) LOOP
			RETURN NEXT;
		END LOOP;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.generate_statements(integer) FROM PUBLIC;

CREATE FUNCTION wxpay_proxy.generate(i_shard integer DEFAULT 0)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT '-- wxpay_proxy functions generated from shard ' || i_shard || E'\n'
		   || string_agg(statement, E';\n\n') || E';\n'
	  FROM wxpay_proxy.generate_statements(i_shard)
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.generate(integer) FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.generate(integer) IS
'the SQL of the proxy functions, generated from the wxpay catalogue of a shard';

-- The functions sync() made, so a function the shards dropped is
-- dropped here too.
CREATE TABLE wxpay_proxy.generated (
	signature	text PRIMARY KEY,
	kind		text NOT NULL,
	synced_at	timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON wxpay_proxy.generated FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('wxpay_proxy.generated', '');

-- Fingerprint of a shard's API, to see that every shard has the same.
CREATE FUNCTION wxpay_proxy.api_fingerprint(i_shard integer)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT md5(string_agg(format('%s.%s(%s) %s %s %s', a.schema_name, a.function_name, a.arguments, a.result, a.is_strict, a.retset),
						  E'\n' ORDER BY a.schema_name, a.function_name, a.identity_arguments))
	  FROM wxpay_proxy.shard_api(i_shard) a
$$;

-- Creates (or replaces) the proxy functions from shard 0's catalogue,
-- after checking every shard has the same, and drops those the shards no
-- longer have.  Run it after CREATE EXTENSION and after every ALTER
-- EXTENSION wxpay UPDATE of the shards.  A function whose result or
-- defaults changed is dropped and created again: its grants must then be
-- given again (a warning names it).  Returns the number of functions.
CREATE FUNCTION wxpay_proxy.sync()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	first text;
	s record;
	g record;
	made text[] := '{}';
	done integer := 0;
BEGIN
	first := wxpay_proxy.api_fingerprint(0);
	FOR s IN SELECT shard FROM wxpay_proxy.shards WHERE shard > 0 ORDER BY shard LOOP
		IF wxpay_proxy.api_fingerprint(s.shard) IS DISTINCT FROM first THEN
			RAISE EXCEPTION 'shard % has other wxpay functions than shard 0', s.shard
				USING ERRCODE = '55000', HINT = 'Install the same pg_wxpay and run ALTER EXTENSION wxpay UPDATE on every shard first.';
		END IF;
	END LOOP;
	FOR g IN SELECT * FROM wxpay_proxy.generate_statements(0) LOOP
		BEGIN
			EXECUTE g.statement;
		EXCEPTION WHEN invalid_function_definition THEN
			RAISE WARNING 'the signature of % changed: it is created again, give its grants again', g.signature;
			EXECUTE format('DROP FUNCTION %s', g.signature);
			EXECUTE g.statement;
		END;
		IF NOT g.signature = ANY (made) THEN
			made := made || g.signature;
			INSERT INTO wxpay_proxy.generated (signature, kind) VALUES (g.signature, g.kind)
			ON CONFLICT (signature) DO UPDATE SET kind = excluded.kind, synced_at = now();
			done := done + 1;
		END IF;
	END LOOP;
	FOR g IN DELETE FROM wxpay_proxy.generated WHERE NOT signature = ANY (made) RETURNING * LOOP
		EXECUTE format('DROP FUNCTION IF EXISTS %s', g.signature);
		IF g.kind IN ('notification', 'all') THEN
			EXECUTE format('DROP FUNCTION IF EXISTS wxpay_proxy.%s', substr(g.signature, strpos(g.signature, '.') + 1));
		END IF;
	END LOOP;
	RETURN done;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.sync() FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.sync() IS
'create the proxy functions from the shards'' wxpay catalogue (all shards must agree); returns how many';

-- Where the proxy's functions and a shard's differ: a function missing
-- here, or with other arguments (defaults included), result, strictness
-- or set-returning; or one here the shard no longer has.  Empty when in
-- step.  t/050 fails on any row.
CREATE FUNCTION wxpay_proxy.drift(OUT shard integer, OUT signature text, OUT problem text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
BEGIN
	FOR s IN SELECT d.shard FROM wxpay_proxy.shards d ORDER BY d.shard LOOP
		RETURN QUERY
		SELECT s.shard, wxpay_proxy.api_signature(a.schema_name, a.function_name, a.in_types),
			   CASE WHEN p.oid IS NULL THEN 'missing in the proxy'
					WHEN pg_get_function_arguments(p.oid) <> a.arguments
					THEN format('arguments: shard %s, proxy %s', a.arguments, pg_get_function_arguments(p.oid))
					WHEN pg_get_function_result(p.oid) <> a.result
					THEN format('result: shard %s, proxy %s', a.result, pg_get_function_result(p.oid))
					WHEN p.proisstrict <> a.is_strict THEN format('strict: shard %s, proxy %s', a.is_strict, p.proisstrict)
					WHEN p.proretset <> a.retset THEN format('set-returning: shard %s, proxy %s', a.retset, p.proretset)
			   END
		  FROM wxpay_proxy.shard_api(s.shard) a
		  LEFT JOIN (pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace)
			ON n.nspname = a.schema_name AND p.proname = a.function_name
		   AND pg_get_function_identity_arguments(p.oid) = a.identity_arguments
		 WHERE p.oid IS NULL OR pg_get_function_arguments(p.oid) <> a.arguments
			OR pg_get_function_result(p.oid) <> a.result OR p.proisstrict <> a.is_strict OR p.proretset <> a.retset;
		RETURN QUERY
		SELECT s.shard, g.signature, 'in the proxy, not on the shard'
		  FROM wxpay_proxy.generated g
		 WHERE NOT EXISTS (SELECT FROM wxpay_proxy.shard_api(s.shard) a
							WHERE wxpay_proxy.api_signature(a.schema_name, a.function_name, a.in_types) = g.signature);
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.drift() FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.drift() IS
'every difference between the proxy''s functions and a shard''s wxpay functions; empty when in step';

----------------------------------------------------------------------
-- Moving a merchant to another shard (README, "Scaling out"; the tool
-- proxy/wxpay_move_merchant runs every step): freeze it here, copy its
-- rows to the new shard under the restore rules and delete them from the
-- old one, switch its route, replay what arrived meanwhile.
----------------------------------------------------------------------

-- Freezes a merchant (its calls raise WX001, its notifications are kept
-- and answered FAIL), commits that, then waits until every call already
-- routed to its shard has ended: once it returns, nothing of the merchant
-- reaches its shard through this proxy.  A procedure (it commits), so no
-- SET clause: every name is qualified.
CREATE PROCEDURE wxpay_proxy.freeze_merchant(mch_id text, wait interval DEFAULT '30 seconds')
LANGUAGE plpgsql
AS $$
BEGIN
	UPDATE wxpay_proxy.merchants d SET frozen_at = COALESCE(d.frozen_at, pg_catalog.now())
	 WHERE d.mch_id OPERATOR(pg_catalog.=) freeze_merchant.mch_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'merchant % is not known to the proxy', pg_catalog.quote_literal(mch_id) USING ERRCODE = '22023';
	END IF;
	COMMIT;
	PERFORM pg_catalog.set_config('lock_timeout', (pg_catalog.date_part('epoch', wait) OPERATOR(pg_catalog.*) 1000)::bigint::text, true);
	PERFORM pg_catalog.pg_advisory_xact_lock(wxpay_proxy.routing_lock_class(), pg_catalog.hashtext(mch_id));
	COMMIT;
END
$$;
REVOKE ALL ON PROCEDURE wxpay_proxy.freeze_merchant(text, interval) FROM PUBLIC;
COMMENT ON PROCEDURE wxpay_proxy.freeze_merchant(text, interval) IS
'stop routing a merchant (calls: WX001, notifications: kept for replay) and wait for the calls in flight';

-- Routes a frozen merchant to its new shard and thaws it.
CREATE FUNCTION wxpay_proxy.switch_merchant(mch_id text, shard integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE wxpay_proxy.merchants d
	   SET moved_from = d.shard, shard = switch_merchant.shard, moved_at = now(), frozen_at = NULL
	 WHERE d.mch_id = switch_merchant.mch_id AND d.frozen_at IS NOT NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'merchant % is not frozen', quote_literal(mch_id)
			USING ERRCODE = '55000', HINT = 'CALL wxpay_proxy.freeze_merchant() first, and copy its rows.';
	END IF;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.switch_merchant(text, integer) FROM PUBLIC;

-- Thaws a frozen merchant where it is (a move given up before its rows
-- left the old shard).
CREATE FUNCTION wxpay_proxy.thaw_merchant(mch_id text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ UPDATE wxpay_proxy.merchants d SET frozen_at = NULL WHERE d.mch_id = thaw_merchant.mch_id $$;
REVOKE ALL ON FUNCTION wxpay_proxy.thaw_merchant(text) FROM PUBLIC;

-- Delivers again, in the order received, the notifications of a merchant
-- that no shard took (while it was frozen, or its shard was down),
-- through the same handlers; returns each one's reply.  A repeat of one
-- WeChat Pay meanwhile delivered itself is a duplicate on the shard.
CREATE FUNCTION wxpay_proxy.replay_notifications(mch_id text, OUT id bigint, OUT reply text)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n record;
	call text;
BEGIN
	-- After the calls that found the merchant frozen have recorded theirs.
	PERFORM pg_advisory_xact_lock(wxpay_proxy.routing_lock_class(), hashtext(mch_id));
	FOR n IN SELECT x.id, x.handler, x.arguments FROM wxpay_proxy.notifications x
			  WHERE x.mch_id = replay_notifications.mch_id AND x.replayed_at IS NULL
			  ORDER BY x.id FOR UPDATE LOOP
		-- handler is schema.name(type, ...); arguments the values, in order.
		SELECT format('SELECT %s(%s)::text', split_part(n.handler, '(', 1),
					  string_agg(CASE WHEN a.t = 'jsonb' THEN format('($1 -> %s)', a.i - 1)
									  ELSE format('($1 ->> %s)::%s', a.i - 1, a.t) END, ', ' ORDER BY a.i))
		  INTO STRICT call
		  FROM unnest(string_to_array(rtrim(split_part(n.handler, '(', 2), ')'), ', ')) WITH ORDINALITY a(t, i);
		EXECUTE call INTO reply USING n.arguments;
		UPDATE wxpay_proxy.notifications x SET replayed_at = clock_timestamp(), replay_reply = reply WHERE x.id = n.id;
		id := n.id;
		RETURN NEXT;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.replay_notifications(text) FROM PUBLIC;

----------------------------------------------------------------------
-- Reading across shards, for a DBA: each runs on every shard (RUN ON
-- ALL) as the caller's user mapping, so the shard's row security applies;
-- a shard that is down makes the whole question fail.
----------------------------------------------------------------------

CREATE FUNCTION wxpay_proxy.shard_orders(i_mch_id text,
	OUT shard_ident text, OUT mch_id text, OUT out_trade_no text, OUT state text, OUT total_fee integer,
	OUT transaction_id text, OUT created_at timestamptz, OUT paid_at timestamptz)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
	CLUSTER 'wxpay_shards';
	RUN ON ALL;
	SELECT (pg_catalog.pg_control_system()).system_identifier::text || '/' || pg_catalog.current_database() AS shard_ident,
		   o.mch_id, o.out_trade_no, o.state, o.total_fee, o.transaction_id, o.created_at, o.paid_at
	  FROM wxpay.orders o WHERE o.mch_id OPERATOR(pg_catalog.=) i_mch_id;
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.shard_orders(text) FROM PUBLIC;

CREATE FUNCTION wxpay_proxy.merchant_orders(mch_id text)
RETURNS TABLE (shard integer, out_trade_no text, state text, total_fee integer, transaction_id text,
			   created_at timestamptz, paid_at timestamptz)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.shard, o.out_trade_no, o.state, o.total_fee, o.transaction_id, o.created_at, o.paid_at
	  FROM wxpay_proxy.shard_orders(mch_id) o LEFT JOIN wxpay_proxy.shards s ON s.ident = o.shard_ident
	 ORDER BY o.created_at, o.out_trade_no
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.merchant_orders(text) FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.merchant_orders(text) IS
'the orders of a merchant on every shard (more than one only while it is moved), with the shard they are on';

CREATE FUNCTION wxpay_proxy.shard_paid_totals(i_from timestamptz, i_to timestamptz,
	OUT shard_ident text, OUT mch_id text, OUT orders bigint, OUT total_fee bigint)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
	CLUSTER 'wxpay_shards';
	RUN ON ALL;
	SELECT (pg_catalog.pg_control_system()).system_identifier::text || '/' || pg_catalog.current_database() AS shard_ident,
		   o.mch_id, pg_catalog.count(*) AS orders, pg_catalog.sum(o.total_fee)::bigint AS total_fee
	  FROM wxpay.orders o
	 WHERE wxpay.order_state_paid(o.state) AND o.paid_at OPERATOR(pg_catalog.>=) i_from AND o.paid_at OPERATOR(pg_catalog.<) i_to
	 GROUP BY o.mch_id;
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.shard_paid_totals(timestamptz, timestamptz) FROM PUBLIC;

CREATE FUNCTION wxpay_proxy.paid_totals(day date DEFAULT current_date)
RETURNS TABLE (mch_id text, shard integer, orders bigint, total_fee bigint)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT t.mch_id, s.shard, t.orders, t.total_fee
	  FROM wxpay_proxy.shard_paid_totals(day::timestamptz, (day + 1)::timestamptz) t
	  LEFT JOIN wxpay_proxy.shards s ON s.ident = t.shard_ident
	 ORDER BY t.mch_id, s.shard
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.paid_totals(date) FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.paid_totals(date) IS
'per merchant and shard: the orders paid on day (in the proxy''s TimeZone) and their amount, from every shard';

CREATE FUNCTION wxpay_proxy.shard_bill_discrepancies(i_day date,
	OUT shard_ident text, OUT mch_id text, OUT bill_type text, OUT kind text, OUT out_trade_no text,
	OUT out_refund_no text, OUT transaction_id text, OUT bill_fee bigint, OUT local_fee bigint, OUT local_state text)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
	CLUSTER 'wxpay_shards';
	RUN ON ALL;
	SELECT (pg_catalog.pg_control_system()).system_identifier::text || '/' || pg_catalog.current_database() AS shard_ident,
		   d.mch_id, d.bill_type, d.kind, d.out_trade_no, d.out_refund_no, d.transaction_id, d.bill_fee, d.local_fee,
		   d.local_state
	  FROM wxpay.bill_discrepancies d WHERE d.bill_date OPERATOR(pg_catalog.=) i_day;
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.shard_bill_discrepancies(date) FROM PUBLIC;

CREATE FUNCTION wxpay_proxy.bill_discrepancies(day date DEFAULT (pg_catalog.now() AT TIME ZONE 'Asia/Shanghai')::date - 1)
RETURNS TABLE (mch_id text, shard integer, bill_type text, kind text, out_trade_no text, out_refund_no text,
			   transaction_id text, bill_fee bigint, local_fee bigint, local_state text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT d.mch_id, s.shard, d.bill_type, d.kind, d.out_trade_no, d.out_refund_no, d.transaction_id, d.bill_fee,
		   d.local_fee, d.local_state
	  FROM wxpay_proxy.shard_bill_discrepancies(day) d
	  LEFT JOIN wxpay_proxy.shards s ON s.ident = d.shard_ident
	 ORDER BY d.mch_id, d.kind, d.out_trade_no, d.out_refund_no
$$;
REVOKE ALL ON FUNCTION wxpay_proxy.bill_discrepancies(date) FROM PUBLIC;
COMMENT ON FUNCTION wxpay_proxy.bill_discrepancies(date) IS
'wxpay.bill_discrepancies of a bill day (Beijing time; yesterday by default) from every shard, with the shard each is on';
