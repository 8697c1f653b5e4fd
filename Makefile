# ssm-aimc: the two contract commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WORKDIR ?= runs/demo

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

## Train the default config (S4D on scikit-learn digits) and print the results table.
demo: $(STAMP)
	$(PY) launch.py --config=configs/default.py --workdir=$(WORKDIR)

## The test suite (slow tests excluded; see test-slow).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist=loadfile

## Slow end-to-end tests (accuracy smoke runs); not part of `make test`.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check ssm_aimc tests configs launch.py bench

bench: $(STAMP)
	$(PY) bench/bench_recurrence.py

clean:
	rm -rf $(VENV) runs *.egg-info
