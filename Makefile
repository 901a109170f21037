# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Each sets up its own virtualenv in .venv and installs the package with what it needs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed

.PHONY: help venv demo test unit lint test-pythons dist fuzz bench clean services

help:
	@echo "make demo   score the bundled dataset on an embedded local server"
	@echo "make test   run the whole test suite (make lint first)"
	@echo "make unit   the tests that need no server and no model (seconds, not minutes)"
	@echo "make lint   ruff and mypy with the project's settings (pyproject.toml); zero findings"
	@echo "make fuzz   fuzz the server from its OpenAPI for longer than make test does"
	@echo "make test-pythons  make test and, beside it, the suite without models on the other supported Pythons"
	@echo "make dist   build the sdist and wheel into dist/ and check them (twine check)"
	@echo "make bench  run the benchmarks (writes benchmarks/results/)"
	@echo "make clean  remove the virtualenv and build leftovers"

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e '.[test,pandas]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	env -u FI_BASE_URL $(VENV)/bin/fi-evals run cookbooks/data/demo.jsonl --config cookbooks/demo.json

# Services the tests start themselves (tests/scaleout runs a real redis-server on loopback), and
# the browser tests/runs drives with Playwright (Debian's chromium: no browser is downloaded).
services:
	@command -v redis-server >/dev/null || \
		(export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
	@test -x /usr/bin/chromium || \
		(export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# The slowest tests are listed at the end, to keep an eye on the suite's time.
TEST_ARGS ?= --durations=15

test: $(STAMP) services lint
	$(PY) -m pytest $(TEST_ARGS)

# The fast loop: the test files marked `pytestmark = pytest.mark.unit` (no server, no model;
# tests/conftest.py fails a unit test that asks for one).
unit: $(STAMP)
	$(PY) -m pytest -m unit -q -p no:cacheprovider

# ruff with the rules named in pyproject.toml, then mypy on the package ([tool.mypy] files);
# both pinned in setup.cfg's lint extra. mypy keeps its cache in .mypy_cache.
lint: $(STAMP)
	$(PY) -m ruff check fi_evals tests benchmarks cookbooks noxfile.py
	$(PY) -m mypy

# make test and, at the same time, the suite that needs no model on each other supported Python
# found here (noxfile.py; .nox/ holds its virtualenvs, made anew on every run). The suite mostly
# waits on its servers (one pytest uses about a third of a core), so the three runs side by side
# take little more than make test alone. nox's output is kept in a file and shown after make
# test's; the target fails if either failed.
test-pythons: $(STAMP) services lint
	@log=$$(mktemp); $(PY) -m nox > $$log 2>&1 & nox=$$!; \
	$(PY) -m pytest $(TEST_ARGS); tests=$$?; \
	wait $$nox; pythons=$$?; \
	echo "---- make test-pythons: the other supported Pythons (noxfile.py) ----"; \
	cat $$log; rm -f $$log; \
	echo "make test: exit $$tests; other Pythons (nox): exit $$pythons"; \
	test $$tests -eq 0 -a $$pythons -eq 0

# The release artifacts: sdist, then the wheel built from it, into dist/ (`python -m build`
# builds both in isolated environments), then `twine check`. The dist extra holds the tools;
# tests/packaging builds a copy of the tree with DIST_STAMP= and PY= set to its interpreter.
DIST_STAMP := $(VENV)/.dist-installed

$(DIST_STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[dist]'
	@touch $(DIST_STAMP)

dist: $(DIST_STAMP)
	rm -rf dist *.egg-info  # a stale egg-info's SOURCES.txt would add its files to the sdist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

# The fuzz of tests/server/test_fuzz.py with a larger budget (make test runs a short one):
# schemathesis draws requests from the server's OpenAPI; any 5xx fails, listed with a curl
# command. FUZZ_SEED=n draws another sequence.
FUZZ_EXAMPLES ?= 2000
FUZZ_SECONDS ?= 900
FUZZ_SEED ?= 142024

fuzz: $(STAMP)
	FI_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FI_FUZZ_SECONDS=$(FUZZ_SECONDS) FI_FUZZ_SEED=$(FUZZ_SEED) \
		$(PY) -m pytest tests/server/test_fuzz.py -s -p no:cacheprovider --timeout $$(( $(FUZZ_SECONDS) + 300 ))

# make bench only (never make test): matplotlib in .venv, the official client in its own venv.
BENCH_STAMP := $(VENV)/.bench-installed
OFFICIAL_VENV := benchmarks/.venv-official

$(BENCH_STAMP): $(STAMP)
	$(PIP) install -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.official_env $(OFFICIAL_VENV)
	$(PY) -m benchmarks.run --official-venv $(OFFICIAL_VENV)
	$(PY) -m benchmarks.bench_judge --json benchmarks/results/judge.json

clean:
	rm -rf $(VENV) build dist .nox *.egg-info .pytest_cache .mypy_cache .ruff_cache benchmarks/.venv-official
