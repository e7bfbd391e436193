# `make demo` and `make test` are the README's first two commands; both go through `make setup`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-unit test-slow schemas clean

setup: $(STAMP)

# torch first, pinned, so pip takes the CPU wheel already on this machine's disk instead of a CUDA build.
# Makefile too: a tool added below (e.g. promtool) is installed on the next `make setup`, not only on a fresh one.
$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	@command -v docker-compose >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 || sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1) || \
		echo "note: docker-compose (Debian package) not installed; the compose test needs it"; }
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 || sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1) || \
		echo "note: chromium (Debian package) not installed; the dashboard test needs it"; }
	@command -v promtool >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1) || \
		echo "note: promtool (Debian package prometheus) not installed; the Prometheus config test needs it"; }
	touch $(STAMP)

demo: setup
	$(BIN)/stancestream run --feed data/sample_feed.jsonl --exit-when-done

test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# The inner loop: tests/unit only (no broker, no store, no training runs), in well under a minute.
test-unit: setup
	$(BIN)/python -m pytest -m "not integration"

test-slow: setup
	$(BIN)/python -m pytest --run-slow -m slow

schemas: setup
	$(BIN)/stancestream schemas

clean:
	rm -rf var out .pytest_cache
