# memvault: `make run` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CrewAI pins mcp<2 (memvault[mcp] needs mcp>=2.3): it lives in a side environment with memvault
# installed editable beside it; tests/integrations/test_crewai.py runs its checks there.
CREWAI_VENV := .venv-crewai
CREWAI_REQUIREMENTS := tests/integrations/crewai_side/requirements.txt
CREWAI_STAMP := $(CREWAI_VENV)/.installed

.PHONY: install crewai-env run demo test lint typecheck unit fuzz soak bench bench-quick profile clean

## demo: the guided library tour (stores and searches a few memories with the local model)
demo: install
	$(PY) -m memvault demo

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

$(CREWAI_STAMP): pyproject.toml $(CREWAI_REQUIREMENTS)
	test -x $(CREWAI_VENV)/bin/python || $(PYTHON) -m venv $(CREWAI_VENV)
	$(CREWAI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CREWAI_VENV)/bin/python -m pip install --quiet -r $(CREWAI_REQUIREMENTS) -e '.[local]'
	touch $(CREWAI_STAMP)

## crewai-env: the side environment .venv-crewai (CrewAI beside memvault) that make test uses
crewai-env: $(CREWAI_STAMP)

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

# Two workers (one per core of the reference machine); a file's tests stay together, in order, on
# one worker. Many tests wait on servers and subprocesses, which the other worker overlaps.
# Schemathesis runs on its own, without xdist: under a worker its parametrized test collapses to
# one item that covers only the first operation of the schema.
SCHEMATHESIS := tests/server/test_schemathesis.py
unit: install $(CREWAI_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --ignore=$(SCHEMATHESIS)
	$(PY) -m pytest -q -p no:xdist $(SCHEMATHESIS)

## bench: the whole suite (1k/10k/100k, REST, MCP, LoCoMo, mem0 side by side): bench/results/<date>-<machine>.{json,md} and PNG plots
bench: install
	$(PY) bench/suite.py

## bench-quick: the suite at 1,000 and 10,000 memories, without mem0 (a few minutes)
bench-quick: install
	$(PY) bench/suite.py --sizes 1000,10000 --skip-mem0

## profile: where search time goes (pyinstrument), saved in bench/results/profile-search.txt
profile: install
	$(PY) bench/profile_search.py

clean:
	rm -rf $(VENV) $(CREWAI_VENV) .pytest_cache .mypy_cache .ruff_cache

## fuzz: every generated test (tests/fuzz, filters, hostile strings, redactor, key ids, schemathesis) with 2,000 examples each, fresh random draws and shrinking; ends by itself
fuzz: install
	MEMVAULT_FUZZ_EXAMPLES=2000 MEMVAULT_SCHEMATHESIS_EXAMPLES=500 MEMVAULT_FUZZ_SHRINK=1 \
	MEMVAULT_HYPOTHESIS_PROFILE=explore $(PY) -m pytest -q -p no:cacheprovider --timeout=7200 \
		tests/fuzz tests/unit/test_filters.py tests/unit/test_filter_sql.py \
		tests/security/test_filter_injection.py tests/unit/test_hostile_strings.py \
		tests/security/test_redaction_linear.py tests/security/test_key_scopes.py \
		tests/server/test_schemathesis.py

## soak: the long reliability runs (200 random SIGKILLs, 60 s of mixed load at 16 and 64 clients with RSS checks, 2,000+ stateful API calls); about 20 minutes; ends by itself
soak: install
	MEMVAULT_SOAK=1 $(PY) -m pytest -q -p no:cacheprovider -p no:xdist --timeout=7200 -rs \
		tests/reliability/test_sigkill_harness.py tests/e2e/test_load.py \
		tests/server/test_schemathesis.py
