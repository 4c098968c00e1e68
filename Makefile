# Two commands a new user needs:  make demo  |  make test
# Both create .venv (Python 3.11), install torch's CPU wheel first, then sscsig with pinned dependencies.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2

.PHONY: install demo test clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==25.3
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[test,slurm]"
	touch $@

demo: install
	$(VENV)/bin/snakemake --cores $(CORES)

test: install
	$(PY) -m pytest -v -rs --durations=25

clean-demo:
	rm -rf results
