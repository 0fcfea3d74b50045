# Two entry points for a fresh machine: `make study` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PRESET ?= small
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: study study-seeds verify test clean-runs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

study: $(STAMP)
	MPLBACKEND=agg $(BIN)/s2i study --preset $(PRESET)

# The main table over training seeds, after `make study`: notebooks 02-04 again for each training
# seed in SEEDS (encoders and generators reseeded by train_seed; the data of runs/$(PRESET)/data and
# the evaluation's subsets stay the main run's), each into reports/$(PRESET)/seeds/train_seed=<s>/,
# then mean / std / min / max per cell -> reports/$(PRESET)/main_table_seeds.{csv,md}.
# About an hour of CPU per seed at small.
SEEDS ?= 2 3
study-seeds: $(STAMP)
	set -e; for s in $(SEEDS); do \
	  MPLBACKEND=agg $(BIN)/s2i study --preset $(PRESET) --only 02,03,04 --set train_seed=$$s \
	    --report-root reports/$(PRESET)/seeds/train_seed=$$s; \
	done
	$(BIN)/python -m s2ilib.study.seeds --preset $(PRESET) --seeds $(SEEDS)

# After `make study` (and `make study-seeds`): does the rerun reproduce the committed report?
# Compares reports/$(PRESET)/results.json with the committed one (git HEAD); exit 1 on a flipped verdict.
verify: $(STAMP)
	$(BIN)/s2i verify --preset $(PRESET)

# Unit tests, then the study at the smoke preset through the runner (tests/test_notebooks.py),
# whose executed notebooks nbval re-executes.
test: $(STAMP)
	MPLBACKEND=agg $(BIN)/python -m pytest -q -ra --durations=15 tests

clean-runs:
	rm -rf runs
