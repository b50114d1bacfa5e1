# Set-up and the two commands of the README. Everything installs into .venv, torch 2.13.0 (CPU) first.
PYTHON ?= python3
# where torch comes from: empty for the default index (on Linux PyPI serves a CUDA build); for the CPU-only build
# make TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PRESET ?= quick
VENV := .venv

.PHONY: reproduce test test-paper lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VENV)/bin/pip install -q -e '.[test,lint]' 'tox>=4'
	touch $@

reproduce: $(VENV)/.installed  ## the main job: papers vs baselines at PRESET scale, then the report table
	$(VENV)/bin/attnrepro reproduce --preset $(PRESET)

test: $(VENV)/.installed  ## the test suite and lint, through tox
	$(VENV)/bin/tox -e py,lint

test-paper: $(VENV)/.installed  ## encoder tests and the rehearsal of every paper preset, in a tox env with torchvision (~5.5 GB)
	$(VENV)/bin/tox -e paper

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
