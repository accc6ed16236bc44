/* wxpay--1.0.sql: pg_wxpay install script */

\echo Use "CREATE EXTENSION wxpay" to load this file. \quit

DO $$
BEGIN
	IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
		RAISE EXCEPTION 'wxpay requires a UTF8 database, not %',
			pg_catalog.getdatabaseencoding()
			USING ERRCODE = '55000',
			HINT = 'WeChat Pay signs UTF-8 bytes; create the database with ENCODING ''UTF8''.';
	END IF;
END
$$;

-- Tables live in a fixed schema, like pg_cron's cron.job; functions go to
-- the schema given to CREATE EXTENSION.
CREATE SCHEMA wxpay;
REVOKE ALL ON SCHEMA wxpay FROM PUBLIC;
COMMENT ON SCHEMA wxpay IS 'pg_wxpay: merchants, orders, notifications, refunds and their history';

----------------------------------------------------------------------
-- Signing and XML: pure functions over jsonb parameter objects
----------------------------------------------------------------------

CREATE FUNCTION @extschema@.wxpay_sign(params jsonb, key text, sign_type text DEFAULT 'MD5')
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_sign'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_sign(jsonb, text, text) IS
'WeChat Pay v2 signature of a flat parameter object: MD5 or HMAC-SHA256, upper-case hex';

