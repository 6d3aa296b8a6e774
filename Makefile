# Both targets create .venv if missing and install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test bench lint typecheck install clean services

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,dev,providers]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check ctxmgr strategies adapters tests benchmarks examples
	$(BIN)/ruff format --check ctxmgr strategies adapters tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck services
	$(BIN)/python -m pytest -q

# The store tests start a real redis-server and PostgreSQL on 127.0.0.1: install the Debian
# packages when a binary is missing (idempotent; nothing to do when both are present).
services:
	@if command -v redis-server >/dev/null 2>&1 && \
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server postgresql; \
	else echo "install redis-server and postgresql to run the store tests"; fi

# The public transcripts: CTXMGR_DATA_DIR if set, else ../shared/data beside the checkout,
# else what `ctxmgr datasets fetch` downloaded into the cache.
bench: $(STAMP)
	@if [ -z "$$CTXMGR_DATA_DIR" ] && [ -d ../shared/data ]; then \
		export CTXMGR_DATA_DIR="$$(cd ../shared/data && pwd)"; fi; \
	$(BIN)/ctxmgr bench --out bench-results

clean:
	rm -rf $(VENV) bench-results build dist *.egg-info
