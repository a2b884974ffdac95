# Every target sets up the project's own virtual environment first (idempotent:
# reinstalls only when a requirements file or setup.py changed).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-slow bench venv clean tools

venv: $(STAMP)

$(STAMP): requirements/base.txt requirements/test.txt setup.py
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
	$(BIN)/python -m pytest -m "not slow" -q $(ARGS)

## Long tests: full trainings and larger data.
test-slow: $(STAMP) tools
	$(BIN)/python -m pytest -m slow -q $(ARGS)

## Benchmarks against the peers; regenerates the figures in BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/pip install -q -r requirements/bench.txt
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs *.egg-info
