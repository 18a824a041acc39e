# Two commands on a fresh machine: `make run` (dashboard) and `make test` (the quick tier of the
# tests, before each commit); `make test-all` runs every test, as CI does (docs/TESTING.md).
# Each creates .venv when missing and installs only what changed since the last install
# (a stamp file per requirements file), so a second call starts at once.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test test-all test-jax test-jax-all cli bench bench-ray clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt requirements-ray.txt $(VENV)/.installed-runtime
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

# An NVIDIA GPU on Linux (`nvidia-smi -L` lists one) gets TensorFlow's CUDA build at the pinned
# version, with the CUDA libraries as pip packages; EFFLAB_CPU_ONLY=1 opts out. Without a GPU
# nothing changes. A stamp of its own, so a GPU added later is picked up by the next make.
TF_VERSION := $(shell sed -n 's/^tensorflow==//p' requirements.txt)
HAS_GPU := $(shell [ "$$(uname -s)" = Linux ] && [ "$(EFFLAB_CPU_ONLY)" != 1 ] \
                   && nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && echo yes)
RUNTIME := $(VENV)/.installed-runtime $(if $(HAS_GPU),$(VENV)/.installed-gpu)

$(VENV)/.installed-gpu: requirements.txt $(VENV)/.installed-runtime
	$(PY) -m pip install --quiet "tensorflow[and-cuda]==$(TF_VERSION)"
	touch $@

# The optional Ray extra, for a dashboard whose runs train on a cluster (EFFLAB_RAY_ADDRESS).
$(VENV)/.installed-ray: requirements-ray.txt $(VENV)/.installed-runtime
	$(PY) -m pip install --quiet -r requirements-ray.txt
	touch $@

# `make run` with EFFLAB_RAY_ADDRESS set installs Ray first; without it nothing about Ray changes.
run: $(RUNTIME) $(if $(EFFLAB_RAY_ADDRESS),$(VENV)/.installed-ray)
	$(PY) -m streamlit run dashboard/serve.py --server.port $(PORT)

# Two tiers (docs/TESTING.md). `make test`, before each commit: every test not marked `full`, still
# end to end (a Chromium flow from Start to completed, every page, the CLI's train, stop and resume,
# real CIFAR-10 when EFFLAB_DATA_DIR is set, the engine under JAX). `make test-all`, what CI runs:
# every test. Measured figures: README, "Two commands".
#
# Two pytest workers (pytest-xdist) on 2 cores: most of a slow test's time runs on one core
# (TensorFlow tracing a step, a Streamlit script run, a server starting, a browser waiting), so two
# side by side take about half as long as one after the other. --dist loadfile keeps each file in
# one worker, so its module fixtures are built once; the files go out slowest first
# (tests/file_order.py), not xdist's most-tests-first, so both workers end together.
# TEST_WORKERS=0 runs in this process, one test at a time.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
QUICK := -m "not full"

test: $(VENV)/.installed-test $(RUNTIME)
	$(PY) -m pytest $(XDIST) $(QUICK) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-jax

test-all: $(VENV)/.installed-test $(RUNTIME)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-jax-all

# The engine once more under Keras's JAX backend, as on a GPU machine that has CUDA for JAX but no
# TensorFlow (tests/conftest.py makes TensorFlow unimportable), with two host devices so that data
# parallelism over several devices runs on a CPU too. Small: XLA compiles each new shape for ~30 s
# here (JAX's persistent compilation cache, .cache/jax, keeps what it compiled for the next process).
JAX_TESTS := tests/test_backend.py tests/test_data.py tests/test_processes.py
JAX_ENV := KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2
test-jax: $(VENV)/.installed-test $(RUNTIME)
	$(JAX_ENV) $(PY) -m pytest $(XDIST) $(QUICK) $(JAX_TESTS)

test-jax-all: $(VENV)/.installed-test $(RUNTIME)
	$(JAX_ENV) $(PY) -m pytest $(XDIST) $(JAX_TESTS)

bench: $(RUNTIME)
	$(PY) bench/train_throughput.py

# Ray against the in-process trainer on a loopback cluster (bench/README.md, "Ray").
bench-ray: $(RUNTIME) $(VENV)/.installed-ray
	$(PY) bench/scale.py

clean-venv:
	rm -rf $(VENV)
