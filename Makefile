# `make demo` and `make test` work on a fresh machine: each builds .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-inference test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PY=$(PY) scripts/demo.sh

demo-inference: $(STAMP)
	mkdir -p var/demo
	$(PY) -m inference demo --out var/demo > var/demo/summary.json
	@echo "summary written to var/demo/summary.json"

# Integration tests run against PostgreSQL and Redis (the end-to-end test starts a real worker);
# override DATABASE_URL / CELERY_BROKER_URL to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tracker
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

# UTF-8 whatever the machine's locale (reports and fuzzer output hold non-ASCII text).
test: $(STAMP)
	PYTHONUTF8=1 DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" \
	CELERY_BROKER_URL="$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)}" \
	$(PY) -m pytest -n 2 --dist loadfile

test-fast: $(STAMP)
	PYTHONUTF8=1 $(PY) -m pytest -n 2 -m "not realdata and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check inference tracker config tests bench manage.py
	$(VENV)/bin/ruff format --check inference tracker config tests bench manage.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The service and page benchmarks use a PostgreSQL database of their own (emptied first).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tracker_bench
BENCH_BROKER_URL ?= redis://127.0.0.1:6379/14

bench: $(STAMP)
	$(PY) bench/bench_register.py
	$(PY) bench/bench_prepare.py
	$(PY) bench/bench_real_measure.py
	$(PY) bench/bench_precision.py
	$(PY) bench/bench_segment_accuracy.py
	$(PY) bench/bench_segment_speed.py
	$(PY) bench/bench_segment_real.py
	$(PY) bench/bench_response.py
	DATABASE_URL="$(BENCH_DATABASE_URL)" CELERY_BROKER_URL="$(BENCH_BROKER_URL)" $(PY) bench/bench_service.py
	DATABASE_URL="$(BENCH_DATABASE_URL)" $(PY) bench/bench_pages.py
	DATABASE_URL="$(BENCH_DATABASE_URL)" CELERY_BROKER_URL="$(BENCH_BROKER_URL)" $(PY) bench/bench_api_fuzz.py
	DATABASE_URL="$(BENCH_DATABASE_URL)" $(PY) bench/bench_api_load.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