CREATE FUNCTION @extschema@.wxpay_verify(params jsonb, key text, sign_type text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'wxpay_verify'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_verify(jsonb, text, text) IS
'whether params->>''sign'' is the signature of params; algorithm from the argument, sign_type or the sign''s length';

CREATE FUNCTION @extschema@.wxpay_nonce(len integer DEFAULT 32)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_nonce'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_nonce(integer) IS
'random [A-Za-z0-9] string from pg_strong_random, for nonce_str';

CREATE FUNCTION @extschema@.wxpay_to_xml(params jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_to_xml'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_to_xml(jsonb) IS
'<xml> document of a flat parameter object, values in CDATA';

CREATE FUNCTION @extschema@.wxpay_from_xml(body text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_from_xml'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_from_xml(text) IS
'flat object of the root element''s children; refuses DOCTYPE, entities and bodies over 1 MB';

----------------------------------------------------------------------
-- Merchants: credentials, never readable by PUBLIC
----------------------------------------------------------------------

CREATE TABLE wxpay.merchants (
	mch_id		text PRIMARY KEY
				CHECK (mch_id OPERATOR(pg_catalog.~) '^[0-9A-Za-z_-]{1,32}$'),
	appid		text NOT NULL
				CHECK (appid OPERATOR(pg_catalog.~) '^[0-9A-Za-z_-]{1,32}$'),
	api_key		text NOT NULL
				CHECK (api_key OPERATOR(pg_catalog.~) '^[\x21-\x7e]{32}$'),
	sign_type	text NOT NULL DEFAULT 'MD5'
				CHECK (sign_type OPERATOR(pg_catalog.=) ANY (ARRAY['MD5', 'HMAC-SHA256'])),
	notify_url	text
				CHECK (notify_url OPERATOR(pg_catalog.~) '^https?://[^?#[:space:]]+$'
					   AND pg_catalog.length(notify_url) OPERATOR(pg_catalog.<=) 256),
	api_base	text NOT NULL DEFAULT 'https://api.mch.weixin.qq.com'
				CHECK (api_base OPERATOR(pg_catalog.~) '^https://[^/?#[:space:]]+(/[^?#[:space:]]*[^/?#[:space:]])?$'
					   OR api_base OPERATOR(pg_catalog.~) '^http://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?$'),
	ca_pem		text,
	cert_pem	text,
	key_pem		text,
	allowed_roles name[],
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK ((cert_pem IS NULL) OPERATOR(pg_catalog.=) (key_pem IS NULL))
);
REVOKE ALL ON wxpay.merchants FROM PUBLIC;
COMMENT ON TABLE wxpay.merchants IS 'WeChat Pay merchants: API key and client certificate; no PUBLIC access';
COMMENT ON COLUMN wxpay.merchants.api_key IS '32-character API key from the merchant platform (signing and refund-notification decryption)';
COMMENT ON COLUMN wxpay.merchants.api_base IS 'https://api.mch.weixin.qq.com in production; http:// only for loopback';
COMMENT ON COLUMN wxpay.merchants.ca_pem IS 'extra CA to trust for api_base (NULL: the system store); verification is always on';
COMMENT ON COLUMN wxpay.merchants.cert_pem IS 'apiclient_cert.pem, for /secapi/ (refunds)';
COMMENT ON COLUMN wxpay.merchants.key_pem IS 'apiclient_key.pem, for /secapi/ (refunds)';
COMMENT ON COLUMN wxpay.merchants.allowed_roles IS 'roles (and their members) that may act for this merchant; NULL: any role granted EXECUTE';

-- What a DBA or an application may see of a merchant: no secrets.
CREATE VIEW wxpay.merchant_info AS
	SELECT mch_id, appid, sign_type, notify_url, api_base,
		   ca_pem IS NOT NULL AS has_ca, cert_pem IS NOT NULL AS has_client_cert,
		   allowed_roles, created_at, updated_at
	  FROM wxpay.merchants;
REVOKE ALL ON wxpay.merchant_info FROM PUBLIC;
COMMENT ON VIEW wxpay.merchant_info IS 'merchants without their secrets';

----------------------------------------------------------------------
-- Orders and their history
----------------------------------------------------------------------

CREATE TABLE wxpay.orders (
	mch_id		text NOT NULL REFERENCES wxpay.merchants ON UPDATE RESTRICT ON DELETE RESTRICT,
	out_trade_no text NOT NULL
				CHECK (out_trade_no OPERATOR(pg_catalog.~) '^[0-9A-Za-z_|*@-]{1,32}$'),
	trade_type	text NOT NULL
				CHECK (trade_type OPERATOR(pg_catalog.=) ANY (ARRAY['APP', 'JSAPI', 'NATIVE', 'MWEB'])),
	body		text NOT NULL
				CHECK (pg_catalog.octet_length(body) OPERATOR(pg_catalog.<=) 128 AND body OPERATOR(pg_catalog.<>) ''),
	total_fee	integer NOT NULL CHECK (total_fee OPERATOR(pg_catalog.>) 0),
	spbill_create_ip text NOT NULL,
	attach		text,
	openid		text,
	product_id	text,
	params		jsonb NOT NULL DEFAULT '{}',
	prepay_id	text,
	code_url	text,
	mweb_url	text,
	prepay_at	timestamptz,
	state		text NOT NULL DEFAULT 'NOTPAY'
				CHECK (state OPERATOR(pg_catalog.=) ANY
					   (ARRAY['NOTPAY', 'USERPAYING', 'SUCCESS', 'REFUND', 'CLOSED', 'REVOKED', 'PAYERROR'])),
	transaction_id text,
	paid_at		timestamptz,
	payer		jsonb,
	time_expire timestamptz NOT NULL
				DEFAULT pg_catalog.now() OPERATOR(pg_catalog.+)
				COALESCE(pg_catalog.current_setting('wxpay.order_ttl', true), '2h')::pg_catalog.interval,
	next_query_at timestamptz NOT NULL
				DEFAULT pg_catalog.now() OPERATOR(pg_catalog.+)
				COALESCE(pg_catalog.current_setting('wxpay.poll_interval', true), '30s')::pg_catalog.interval,
	query_count integer NOT NULL DEFAULT 0,
	last_query_at timestamptz,
	last_error	text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (mch_id, out_trade_no),
	CHECK (state OPERATOR(pg_catalog.<>) ALL (ARRAY['SUCCESS', 'REFUND'])
		   OR (transaction_id IS NOT NULL AND paid_at IS NOT NULL))
);
CREATE UNIQUE INDEX orders_transaction_id_key ON wxpay.orders (mch_id, transaction_id)
	WHERE transaction_id IS NOT NULL;
CREATE INDEX orders_pending_idx ON wxpay.orders (next_query_at)
	WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['NOTPAY', 'USERPAYING']);
CREATE INDEX orders_prepay_id_idx ON wxpay.orders (prepay_id) WHERE prepay_id IS NOT NULL;
REVOKE ALL ON wxpay.orders FROM PUBLIC;
COMMENT ON TABLE wxpay.orders IS 'one row per (mch_id, out_trade_no); state follows WeChat''s trade_state, changed only along the state machine';
COMMENT ON COLUMN wxpay.orders.params IS 'the optional unifiedorder fields sent, as given';
COMMENT ON COLUMN wxpay.orders.next_query_at IS 'when the worker next asks WeChat Pay about this pending order';
COMMENT ON COLUMN wxpay.orders.last_error IS 'what went wrong the last time the worker asked, NULL if nothing';
COMMENT ON COLUMN wxpay.orders.payer IS 'payer fields from the verified notification or query: openid, bank_type, cash_fee, ...';

CREATE TABLE wxpay.order_events (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	mch_id		text NOT NULL,
	out_trade_no text NOT NULL,
	old_state	text,
	new_state	text NOT NULL,
	source		text NOT NULL
				CHECK (source OPERATOR(pg_catalog.=) ANY
					   (ARRAY['unifiedorder', 'notify', 'query', 'close', 'refund', 'manual'])),
	transaction_id text,
	db_user		text NOT NULL DEFAULT pg_catalog.session_user(),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	FOREIGN KEY (mch_id, out_trade_no) REFERENCES wxpay.orders ON UPDATE RESTRICT ON DELETE RESTRICT
);
CREATE INDEX order_events_order_idx ON wxpay.order_events (mch_id, out_trade_no, id);
REVOKE ALL ON wxpay.order_events FROM PUBLIC;
COMMENT ON TABLE wxpay.order_events IS 'every state change of every order, written by a trigger; append-only';

-- What caused the change being written: set by the extension's own C code
-- around its writes, 'manual' for anybody else.
CREATE FUNCTION wxpay.change_source()
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_change_source'
LANGUAGE C STABLE PARALLEL RESTRICTED;
REVOKE ALL ON FUNCTION wxpay.change_source() FROM PUBLIC;

-- The state machine, for every writer.
CREATE FUNCTION wxpay.orders_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	allowed constant jsonb := '{
		"NOTPAY":     ["USERPAYING", "SUCCESS", "CLOSED", "PAYERROR", "REVOKED"],
		"USERPAYING": ["NOTPAY", "SUCCESS", "CLOSED", "PAYERROR", "REVOKED"],
		"PAYERROR":   ["NOTPAY", "USERPAYING", "SUCCESS", "CLOSED", "REVOKED"],
		"SUCCESS":    ["REFUND"],
		"REFUND":     [],
		"CLOSED":     [],
		"REVOKED":    []
	}';
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NEW.state <> 'NOTPAY' OR NEW.transaction_id IS NOT NULL OR NEW.paid_at IS NOT NULL THEN
			RAISE EXCEPTION 'a new order must start unpaid, in state NOTPAY'
				USING ERRCODE = '23514';
		END IF;
		RETURN NEW;
	END IF;

	IF NEW.mch_id <> OLD.mch_id OR NEW.out_trade_no <> OLD.out_trade_no THEN
		RAISE EXCEPTION 'mch_id and out_trade_no of an order never change'
			USING ERRCODE = '23514';
	END IF;
	IF NEW.total_fee <> OLD.total_fee THEN
		RAISE EXCEPTION 'total_fee of order % never changes (% -> %)', OLD.out_trade_no, OLD.total_fee, NEW.total_fee
			USING ERRCODE = '23514', HINT = 'A different amount needs a new out_trade_no.';
	END IF;
	IF OLD.transaction_id IS NOT NULL AND NEW.transaction_id IS DISTINCT FROM OLD.transaction_id THEN
		RAISE EXCEPTION 'transaction_id of order % never changes once set', OLD.out_trade_no
			USING ERRCODE = '23514';
	END IF;
	IF OLD.paid_at IS NOT NULL AND NEW.paid_at IS DISTINCT FROM OLD.paid_at THEN
		RAISE EXCEPTION 'paid_at of order % never changes once set', OLD.out_trade_no
			USING ERRCODE = '23514';
	END IF;
	IF NEW.state <> OLD.state AND NOT (allowed -> OLD.state) ? NEW.state THEN
		RAISE EXCEPTION 'order % cannot go from % to %', OLD.out_trade_no, OLD.state, NEW.state
			USING ERRCODE = '23514',
			HINT = CASE WHEN OLD.state IN ('CLOSED', 'REVOKED', 'REFUND') THEN OLD.state || ' is final.'
						ELSE 'Allowed: ' || (allowed -> OLD.state)::text END;
	END IF;
	NEW.updated_at := now();
	RETURN NEW;
END
$$;

CREATE FUNCTION wxpay.orders_record()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND NEW.state = OLD.state THEN
		RETURN NULL;
	END IF;
	INSERT INTO wxpay.order_events (mch_id, out_trade_no, old_state, new_state, source, transaction_id)
	VALUES (NEW.mch_id, NEW.out_trade_no,
			CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state,
			wxpay.change_source(), NEW.transaction_id);
	IF NEW.state = 'SUCCESS' THEN
		PERFORM pg_notify('wxpay_order_paid',
						  json_build_object('mch_id', NEW.mch_id, 'out_trade_no', NEW.out_trade_no,
											'transaction_id', NEW.transaction_id,
											'total_fee', NEW.total_fee)::text);
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION wxpay.forbid_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION '% on % is not allowed: it is a permanent record', TG_OP, TG_TABLE_NAME
		USING ERRCODE = '23514';
END
$$;

CREATE TRIGGER orders_guard BEFORE INSERT OR UPDATE ON wxpay.orders
	FOR EACH ROW EXECUTE FUNCTION wxpay.orders_guard();
CREATE TRIGGER orders_record AFTER INSERT OR UPDATE ON wxpay.orders
	FOR EACH ROW EXECUTE FUNCTION wxpay.orders_record();
CREATE TRIGGER orders_no_truncate BEFORE TRUNCATE ON wxpay.orders
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.forbid_change();
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON wxpay.order_events
	FOR EACH ROW EXECUTE FUNCTION wxpay.forbid_change();
CREATE TRIGGER order_events_no_truncate BEFORE TRUNCATE ON wxpay.order_events
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.forbid_change();

SELECT pg_catalog.pg_extension_config_dump('wxpay.merchants', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.orders', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.order_events', '');

----------------------------------------------------------------------
-- Unified order and client pay parameters.  They read merchant secrets,
-- so they run as the extension owner with a pinned search_path, and
-- EXECUTE is granted explicitly (see README).
----------------------------------------------------------------------

CREATE FUNCTION @extschema@.wxpay_unifiedorder(mch_id text, out_trade_no text, total_fee integer,
	body text, spbill_create_ip text, trade_type text DEFAULT 'APP', extra jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_unifiedorder'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_unifiedorder(text, text, integer, text, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_unifiedorder(text, text, integer, text, text, text, jsonb) IS
'create (or re-enter with identical parameters) an order at WeChat Pay; returns prepay_id, trade_type and code_url or mweb_url';

CREATE FUNCTION @extschema@.wxpay_app_params(mch_id text, prepay_id text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_app_params'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_app_params(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_app_params(text, text) IS
'signed parameters for the APP SDK: appid, partnerid, prepayid, package (Sign=WXPay), noncestr, timestamp, sign';

CREATE FUNCTION @extschema@.wxpay_jsapi_params(mch_id text, prepay_id text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_jsapi_params'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_jsapi_params(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_jsapi_params(text, text) IS
'signed parameters for JSAPI and mini programs: appId, timeStamp, nonceStr, package, signType, paySign';

----------------------------------------------------------------------
-- Notifications: every body received, with what became of it
----------------------------------------------------------------------

CREATE TABLE wxpay.notifications (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind		text NOT NULL CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['pay', 'refund'])),
	received_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	body		text NOT NULL,
	mch_id		text,
	out_trade_no text,
	out_refund_no text,
	transaction_id text,
	outcome		text NOT NULL
				CHECK (outcome OPERATOR(pg_catalog.=) ANY (ARRAY['accepted', 'duplicate', 'rejected'])),
	reason		text
);
CREATE INDEX notifications_order_idx ON wxpay.notifications (mch_id, out_trade_no);
CREATE INDEX notifications_rejected_idx ON wxpay.notifications (received_at)
	WHERE outcome OPERATOR(pg_catalog.=) 'rejected';
REVOKE ALL ON wxpay.notifications FROM PUBLIC;
COMMENT ON TABLE wxpay.notifications IS 'every notification body received, recorded with its outcome in the same transaction; append-only';
CREATE TRIGGER notifications_append_only BEFORE UPDATE OR DELETE ON wxpay.notifications
	FOR EACH ROW EXECUTE FUNCTION wxpay.forbid_change();
CREATE TRIGGER notifications_no_truncate BEFORE TRUNCATE ON wxpay.notifications
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.forbid_change();
SELECT pg_catalog.pg_extension_config_dump('wxpay.notifications', '');

CREATE FUNCTION @extschema@.wxpay_handle_notify(body text)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_handle_notify'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_handle_notify(text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_handle_notify(text) IS
'judge a payment notification body, apply it once, record it; returns the XML reply for WeChat Pay';

----------------------------------------------------------------------
-- Order query and close
----------------------------------------------------------------------

CREATE FUNCTION @extschema@.wxpay_orderquery(mch_id text, out_trade_no text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_orderquery'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_orderquery(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_orderquery(text, text) IS
'ask WeChat Pay for the order''s trade_state, apply it to wxpay.orders, return the verified answer';

CREATE FUNCTION @extschema@.wxpay_closeorder(mch_id text, out_trade_no text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_closeorder'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_closeorder(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_closeorder(text, text) IS
'close an unpaid order at WeChat Pay and mark it CLOSED; returns the verified answer';

-- What the worker is doing: every pending order, when it is next looked
-- at, and what went wrong last.
CREATE VIEW wxpay.worker_status AS
	SELECT mch_id, out_trade_no, state, total_fee, created_at, time_expire,
		   CASE WHEN time_expire OPERATOR(pg_catalog.<) pg_catalog.now() THEN 'close' ELSE 'query' END AS next_action,
		   next_query_at, query_count, last_query_at, last_error
	  FROM wxpay.orders
	 WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['NOTPAY', 'USERPAYING'])
	 ORDER BY next_query_at;
REVOKE ALL ON wxpay.worker_status FROM PUBLIC;
COMMENT ON VIEW wxpay.worker_status IS 'pending orders with the worker''s schedule and last error';

----------------------------------------------------------------------
-- Refunds and their history
----------------------------------------------------------------------

CREATE TABLE wxpay.refunds (
	mch_id		text NOT NULL,
	out_refund_no text NOT NULL
				CHECK (out_refund_no OPERATOR(pg_catalog.~) '^[0-9A-Za-z_|*@-]{1,64}$'),
	out_trade_no text NOT NULL,
	refund_fee	integer NOT NULL CHECK (refund_fee OPERATOR(pg_catalog.>) 0),
	total_fee	integer NOT NULL CHECK (total_fee OPERATOR(pg_catalog.>) 0),
	params		jsonb NOT NULL DEFAULT '{}',
	refund_id	text,
	state		text NOT NULL DEFAULT 'PROCESSING'
				CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['PROCESSING', 'SUCCESS', 'CHANGE', 'REFUNDCLOSE'])),
	success_time timestamptz,
	refund_recv_accout text,
	refund_account text,
	next_query_at timestamptz NOT NULL
				DEFAULT pg_catalog.now() OPERATOR(pg_catalog.+)
				COALESCE(pg_catalog.current_setting('wxpay.poll_interval', true), '30s')::pg_catalog.interval,
	query_count integer NOT NULL DEFAULT 0,
	last_query_at timestamptz,
	last_error	text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (mch_id, out_refund_no),
	FOREIGN KEY (mch_id, out_trade_no) REFERENCES wxpay.orders ON UPDATE RESTRICT ON DELETE RESTRICT,
	CHECK (refund_fee OPERATOR(pg_catalog.<=) total_fee)
);
CREATE INDEX refunds_order_idx ON wxpay.refunds (mch_id, out_trade_no);
CREATE INDEX refunds_processing_idx ON wxpay.refunds (next_query_at)
	WHERE state OPERATOR(pg_catalog.=) 'PROCESSING';
REVOKE ALL ON wxpay.refunds FROM PUBLIC;
COMMENT ON TABLE wxpay.refunds IS 'one row per (mch_id, out_refund_no); the refunds of an order never add up to more than it was paid';

CREATE TABLE wxpay.refund_events (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	mch_id		text NOT NULL,
	out_refund_no text NOT NULL,
	old_state	text,
	new_state	text NOT NULL,
	source		text NOT NULL
				CHECK (source OPERATOR(pg_catalog.=) ANY (ARRAY['refund', 'notify', 'query', 'manual'])),
	refund_id	text,
	db_user		text NOT NULL DEFAULT pg_catalog.session_user(),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	FOREIGN KEY (mch_id, out_refund_no) REFERENCES wxpay.refunds ON UPDATE RESTRICT ON DELETE RESTRICT
);
CREATE INDEX refund_events_refund_idx ON wxpay.refund_events (mch_id, out_refund_no, id);
REVOKE ALL ON wxpay.refund_events FROM PUBLIC;
COMMENT ON TABLE wxpay.refund_events IS 'every state change of every refund, written by a trigger; append-only';

CREATE FUNCTION wxpay.refunds_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	allowed constant jsonb := '{
		"PROCESSING":  ["SUCCESS", "CHANGE", "REFUNDCLOSE"],
		"CHANGE":      ["SUCCESS", "REFUNDCLOSE"],
		"SUCCESS":     [],
		"REFUNDCLOSE": []
	}';
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NEW.state <> 'PROCESSING' THEN
			RAISE EXCEPTION 'a new refund must start in state PROCESSING' USING ERRCODE = '23514';
		END IF;
		RETURN NEW;
	END IF;
	IF NEW.mch_id <> OLD.mch_id OR NEW.out_refund_no <> OLD.out_refund_no
	   OR NEW.out_trade_no <> OLD.out_trade_no OR NEW.refund_fee <> OLD.refund_fee
	   OR NEW.total_fee <> OLD.total_fee OR NEW.params <> OLD.params THEN
		RAISE EXCEPTION 'the parameters of refund % never change', OLD.out_refund_no
			USING ERRCODE = '23514', HINT = 'A different refund needs a new out_refund_no.';
	END IF;
	IF OLD.refund_id IS NOT NULL AND NEW.refund_id IS DISTINCT FROM OLD.refund_id THEN
		RAISE EXCEPTION 'refund_id of refund % never changes once set', OLD.out_refund_no
			USING ERRCODE = '23514';
	END IF;
	IF NEW.state <> OLD.state AND NOT (allowed -> OLD.state) ? NEW.state THEN
		RAISE EXCEPTION 'refund % cannot go from % to %', OLD.out_refund_no, OLD.state, NEW.state
			USING ERRCODE = '23514',
			HINT = CASE WHEN OLD.state IN ('SUCCESS', 'REFUNDCLOSE') THEN OLD.state || ' is final.'
						ELSE 'Allowed: ' || (allowed -> OLD.state)::text END;
	END IF;
	NEW.updated_at := now();
	RETURN NEW;
