# Two commands, on a machine with only Python 3.11+ and make:
#   make demo   bake the default service into build/ and serve it at http://127.0.0.1:8000 (HOST, PORT)
#   make test   lint the template and run its tests (each option baked, baked suites run)
# Both set up .venv first; a stamp file per requirements file keeps repeat runs fast.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.demo-installed
TEST_STAMP := $(VENV)/.test-installed
DEMO_DIR := build
# Passed to cookiecutter explicitly, so this folder name cannot drift from the bake.
DEMO_SLUG := my-service
# Where `make demo` serves the service, e.g. `make demo PORT=8080` (the service's Makefile reads the same).
HOST ?= 127.0.0.1
PORT ?= 8000
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k bad_answer"`.
PYTEST_ARGS ?=
# Parallel pytest workers for `make test` (pytest-xdist); the baked suites, the slowest tests,
# are split so that two cores share them. `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2

.PHONY: demo test lint docs tools browser clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "ERROR: $(PYTHON) is older than Python 3.11; run with PYTHON=python3.11 (or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): requirements-demo.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-demo.txt
	touch $@

$(TEST_STAMP): requirements-test.txt requirements-demo.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@

# --overwrite-if-exists keeps the demo's own .venv, .env and database between runs; the service's
# Makefile reinstalls only when its dependencies changed, so a second demo starts in seconds.
# HOST and PORT also reach the bake, whose closing message names the address.
demo: $(DEMO_STAMP)
	HOST=$(HOST) PORT=$(PORT) $(BIN)/cookiecutter . --no-input --default-config --overwrite-if-exists \
		--output-dir $(DEMO_DIR) project_slug=$(DEMO_SLUG)
	$(MAKE) -C $(DEMO_DIR)/$(DEMO_SLUG) run HOST=$(HOST) PORT=$(PORT)

# System packages some tests use, from Debian when missing and we are root: chromium for the
# browser tests (never a browser downloaded by Playwright), valgrind for the smoke test of
# bench/instructions_bench.py.
tools:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
		echo "note: missing:$$missing, and we are not root: the tests that need them will skip" \
			"(install with: sudo apt-get install$$missing)"; \
	fi

browser: tools

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

# The documentation site (MkDocs, Material theme) into site/; --strict fails on a broken link.
docs: $(TEST_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The browser test's screenshot lands here (kept after the baked folders are gone).
test: export TEST_ARTIFACTS_DIR ?= $(CURDIR)/test-artifacts
test: $(TEST_STAMP) tools lint docs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) site .pytest_cache .ruff_cache
