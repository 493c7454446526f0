# Two commands do all the set-up on a fresh machine:
#   make train   install into .venv, then the built-in demo run
#   make test    install into .venv, then ruff and the test suite
# Re-running skips what is already installed (stamp files under .venv/).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned: this version resolves to a local CPU wheel; anything else pulls CUDA wheels.
TORCH_VERSION ?= 2.13.0
DEEPSPEED_SPEC ?= deepspeed
CONFIG ?= configs/default.yaml
PYTEST_ARGS ?=

.PHONY: install train test lint bench clean-venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) install -q torch==$(TORCH_VERSION)
	touch $@

# DeepSpeed ships no wheel; building it in an isolated env would pull a second torch.
$(VENV)/.deepspeed: $(VENV)/.torch
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation $(DEEPSPEED_SPEC)
	touch $@

$(VENV)/.project: $(VENV)/.deepspeed pyproject.toml
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.project

train: install
	$(VENV)/bin/distill train $(CONFIG) --resume

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/lattice.py
	$(PY) bench/teachers.py

clean-venv:
	rm -rf $(VENV)
