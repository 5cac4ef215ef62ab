# Two entry points of the README quick start; each creates .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.taas-installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps nvidia-pytriton==0.7.0
	touch $@

## demo: the Snakemake workflow on its defaults (simulate, reconstruct, evaluate, summarize)
demo: $(STAMP)
	$(BIN)/snakemake --cores 2
	@cat results/summary/small.md

## test: lint and run the test suite
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

clean:
	rm -rf results .pytest_cache .ruff_cache
