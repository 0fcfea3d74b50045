# Two entry points for a fresh machine: `make study` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PRESET ?= small
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: study test clean-runs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

study: $(STAMP)
	MPLBACKEND=agg $(BIN)/s2i study --preset $(PRESET)

# Unit tests, then the study at the smoke preset through the runner (tests/test_notebooks.py),
# whose executed notebooks nbval re-executes.
test: $(STAMP)
	MPLBACKEND=agg $(BIN)/python -m pytest -q -ra --durations=15 tests

clean-runs:
	rm -rf runs
