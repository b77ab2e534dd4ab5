# The two commands of the README: `make run` and `make test`. Both create .venv/ from the pinned
# requirements.txt when it is missing, and reinstall when requirements.txt changed. Non-interactive.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_FLAGS := --disable-pip-version-check --no-input --quiet

.PHONY: run test venv migrate seed status clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11, or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV)/ with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing requirements.txt into $(VENV)/"
	$(PY) -m pip install $(PIP_FLAGS) -r requirements.txt
	@touch $(STAMP)

# Everything in the foreground on the embedded defaults (SQLite under var/, embedded Redis) unless
# DATABASE_URL / REDIS_URL say otherwise. Ctrl-C stops every process it started.
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	exec $(PY) manage.py runplatform

test: $(STAMP)
	bash scripts/test-deps.sh
	$(PY) -m pytest $(PYTEST_ARGS)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

seed: $(STAMP)
	$(PY) manage.py seed_demo

status: $(STAMP)
	$(PY) manage.py platform_status

# Removes the embedded defaults' data (SQLite database, sandboxes); the venv stays.
clean:
	rm -rf var/
