# The two set-up commands for a fresh clone are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= data

.PHONY: run test bench lint install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# `build/` is removed so a stale compiled accelerator is never reused.
install: $(BIN)/python
	rm -rf build
	$(BIN)/pip install -q .

dev: $(BIN)/python
	rm -rf build
	$(BIN)/pip install -q '.[dev]'

# Materialise the paper's Yin-Yang config into ./data (verified instead if already there).
run: install
	@if [ -f $(OUT)/yinyang/1.0.0/manifest.json ]; then \
		$(BIN)/neurodata verify $(OUT)/yinyang/1.0.0; \
	else \
		$(BIN)/neurodata yinyang --config configs/yinyang.yaml --out $(OUT); \
	fi

# The reader's DataLoader test runs where torch is importable. Machines of this project keep a
# CPU build of torch on disk; install that file when it is there (never torch from the network,
# which would pull gigabytes of CUDA packages).
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl))

# The contract tests run over every registered dataset, the example plugin's `ramp` included.
test: dev
ifneq ($(TORCH_WHEEL),)
	$(BIN)/pip install -q $(TORCH_WHEEL)
endif
	$(BIN)/pip install -q ./examples/plugin
	$(BIN)/pytest

bench: dev
	$(BIN)/python benchmarks/run.py

lint: dev
	$(BIN)/ruff check neurodata_cli tests benchmarks examples setup.py
	$(BIN)/mypy neurodata_cli

clean:
	rm -rf build $(VENV) *.egg-info examples/plugin/build examples/plugin/*.egg-info