END
$$;

CREATE FUNCTION wxpay.refunds_record()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	src text := wxpay.change_source();
BEGIN
	IF TG_OP = 'UPDATE' AND NEW.state = OLD.state THEN
		RETURN NULL;
	END IF;
	INSERT INTO wxpay.refund_events (mch_id, out_refund_no, old_state, new_state, source, refund_id)
	VALUES (NEW.mch_id, NEW.out_refund_no, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state,
			CASE WHEN src IN ('refund', 'notify', 'query') THEN src ELSE 'manual' END, NEW.refund_id);
	RETURN NULL;
END
$$;

CREATE TRIGGER refunds_guard BEFORE INSERT OR UPDATE ON wxpay.refunds
	FOR EACH ROW EXECUTE FUNCTION wxpay.refunds_guard();
CREATE TRIGGER refunds_record AFTER INSERT OR UPDATE ON wxpay.refunds
	FOR EACH ROW EXECUTE FUNCTION wxpay.refunds_record();
CREATE TRIGGER refunds_no_truncate BEFORE TRUNCATE ON wxpay.refunds
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.forbid_change();
CREATE TRIGGER refund_events_append_only BEFORE UPDATE OR DELETE ON wxpay.refund_events
	FOR EACH ROW EXECUTE FUNCTION wxpay.forbid_change();
