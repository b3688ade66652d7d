# Everything runs from a local virtual environment (.venv) that `make setup` builds from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	bash .ci/system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The main job on the embedded (generated) sample: sample -> prepare -> train -> evaluate -> report.
demo: setup
	$(VENV)/bin/ferreport run

# Lint first (ruff, configured in pyproject.toml), then the suite in two processes (pytest-xdist; a
# test module stays on one worker, so its fixtures are built once).
test: setup
	$(VENV)/bin/ruff check ferreport tests
	$(PY) -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
