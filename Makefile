# One entry point: `make quickstart` (install + the offline sweep + its report), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_NAME := quickstart-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install quickstart test test-fast bench cluster-demo chaos clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

quickstart: install
	$(BIN)/sweep run quickstart --local --storage runs --name $(RUN_NAME)
	$(BIN)/analysis report runs/$(RUN_NAME)

# two lanes (tests/conftest.py says how the tests are shared out); `pytest` alone runs them in one
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

cluster-demo: install
	$(BIN)/python -m tools.localcluster

# RUNS sweeps of 24 trials under node kills and store outages, after one undisturbed: the
# figures of docs/RELIABILITY.md (about 5 minutes a run on 2 cores)
RUNS ?= 5
chaos: install
	$(BIN)/python tests/chaos.py --runs $(RUNS)

bench: install
	$(BIN)/python -m pip install -q --no-deps animal-mnist  # peers.py's image folder (its data only)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
