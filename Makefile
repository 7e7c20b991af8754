# Every target installs what it needs into .venv first (CPU torch from
# constraints.txt), so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-accel accel bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[test,bench]'
	touch $@

# The main job: the PyG pipeline example, then a quick benchmark table.
demo: $(STAMP)
	$(PY) examples/pyg_pipeline.py
	$(PY) benchmarks/sm_scaling.py --nodes 4096 16384 --repeats 3

test: $(STAMP)
	$(PY) -m pytest -q

# torch-scatter and torch-sparse compile from source here (minutes).
$(VENV)/.accel: $(STAMP)
	$(PIP) install -q -c constraints.txt --no-build-isolation torch-scatter torch-sparse
	touch $@

accel: $(VENV)/.accel

test-accel: $(VENV)/.accel
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/sm_scaling.py

clean:
	rm -rf $(VENV) benchmarks/results .pytest_cache
