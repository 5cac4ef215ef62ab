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
	$(BIN)/python -m pip install --quiet -e '.[test]' --group dev
	$(BIN)/python -m pip install --quiet --no-deps nvidia-pytriton==0.7.0
	touch $@

## demo: the Snakemake workflow on its defaults (simulate, reconstruct, evaluate, summarize)
demo: $(STAMP)
	$(BIN)/snakemake --cores 2
	@cat results/summary/small.md

## lint: the static checks; each stops the run on a finding
##   ruff (style, bugs), mypy (types), lint-imports (the layer contracts in pyproject.toml),
##   snakefmt and snakemake --lint (the workflow), sp-repo-review (the Scientific Python
##   development guide; what does not apply is listed in [tool.repo-review])
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint
	$(BIN)/sp-repo-review --show err .

## test: lint, then run the test suite
test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf results .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
