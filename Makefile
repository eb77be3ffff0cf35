# memvault: `make run` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint typecheck unit bench bench-mem0 clean

## demo: the guided library tour (stores and searches a few memories with the local model)
demo: install
	$(PY) -m memvault demo

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

## run: set up .venv and start the REST server on the embedded store (first start prints an admin key)
run: install
	$(PY) -m memvault serve

## test: lint, type-check and the whole test suite
test: install lint typecheck unit

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: install
	$(VENV)/bin/mypy src

unit: install
	$(PY) -m pytest -q

## bench: retrieval quality and speed figures, saved in bench/results/
bench: install
	$(PY) bench/locomo.py
	$(PY) bench/speed.py
	$(PY) bench/rest.py

## bench-mem0: memvault and mem0 2.2.1 side by side (makes bench/.venv-mem0 on first use)
bench-mem0: install
	$(PY) bench/compare_mem0.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
