# The two commands a new user needs are `make run` and `make test`; both set up
# what they use (a .venv, and the Debian packages the tests drive).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_TEST_PACKAGES := zbar-tools libzbar0 chromium chromium-driver ghostscript
DEBIAN_BENCH_PACKAGES := etcd-server etcd-client
SEEDS ?= 1000
START ?= 0

.PHONY: run test lint sim bench bench-full debian-test debian-bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ledger demo --dir var

debian-test:
	@bash scripts/debian-packages.sh $(DEBIAN_TEST_PACKAGES)

debian-bench:
	@bash scripts/debian-packages.sh $(DEBIAN_BENCH_PACKAGES)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(STAMP) debian-test lint
	$(PY) -m pytest -q -p no:cacheprovider

sim: $(STAMP)
	$(PY) -m tests.consensus.simulate --seeds $(SEEDS) --start $(START)

bench: $(STAMP) debian-bench
	$(PY) -m bench
	$(PY) -m bench.readme

bench-full: $(STAMP) debian-bench
	$(PY) -m bench --full
	$(PY) -m bench.readme

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
