-- The XML codec: building, parsing, round trips, and the refusals.
-- Each file starts from a fresh installation, so the files run in any order.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS wxpay CASCADE;
CREATE EXTENSION wxpay;
RESET client_min_messages;
SELECT wxpay_to_xml('{"appid": "wx1", "total_fee": 1, "body": "腾讯"}');
SELECT wxpay_to_xml('{"a": "x]]>y"}');
SELECT wxpay_to_xml('{"a": "", "b": null}');
-- Round trips, including ]]>, CR LF, '<&>' and Chinese
SELECT wxpay_from_xml(wxpay_to_xml(p)) = p AS round_trip
  FROM (VALUES ('{"a": "x]]>y", "b": "]]]]>>", "c": "line1\r\nline2", "d": "<&>\"''", "e": "中文 and spaces "}'::jsonb)) v(p);

-- Parsing: text and CDATA, entities, whitespace, any root
SELECT wxpay_from_xml('<xml><return_code><![CDATA[SUCCESS]]></return_code><total_fee>1</total_fee></xml>');
SELECT wxpay_from_xml(E'<?xml version="1.0" encoding="UTF-8"?>\n<xml>\n  <a>&lt;b&gt; &amp; &#x4e2d;</a>\n  <e/>\n</xml>\n');
SELECT wxpay_from_xml('<root><out_refund_no>1234</out_refund_no></root>');
SELECT wxpay_from_xml('<xml><!-- comment --><a>1<!-- inside -->2</a></xml>');
-- A parsed and signed notification verifies
SELECT wxpay_verify(wxpay_from_xml(wxpay_to_xml(p || jsonb_build_object('sign', wxpay_sign(p, 'k', 'HMAC-SHA256')))), 'k') AS verifies
  FROM (VALUES ('{"appid": "wx1", "body": "测试 ]]> body"}'::jsonb)) v(p);

-- Refusals, each with its SQLSTATE
\set VERBOSITY sqlstate
-- XXE: external entity reading a file
SELECT wxpay_from_xml('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><a>&xxe;</a></xml>');
-- Billion laughs: entity expansion
SELECT wxpay_from_xml('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><xml><a>&lol2;</a></xml>');
-- External DTD and parameter entities
SELECT wxpay_from_xml('<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/evil.dtd"><xml><a>1</a></xml>');
SELECT wxpay_from_xml('<!doctype xml><xml/>');
SELECT wxpay_from_xml('<xml><a>&undefined;</a></xml>');
SELECT wxpay_from_xml('<xml><a>1</b></xml>');
SELECT wxpay_from_xml('not xml at all');
SELECT wxpay_from_xml('');
SELECT wxpay_from_xml('<xml><a><b>1</b></a></xml>');
SELECT wxpay_from_xml('<xml>text<a>1</a></xml>');
SELECT wxpay_from_xml('<xml><total_fee>1</total_fee><total_fee>100</total_fee></xml>');
SELECT wxpay_from_xml('<xml><a>' || repeat('x', 1024 * 1024) || '</a></xml>');
SELECT wxpay_to_xml('{"1abc": "x"}');
SELECT wxpay_to_xml('{"a b": "x"}');
SELECT wxpay_to_xml('{"a": "bell\u0007"}');
SELECT wxpay_to_xml('{"a": {"nested": true}}');
SELECT wxpay_to_xml('"scalar"');
\set VERBOSITY default
-- Messages say where the document broke
SELECT wxpay_from_xml(E'<xml>\n<a>1</a>\n<b>2</c>\n</xml>');
SELECT wxpay_from_xml(E'<xml>\n<a>1</a>\n<!DOCTYPE x>\n</xml>');
SELECT wxpay_from_xml('<xml><total_fee>1</total_fee><total_fee>100</total_fee></xml>');
SELECT wxpay_from_xml('<xml><a>' || repeat('x', 1024 * 1024) || '</a></xml>');
SELECT wxpay_to_xml('{"a<": "x"}');
-- Just under the limit still parses
SELECT length(wxpay_from_xml('<xml><a>' || repeat('x', 1024 * 1024 - 20) || '</a></xml>') ->> 'a') AS big_value;
-- Text that looks like a DOCTYPE inside a value is a value: WeChat Pay
-- returns attach unchanged, so such an order must stay confirmable
SELECT wxpay_from_xml('<xml><attach><![CDATA[<!DOCTYPE html>]]></attach></xml>') AS doctype_in_cdata;
SELECT wxpay_from_xml(wxpay_to_xml('{"attach": "<!DOCTYPE html><!ENTITY x \"y\">"}')) AS doctype_round_trip;
-- ... but a DOCTYPE in the prolog is refused, after a BOM or a comment too
SELECT wxpay_from_xml(E'\uFEFF<!-- c --><!doctype x><xml/>');
-- Namespaces and attributes are refused: <x:total_fee> is not total_fee
SELECT wxpay_from_xml('<xml><x:total_fee xmlns:x="urn:x">1</x:total_fee></xml>');
SELECT wxpay_from_xml('<xml><total_fee currency="CNY">1</total_fee></xml>');
-- Messages quoting long multi-byte names are cut on character boundaries
SELECT wxpay_from_xml('<xml><' || repeat('名', 22) || '>1</' || repeat('名', 22) || '><' || repeat('名', 22) || '>2</' || repeat('名', 22) || '></xml>');
-- libxml2's global state is handed back intact to core's XML functions
SELECT xpath('/a/text()', '<a>still works</a>'::xml) AS core_xml_after_errors;
SELECT '<!DOCTYPE a><a/>'::xml IS DOCUMENT AS core_xml_keeps_doctype_support;