CREATE TRIGGER refund_events_no_truncate BEFORE TRUNCATE ON wxpay.refund_events
	FOR EACH STATEMENT EXECUTE FUNCTION wxpay.forbid_change();
SELECT pg_catalog.pg_extension_config_dump('wxpay.refunds', '');
SELECT pg_catalog.pg_extension_config_dump('wxpay.refund_events', '');

CREATE FUNCTION @extschema@.wxpay_refund(mch_id text, out_trade_no text, out_refund_no text,
	refund_fee integer, extra jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_refund'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_refund(text, text, text, integer, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_refund(text, text, text, integer, jsonb) IS
'refund part or all of a paid order over mutual TLS; never more than was paid; safe to retry with the same out_refund_no';

CREATE FUNCTION @extschema@.wxpay_refundquery(mch_id text, out_refund_no text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_refundquery'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_refundquery(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_refundquery(text, text) IS
'ask WeChat Pay for a refund''s status, apply it to wxpay.refunds, return the verified answer';

CREATE FUNCTION @extschema@.wxpay_handle_refund_notify(body text)
RETURNS text
AS 'MODULE_PATHNAME', 'wxpay_handle_refund_notify'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION @extschema@.wxpay_handle_refund_notify(text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.wxpay_handle_refund_notify(text) IS
'decrypt and judge a refund notification, apply it once, record it; returns the XML reply for WeChat Pay';

CREATE FUNCTION @extschema@.wxpay_refund_decrypt(req_info text, key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wxpay_refund_decrypt'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.wxpay_refund_decrypt(text, text) IS
'fields of a refund notification''s req_info: AES-256-ECB, key = lower-case hex MD5 of the API key';
