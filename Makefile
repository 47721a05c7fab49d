# The two quickstart commands: `make demo` and `make test`. Each creates .venv if missing and installs
# the package (editable, with the dev extras) into it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,web]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/defusion demo -o outputs/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/degradation_speed.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
