# Two commands on a fresh machine: `make run` (dashboard) and `make test` (every test).
# Each creates .venv when missing and installs only what changed since the last install
# (a stamp file per requirements file), so a second call starts at once.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test cli bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed-runtime
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

run: $(VENV)/.installed-runtime
	$(PY) -m streamlit run dashboard/app.py --server.port $(PORT)

test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-runtime
	$(PY) bench/train_throughput.py

clean-venv:
	rm -rf $(VENV)
