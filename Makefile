# The README's commands.  Each builds .venv from requirements.lock when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= smoke

.PHONY: reproduce test test-all lab venv readme clean
.DEFAULT_GOAL := reproduce

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

## every notebook at the smoke profile (or PROFILE=cpu|gpu|paper): executed notebooks in
## runs/, records in results/, tables and figures in figures/
reproduce: venv
	$(PY) -m reprolib reproduce --profile $(PROFILE)

## unit + pipeline tests and nbval of every notebook at its defaults (slow and gpu skipped)
test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile

## everything, slow tests included
test-all: venv
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not gpu"

## rewrite README.md's results section from the committed records
readme: venv
	$(PY) -m reprolib readme

lab: venv
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf runs .pytest_cache
