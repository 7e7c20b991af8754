# Every target installs what it needs into .venv first (CPU torch from
# constraints.txt), so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo example test test-accel accel bench docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[slides,test,bench,docs]'
	touch $@

# The main job: SmABMIL vs ABMIL on the embedded synthetic slides.
demo: $(STAMP)
	$(VENV)/bin/pyg-sm demo --out pyg_sm_demo

example: $(STAMP)
	$(PY) examples/pyg_pipeline.py

# torchmil's two generations for the comparison tests, each in a folder of
# its own (the two are one package name), with the pure-Python packages
# they import; torch and numpy come from the venv.
TORCHMIL := .torchmil
TORCHMIL_STAMP := $(TORCHMIL)/.installed
$(TORCHMIL_STAMP): $(STAMP)
	rm -rf $(TORCHMIL)
	$(PIP) install -q --no-deps --target $(TORCHMIL)/0.1.0 torchmil==0.1.0
	$(PIP) install -q --no-deps --target $(TORCHMIL)/1.0.2 torchmil==1.0.2
	$(PIP) install -q --no-deps --target $(TORCHMIL)/deps tensordict==0.15.3 \
		einops==0.8.2 pyvers==0.2.3 cloudpickle==3.1.3
	touch $@

# The documentation site: API pages from the docstrings, the guides, the
# executed examples gallery (torchmil's example reads .torchmil/), warnings
# as errors, then every internal link checked. The gallery keeps its
# outputs in docs/auto_examples/ and reruns only changed examples.
docs: $(STAMP) $(TORCHMIL_STAMP)
	rm -rf docs/_build docs/api/generated
	$(VENV)/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html
	$(PY) docs/check_links.py docs/_build/html

# The suite reads the built site (its API pages, the pages in Chromium);
# ruff (pyproject's settings) checks the code first.
test: $(STAMP) $(TORCHMIL_STAMP) docs
	$(VENV)/bin/ruff check pyg_sm tests benchmarks examples docs
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

test-accel: $(ACCEL_VENV)/.accel $(TORCHMIL_STAMP) docs
	$(ACCEL_PY) -c "import torch_scatter, torch_sparse; print('torch-scatter', torch_scatter.__version__, 'torch-sparse', torch_sparse.__version__)"
	$(ACCEL_PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/sm_scaling.py

clean:
	rm -rf $(VENV) $(ACCEL_VENV) $(TORCHMIL) benchmarks/results pyg_sm_demo .pytest_cache \
		docs/_build docs/api/generated docs/auto_examples
