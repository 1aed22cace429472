# Two commands for a new user: `make demo` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLASS_ARCHIVE := $(VENV)/share/engagement/spark-classes.jsa
export ENGAGEMENT_HOME ?= $(CURDIR)/var
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(CURDIR)/$(BIN)/python

.PHONY: demo test env kafka-jars postgres-server browser lock clean bench docs

env: $(STAMP) kafka-jars $(CLASS_ARCHIVE)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"' \
	  || { echo "error: $(PYTHON) is older than 3.11; run: make PYTHON=python3.11 ..." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	@# Compiled once here: without .pyc files every process compiles what it imports again
	@# (Great Expectations alone: 12 s instead of 7 s) where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/uv pip install --quiet --compile-bytecode -p $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet -p $(BIN)/python --no-deps -e '.[dev]'
	@touch $(STAMP)

# The classes a Spark driver loads, recorded once (about a minute) so that every later driver
# maps them instead: its start and first query take 3-4 s less on 2 cores (jobs/class_archive.py).
# Spark works without it, so a failure here only warns.
$(CLASS_ARCHIVE): $(STAMP)
	@echo "Recording the Spark driver's class archive (once, about a minute) ..."
	@$(BIN)/python -m jobs.class_archive $(CLASS_ARCHIVE) || true

kafka-jars: $(STAMP)
	@$(BIN)/engagement kafka install

# Regenerate the fully pinned dependency set after changing pyproject.toml.
lock:
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra dev pyproject.toml -o requirements.lock

demo: env
	$(BIN)/engagement demo

test: env postgres-server browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The PostgreSQL publication tests start a real, throw-away PostgreSQL server.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing PostgreSQL (Debian package) for the tests ..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "error: the tests need a PostgreSQL server (initdb); install it, e.g. sudo apt-get install postgresql" >&2; exit 1; \
	  fi; }

# The report's browser test drives Debian's chromium through chromedriver (same package version).
browser:
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium and chromium-driver (Debian packages) for the report's browser test ..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "error: the tests need a headless Chromium and its chromedriver; e.g. sudo apt-get install chromium chromium-driver" >&2; exit 1; \
	  fi; }

# BENCH_SIZES=200000 make bench for a quick run; the default measures 1M and 10M events.
BENCH_SIZES ?= 1000000,10000000
bench: env kafka-jars
	$(BIN)/python bench/pipeline_bench.py --sizes $(BENCH_SIZES)

# docs/tables.md: the data dictionary, generated from core/tables.py (a test fails when it is stale).
docs: env
	$(BIN)/engagement tables --format markdown > docs/tables.md

clean:
	-$(BIN)/engagement kafka stop
	rm -rf var
