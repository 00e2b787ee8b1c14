# Both entry points create .venv from nothing (torch pinned through constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck chromium pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/weightlab study

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks) $(wildcard scripts)

typecheck: $(STAMP)
	$(BIN)/mypy

# The report's browser test (tests/test_report_browser.py) needs Debian's Chromium. Install it
# where we can (root with apt-get); otherwise say in one line why that test will be skipped.
# Never fails the build: without Chromium the test skips, unless CI is set (then it fails).
CHROMIUM := $(or $(WEIGHTLAB_CHROMIUM),/usr/bin/chromium)
SKIP_NOTE := tests/test_report_browser.py will be skipped (it fails instead if CI is set)

chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ $(CHROMIUM) != /usr/bin/chromium ]; then \
	  echo "make: WEIGHTLAB_CHROMIUM=$(CHROMIUM) does not exist: $(SKIP_NOTE)"; \
	elif [ "$$(id -u)" != 0 ]; then \
	  echo "make: no /usr/bin/chromium and not root, so not installing it: $(SKIP_NOTE)"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: no /usr/bin/chromium and no apt-get to install it: $(SKIP_NOTE)"; \
	else \
	  echo "make: installing Debian's chromium for the browser test (apt-get, as root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || echo "make: apt-get could not install chromium (no network?): $(SKIP_NOTE)"; \
	fi

pytest: $(STAMP) chromium
	$(BIN)/pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/losses.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
