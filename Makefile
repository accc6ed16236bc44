# pg_wxpay: WeChat Pay merchant API v2 inside PostgreSQL

EXTENSION = wxpay
EXTVERSION = $(shell sed -n "s/^default_version = '\\(.*\\)'/\\1/p" $(srcdir)/wxpay.control)
MODULE_big = wxpay
# 1.0 is the base script; every later version is an update script from it
# (wxpay--A--B.sql), so a fresh install and an update run the same SQL.
DATA = $(notdir $(wildcard $(srcdir)/wxpay--*.sql))
# The second, SQL-only extension wxpay_proxy (proxy/): pg_wxpay's functions
# in a proxy database, routed to pg_wxpay shards by PL/Proxy.  Installed
# (and packaged) beside wxpay; a proxy database needs only it and plproxy.
DATA += proxy/wxpay_proxy.control $(patsubst $(srcdir)/%,%,$(wildcard $(srcdir)/proxy/wxpay_proxy--*.sql))
# Moving a merchant between shards (python3 with psycopg2), into the bindir.
SCRIPTS = proxy/wxpay_move_merchant

# PostgreSQL-free core (unit-tested and fuzzed on its own) ...
CORE_OBJS = src/wx_sign.o src/wx_xml.o src/wx_aes.o src/wx_bill.o src/wx_rsa.o src/wx_v3.o
# ... and the SQL glue around it, one file per concern.
OBJS = $(CORE_OBJS) src/wxpay.o src/refuse.o src/params.o src/states.o src/args.o src/spi_util.o src/txn.o src/shmem.o src/wake.o src/paid_events.o src/merchant.o src/autonomous.o \
	src/sign.o src/xml.o src/http.o src/remote_error.o src/proto_v2.o src/endpoint.o \
	src/orders.o src/anomalies.o src/history.o src/guard.o src/retention.o src/unifiedorder.o src/client_params.o src/notify.o src/query.o src/refund.o src/refund_notify.o src/micropay.o src/order_wait.o src/worker.o src/worker_start.o \
	src/v3_config.o src/proto_v3.o src/v3_certificates.o src/merchant_marks.o src/notify_v3.o src/bill.o src/bill_store.o src/bill_worker.o src/bill_v3.o

XML2_CFLAGS := $(shell xml2-config --cflags 2>/dev/null || pkg-config --cflags libxml-2.0)
XML2_LIBS := $(shell xml2-config --libs 2>/dev/null || pkg-config --libs libxml-2.0)
PG_CPPFLAGS = -I$(srcdir)/src $(XML2_CFLAGS) -DWXPAY_EXTVERSION='"$(EXTVERSION)"'
# Strict: every warning is an error.  The exceptions are idioms of
# PostgreSQL's own headers and fmgr (unused fcinfo, partial initialisers).
override PG_CFLAGS += -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = -lcurl -lssl -lcrypto -lz $(XML2_LIBS)

REGRESS = install sign xml orders notify refund micropay states operations notify_fuzz v3_merchants notify_v3_fuzz bills v3_bills retention settled
REGRESS_OPTS = --temp-config=$(srcdir)/test/wxpay.conf \
	--temp-instance=$(CURDIR)/tmp_check_regress \
	--encoding=UTF8 --no-locale
TAP_TESTS := $(if $(wildcard t/*.pl),1)

EXTRA_CLEAN = tmp_check_regress test/unit/test_core test/unit/test_bill $(addprefix test/fuzz/,$(FUZZ_TARGETS))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Unit tests of the core, outside any server, under ASan and UBSan.
UNIT_CFLAGS = -std=c99 -g -O1 -Wall -Wextra -Werror \
	-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
UNIT_SRCS = test/unit/test_core.c test/unit/test_v3.c
test/unit/test_core: $(UNIT_SRCS) test/unit/unit.h $(CORE_OBJS:.o=.c) $(CORE_OBJS:.o=.h)
	$(CC) $(UNIT_CFLAGS) -Isrc $(XML2_CFLAGS) -DVECTOR_DIR='"$(CURDIR)/test/vectors"' \
		-o $@ $(UNIT_SRCS) \
		$(CORE_OBJS:.o=.c) -lssl -lcrypto $(XML2_LIBS)

# The bill parser has its own file of tests (one concern, one file).
test/unit/test_bill: test/unit/test_bill.c $(CORE_OBJS:.o=.c) $(CORE_OBJS:.o=.h)
	$(CC) $(UNIT_CFLAGS) -Isrc $(XML2_CFLAGS) -o $@ test/unit/test_bill.c \
		$(CORE_OBJS:.o=.c) -lssl -lcrypto $(XML2_LIBS)

.PHONY: unit
unit: test/unit/test_core test/unit/test_bill
	test/unit/test_core
	test/unit/test_bill

# libFuzzer harnesses for the core, each run for FUZZ_SECONDS on a copy of
# its seed corpus.  A crash leaves its reproducer in test/fuzz/artifacts.
FUZZ_TARGETS = fuzz_xml fuzz_sign fuzz_refund fuzz_bill fuzz_v3
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
test/fuzz/%: test/fuzz/%.c test/fuzz/fuzz_common.h $(CORE_OBJS:.o=.c) $(CORE_OBJS:.o=.h)
	clang $(FUZZ_CFLAGS) -Isrc $(XML2_CFLAGS) -o $@ $< $(CORE_OBJS:.o=.c) -lssl -lcrypto $(XML2_LIBS)

.PHONY: print-fuzz-targets
print-fuzz-targets:
	@echo $(FUZZ_TARGETS)

.PHONY: fuzz
fuzz: $(addprefix test/fuzz/,$(FUZZ_TARGETS))
	@mkdir -p test/fuzz/artifacts
	@set -e; for t in $(FUZZ_TARGETS); do \
		work=$$(mktemp -d); cp test/fuzz/corpus/$${t#fuzz_}/* $$work/; \
		echo "== $$t for $(FUZZ_SECONDS) s"; \
		if ! test/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=test/fuzz/artifacts/ -print_final_stats=1 $$work >$$work.log 2>&1; then \
			tail -n 60 $$work.log; echo "$$t FAILED: reproducer in test/fuzz/artifacts"; exit 1; \
		fi; \
		grep -E 'stat::number_of_executed_units|Done' $$work.log; \
		rm -rf $$work $$work.log; \
	done
	@echo "fuzzing finished without a crash"

.PHONY: bench
bench:
	bash bench/run.sh

# The Debian package postgresql-15-wxpay_*.deb in dist/, built with
# pg_buildext from debian/ (bash scripts/deb.sh; tested by scripts/deb-test.sh).
.PHONY: deb
deb:
	bash scripts/deb.sh
