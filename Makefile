# Two entry points: `make run` (the whole stack) and `make test` (the whole suite).
# Both install what they need: a Python venv from requirements.lock, and anvil from npm.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
BUILD_STAMP := .build/__local__.json

# ape-vyper uses the vyper on PATH (no download), and ape-foundry the anvil on PATH.
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: install run reset epoch test test-contracts lint gas clean browser

install: $(PY_STAMP) $(NODE_STAMP) $(BUILD_STAMP)

$(PY_STAMP): requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

$(BUILD_STAMP): $(PY_STAMP) $(wildcard contracts/*.vy contracts/*/*.vy) ape-config.yaml
	ape compile --force
	@touch $@

# `make run` keeps the local chain, the database and Redis in .run between runs; `make reset`
# deletes them first and starts a clean stack. `make epoch` (in a second terminal, while
# `make run` is up) settles the current epoch on the local chain and makes it claimable.
run: install
	$(VENV)/bin/python scripts/_stack.py

reset: install
	$(VENV)/bin/python scripts/_stack.py --reset

epoch: install
	$(VENV)/bin/python scripts/_epoch.py

test: install browser
	ruff check . && ruff format --check . && mypy
	ape test tests/contracts -p no:cacheprovider
	pytest tests/scripts tests/support tests/chain tests/indexer tests/api tests/ads tests/tracking tests/analytics tests/settlement tests/ops tests/web tests/journey -p no:cacheprovider

# The dashboards' tests drive Debian's Chromium (Playwright never downloads a browser here):
# installed with apt when missing, which needs root; otherwise install `chromium` first or
# point BUZZER_CHROMIUM at a Chromium binary.
browser:
	@if [ -n "$$BUZZER_CHROMIUM" ] || command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "Chromium is missing: run 'sudo apt-get install -y chromium' (or set BUZZER_CHROMIUM) and try again" >&2; exit 1; \
	fi; \
	echo "installing Chromium with apt (once)"; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

lint: install
	ruff check . && ruff format --check . && mypy

gas: install
	$(VENV)/bin/python bench/contract_gas.py

clean:
	rm -rf .build $(VENV) node_modules
