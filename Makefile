# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-integration lint install install-dev system-deps browser-deps lock clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"

# Installs exactly the pinned versions of constraints.txt.
install: $(VENV)/bin/python
	$(PIP) install --quiet -c constraints.txt -e .

install-dev: $(VENV)/bin/python
	$(PIP) install --quiet -c constraints.txt -e ".[dev,ray]"

# System packages the tests need (Debian; the machine runs as root).
system-deps:
	@bash tests/system-deps.sh

demo: install
	$(VENV)/bin/callbot demo

# The real JS client for tests/browser: pinned npm packages and the page bundle.
browser-deps: system-deps
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

test: install-dev system-deps browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# Fast sans-I/O tests only: no servers, sockets or media.
test-unit: install-dev
	$(PY) -m pytest -m "not integration and not browser" $(PYTEST_ARGS)

test-integration: install-dev system-deps
	$(PY) -m pytest -m "integration" $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Regenerates constraints.txt from the current virtual environment.
lock:
	$(PIP) freeze --exclude-editable | grep -v '^callbot' > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
