# All set-up happens here: `make run` and `make test` create the virtual environment.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/digits.py

.PHONY: run gmm test bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,parity]'
	touch $(STAMP)

# the main job on the embedded default (scikit-learn's digits, no download): train, sample, evaluate
run: $(STAMP)
	$(BIN)/python launch.py --config=$(CONFIG) --config.mode=train
	$(BIN)/python launch.py --config=$(CONFIG) --config.mode=sample
	$(BIN)/python launch.py --config=$(CONFIG) --config.mode=eval

# an analytic Gaussian mixture: every solver's error against the exact ODE solution (~40 s)
gmm: $(STAMP)
	$(BIN)/python launch.py --config=configs/gmm.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

bench: $(STAMP)
	$(BIN)/python bench/ode_accuracy.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/mcmc_ess.py

clean:
	rm -rf $(VENV)
