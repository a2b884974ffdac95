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
	tests/data_prep/test_build.py tests/data_prep/test_packing.py tests/cloudops/test_doctor.py \
	tests/cloudops/test_pod_resolver.py

# The TensorFlow matrix: each older minor's CPU build with its Keras (requirements/tfX.Y.txt) in
# .venv-tfX.Y; `make test` covers 2.21. Every test that touches TensorFlow, the XLA rehearsal of
# the TPU step in bfloat16 included (PyTorch, which one encoder test compares against, is not in them).
TF_MINORS := 2.18 2.19 2.20
TF_TESTS := tests/pretrain/training tests/pretrain/model tests/faults/test_faults_training.py \
	$(filter-out tests/pretrain/training/%,$(TPU_ENV_TESTS)) \
	--deselect tests/pretrain/model/test_encoder.py::test_logits_equal_transformers_electra
ifneq ($(filter test-tf,$(MAKECMDGOALS)),)
ifeq ($(filter $(TF),$(TF_MINORS)),)
$(error make test-tf TF=X.Y, one of: $(TF_MINORS))
endif
endif

.PHONY: demo test test-slow test-tpu-env test-tf test-tf-matrix bench venv clean tools

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
	RUNTIME_VERSION=tpu-ubuntu2204-base TPU_TENSORFLOW=$(TPU_TENSORFLOW) TPU_WHEELS= \
	  bash -c 'source scripts/lib.sh && eval "$$(tpu_install_command $(TPU_VENV) .)"'
	$(TPU_VENV)/bin/pip install -q -r requirements/test-tools.txt
	touch $(TPU_STAMP)

## The TensorFlow tests in the TPU VM's packages ($(TPU_TENSORFLOW)), on the CPU. libtpu hangs
## when loaded without a TPU: TPU_LOAD_LIBRARY=0 keeps it out, as the doctor checks its version.
test-tpu-env: $(TPU_STAMP)
	$(TPU_VENV)/bin/electra-doctor --versions-only --tpu local
	TPU_LOAD_LIBRARY=0 $(TPU_VENV)/bin/python -m pytest -m "not slow" $(QUIET) $(TPU_ENV_TESTS) $(ARGS)

.venv-tf%/.installed: requirements/tf%.txt requirements/base.txt requirements/test-tools.txt setup.py
	rm -rf .venv-tf$* && $(PY) -m venv .venv-tf$*
	.venv-tf$*/bin/pip install -q --upgrade pip
	.venv-tf$*/bin/pip install -q -r requirements/tf$*.txt -r requirements/test-tools.txt
	.venv-tf$*/bin/pip install -q --no-deps -e .
	touch $@

## One minor of the matrix (TF=2.18, 2.19 or 2.20): the doctor's versions and its smoke test (a
## bfloat16 matmul and an all-reduce on 2 logical CPUs), then the TensorFlow tests.
test-tf: .venv-tf$(TF)/.installed
	.venv-tf$(TF)/bin/electra-doctor --smoke
	.venv-tf$(TF)/bin/python -m pytest -m "not slow" -q $(TF_TESTS) $(ARGS)

## The whole matrix, one venv at a time.
test-tf-matrix:
	set -e; for tf in $(TF_MINORS); do $(MAKE) --no-print-directory test-tf TF=$$tf; done

## Long tests: full trainings and larger data.
test-slow: $(STAMP) tools
	$(BIN)/python -m pytest -m slow $(QUIET) $(ARGS)

## Benchmarks against the peers; regenerates the figures in BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/pip install -q -r requirements/bench.txt
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(TPU_VENV) $(TF_MINORS:%=.venv-tf%) runs *.egg-info
