# All set-up happens here: `make run` and `make test` create the virtual environment.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/gmm.py

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,parity]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python launch.py --config=$(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

bench: $(STAMP)
	$(BIN)/python bench/ode_accuracy.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/mcmc_ess.py

clean:
	rm -rf $(VENV)
