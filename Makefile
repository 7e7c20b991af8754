# Every target installs what it needs into .venv first (CPU torch from
# constraints.txt), so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo example test test-accel accel bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[slides,test,bench]'
	touch $@

# The main job: SmABMIL vs ABMIL on the embedded synthetic slides.
demo: $(STAMP)
	$(VENV)/bin/pyg-sm demo --out pyg_sm_demo

example: $(STAMP)
	$(PY) examples/pyg_pipeline.py

test: $(STAMP)
	$(PY) -m pytest -q

# torch-scatter and torch-sparse have no wheels for this torch: they compile
# from source (minutes; ninja runs the compiler on every core). They go into
# a venv of their own, so that `make test` always runs without them.
ACCEL_VENV ?= .venv-accel
ACCEL_PY := $(ACCEL_VENV)/bin/python

$(ACCEL_VENV)/.accel: pyproject.toml constraints.txt
	$(MAKE) VENV=$(ACCEL_VENV) $(ACCEL_VENV)/.installed
	$(ACCEL_PY) -m pip install -q ninja
	$(ACCEL_PY) -m pip install -q -c constraints.txt --no-build-isolation torch-scatter torch-sparse
	touch $@

accel: $(ACCEL_VENV)/.accel

test-accel: $(ACCEL_VENV)/.accel
	$(ACCEL_PY) -c "import torch_scatter, torch_sparse; print('torch-scatter', torch_scatter.__version__, 'torch-sparse', torch_sparse.__version__)"
	$(ACCEL_PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/sm_scaling.py

clean:
	rm -rf $(VENV) $(ACCEL_VENV) benchmarks/results pyg_sm_demo .pytest_cache
