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
# It goes into a folder of its own that only the tests put on their path (tests/conftest.py),
# so the user's `neurodata` never lists it; an older `make test` installed it into the venv.
TEST_PLUGINS := $(VENV)/test-plugins
test: dev
ifneq ($(TORCH_WHEEL),)
	$(BIN)/pip install -q $(TORCH_WHEEL)
endif
	-$(BIN)/pip uninstall -q -y neurodata-ramp 2>/dev/null
	rm -rf $(TEST_PLUGINS)
	$(BIN)/pip install -q --no-deps --target $(TEST_PLUGINS) ./examples/plugin
	$(BIN)/pytest

bench: dev
	$(BIN)/python benchmarks/run.py

lint: dev
	$(BIN)/ruff check neurodata_cli tests benchmarks examples setup.py
	$(BIN)/mypy neurodata_cli

clean:
	rm -rf build $(VENV) *.egg-info examples/plugin/build examples/plugin/*.egg-info
