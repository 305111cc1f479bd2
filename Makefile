# Zapbase: `make demo` runs the whole thing locally, `make test` checks it.
# Needs only Python 3.11+ and pip: the virtualenv and the embedded PostgreSQL are created here.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo test lint typecheck pytest edge-test fuzz bench faults up clean types docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,knowledge,charts]"
	scripts/pgvector-portable.sh $(BIN)/python
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/zapbase setup
	$(BIN)/zapbase demo

up: $(STAMP)
	$(BIN)/zapbase up

test: $(STAMP) lint typecheck pytest edge-test

lint: $(STAMP)
	$(BIN)/ruff check python tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

edge-test:
	edge/test.sh

# After a schema change: `make types docs`, then commit supabase/types/database.ts and docs/api.md.
types: $(STAMP)
	$(BIN)/zapbase types

docs: $(STAMP)
	$(BIN)/zapbase docs

# Property-based tests of every outside input (webhook bodies, Hotmart events, flow graphs,
# receivers' answers, chat-search SQL) with many more generated inputs than the suite's default.
fuzz: $(STAMP)
	ZAPBASE_FUZZ_EXAMPLES=$${ZAPBASE_FUZZ_EXAMPLES:-10000} $(BIN)/pytest tests/whatsapp_db/test_wa_ingest_properties.py \
		tests/commerce_db/test_hotmart_properties.py tests/flows_db/test_flow_publish_properties.py \
		tests/worker/test_webhooks_properties.py \
		tests/chat_search/test_checker.py::test_fuzz_the_checker_only_refuses_or_accepts_a_safe_query -q

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,knowledge,bench]"
	touch $(BENCH_STAMP)

# Prints only the table; logs and query plans go to a file it names.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py

# Webhook load while PostgreSQL restarts, a burst goes to the backlog, the worker is killed,
# the LLM and Graph API fail; then counts lost and duplicated messages. Longer: make faults FAULTS_ARGS="--seconds 300".
faults: $(STAMP)
	$(BIN)/python bench/faults.py $(FAULTS_ARGS)

clean:
	-$(BIN)/zapbase db stop
	rm -rf .zapbase
