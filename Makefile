# The README's commands.  Each builds .venv from requirements.lock when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= smoke
# extra arguments for JupyterLab (`make lab LAB_ARGS="--port 8899 --no-browser"`); as root
# (containers, cluster nodes) --allow-root is added, which JupyterLab refuses to start without
LAB_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

.PHONY: reproduce test test-slow test-all gpu-check lab lab-edit venv readme clean
.DEFAULT_GOAL := reproduce

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:3] >= (3, 11, 5) else "reprolib needs Python 3.11.5 or newer (what requirements.lock installs on); $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=/path/to/python3.11")'
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

## the slow tier alone (subprocesses, kill-and-resume, DDP, every paper profile for two steps)
test-slow: venv
	$(PY) -m pytest -q -n 2 --dist loadfile -m "slow and not gpu" tests

## everything, slow tests included
test-all: venv
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not gpu"

## the prepared GPU check of issue 26 on a fresh GPU machine (< 8 min; fill carry/ first with
## tools/gpu_check.sh --fill): pytest -m gpu, bench --profile gpu, one evidence seed of templates
## and SiDT, all into $$OUT or runs/gpu_check/ (GPU_CHECK_ARGS="--device cpu --shrink" dry-runs it)
GPU_CHECK_ARGS ?=
gpu-check:
	bash tools/gpu_check.sh $(GPU_CHECK_ARGS)

## rewrite README.md's results section from the committed records
readme: venv
	$(PY) -m reprolib readme

## JupyterLab on copies of the notebooks in lab/ (git-ignored): running and autosaving them
## never modifies the tracked notebooks, and the tables / figures they save go to
## lab/figures/ (records still go to results/, where every run with the same config reuses
## them).  Copies are made once; `rm -r lab` starts again from the committed notebooks.
## LAB_ARGS go to JupyterLab; as root --allow-root is added.
lab: venv
	@mkdir -p lab
	@for nb in notebooks/*.ipynb; do [ -e "lab/$$(basename $$nb)" ] || cp "$$nb" lab/; done
	REPROLIB_FIGURES=$(CURDIR)/lab/figures $(VENV)/bin/jupyter lab $(LAB_ROOT) $(LAB_ARGS) lab/

## JupyterLab on the tracked notebooks themselves, to change one on purpose; before
## committing: $(PY) -m reprolib.tools.nbclean --execute notebooks/PAPER.ipynb
lab-edit: venv
	$(VENV)/bin/jupyter lab $(LAB_ROOT) $(LAB_ARGS) notebooks/

clean:
	rm -rf runs .pytest_cache
