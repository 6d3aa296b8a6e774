# Both targets create .venv if missing and install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test bench lint typecheck install clean

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

test: lint typecheck
	$(BIN)/python -m pytest -q

# The public transcripts: CTXMGR_DATA_DIR if set, else ../shared/data beside the checkout,
# else what `ctxmgr datasets fetch` downloaded into the cache.
bench: $(STAMP)
	@if [ -z "$$CTXMGR_DATA_DIR" ] && [ -d ../shared/data ]; then \
		export CTXMGR_DATA_DIR="$$(cd ../shared/data && pwd)"; fi; \
	$(BIN)/ctxmgr bench --out bench-results

clean:
	rm -rf $(VENV) bench-results build dist *.egg-info
