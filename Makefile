# Every target sets up the project's own virtual environment first (idempotent:
# reinstalls only when a requirements file or setup.py changed).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
# pytest's -q, unless ARGS gives its own (`make test ARGS=-q`: a second -q would hide the summary line)
QUIET = $(if $(filter -q --quiet,$(ARGS)),,-q)

# The TPU VM's packages (scripts/setup_tpu.sh), installed by the same command, in a second venv.
TPU_VENV := .venv-tpu
TPU_STAMP := $(TPU_VENV)/.installed
TPU_TENSORFLOW := $(shell sed -n 's/^TPU_TENSORFLOW=//p' scripts/tpu.env.example)
# The tests that touch TensorFlow and run in its TPU build on a CPU. That build has no XLA:CPU,
# so the trainer's jit_compile kernels (training, optimisation, masking, fused ops) cannot run
# here; `make test` runs them and the TPU step's rehearsal under the CPU build.
TPU_ENV_TESTS := tests/pretrain/training/test_rehearsal.py tests/pretrain/training/test_distribute.py tests/data_prep/test_tokenization.py tests/data_prep/test_records.py \
	tests/data_prep/test_build.py tests/data_prep/test_packing.py tests/cloudops/test_doctor.py

.PHONY: demo test test-slow test-tpu-env bench venv clean tools

venv: $(STAMP)

$(STAMP): requirements/base.txt requirements/cpu.txt requirements/test-tools.txt requirements/test.txt setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

## The main job: the whole pipeline on the bundled corpus, ending in an exported model.
demo: $(STAMP)
	$(BIN)/electra-demo --out-dir runs/demo $(ARGS)

## System tools the tests use: shellcheck (Debian) for the TPU VM scripts.
tools:
	@command -v shellcheck >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq shellcheck >/dev/null; fi; }

## The default test run (fast; what CI runs).
test: $(STAMP) tools
	$(BIN)/python -m pytest -m "not slow" $(QUIET) $(ARGS)

$(TPU_STAMP): requirements/base.txt requirements/test-tools.txt setup.py scripts/tpu.env.example scripts/lib.sh
	rm -rf $(TPU_VENV) && $(PY) -m venv $(TPU_VENV)
	TPU_TENSORFLOW=$(TPU_TENSORFLOW) TPU_WHEELS= bash -c 'source scripts/lib.sh && eval "$$(tpu_install_command $(TPU_VENV) .)"'
	$(TPU_VENV)/bin/pip install -q -r requirements/test-tools.txt
	touch $(TPU_STAMP)

## The TensorFlow tests in the TPU VM's packages ($(TPU_TENSORFLOW)), on the CPU. libtpu hangs
## when loaded without a TPU: TPU_LOAD_LIBRARY=0 keeps it out, as the doctor checks its version.
test-tpu-env: $(TPU_STAMP)
	$(TPU_VENV)/bin/electra-doctor --versions-only --tpu local
	TPU_LOAD_LIBRARY=0 $(TPU_VENV)/bin/python -m pytest -m "not slow" $(QUIET) $(TPU_ENV_TESTS) $(ARGS)

## Long tests: full trainings and larger data.
test-slow: $(STAMP) tools
	$(BIN)/python -m pytest -m slow $(QUIET) $(ARGS)

## Benchmarks against the peers; regenerates the figures in BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/pip install -q -r requirements/bench.txt
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(TPU_VENV) runs *.egg-info
