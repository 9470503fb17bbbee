# Two commands from nothing: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DEBUG ?= 1

.PHONY: install run test test-fast lint lint-ruff lint-format lint-imports lint-types lint-docs browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

# Then the front-end packages pinned in assets.lock (npm tarballs, integrity-checked): with the
# files in place it only verifies them, offline included.
install: $(VENV)/.installed
	$(BIN)/python scripts/fetch_assets.py

browser: install
	bash scripts/ensure_chromium.sh

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_setup
	$(BIN)/python -m portal.devstack

test: install browser
	bash scripts/test.sh $(PYTEST_ARGS)

lint: lint-ruff lint-format lint-imports lint-types lint-docs

lint-ruff: install
	$(BIN)/ruff check .

lint-format: install
	$(BIN)/ruff format --check .

lint-imports: install
	$(BIN)/lint-imports

lint-types: install
	$(BIN)/mypy

lint-docs: install
	$(BIN)/python scripts/check_references.py

.PHONY: lint-deps
lint-deps: install  # the pins against known vulnerabilities (PyPI, else the offline database); exit 77 = could not audit (see the script)
	$(BIN)/python scripts/check_deps.py --self-check
	$(BIN)/python scripts/check_deps.py

.PHONY: messages
messages: install  # locale/*/django.po -> django.mo in pure Python (commit both; docs/CONVENTIONS.md, "Languages")
	$(BIN)/python scripts/compile_messages.py

.PHONY: smoke
smoke: install  # the production stack's commands from docker-compose.yml and the Dockerfile, without Docker
	$(BIN)/python scripts/smoke.py

bench: install
	$(BIN)/python bench/tenant_list.py --tenants 20000
	$(BIN)/python bench/sync.py --children 20000
	$(BIN)/python bench/customer_load.py

clean:
	rm -rf $(VENV) var
