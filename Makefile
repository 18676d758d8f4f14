# The commands CI runs; README shows the same ones.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-test demo test lint typecheck bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	$(BIN)/job-worker demo

test: install-test
	$(BIN)/pytest

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run.py

# Not in CI: 100,000 mixed jobs on 3 hosts (network namespaces, root) for 15 minutes
# under kills, partitions and a database crash; SOAK_ARGS="--jobs 5000 --minutes 3" for less
soak: install-test
	$(BIN)/python tests/chaos/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
