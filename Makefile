# locseg: `make demo` (set-up + a short real run) and `make test` (lint + tests).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# PyTorch CPU training on this glibc runs ~2x faster with these malloc settings (see README).
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,atari]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts

test: lint
	$(PY) -m pytest

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(VENV)/bin/locseg bench

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache
