# Two commands (see README): `make demo` sets everything up and runs the main job on a built-in example;
# `make test` runs the tests (CI calls it through .ci/run). Everything lives in .venv/ at the repo root.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.embedkit-installed

.PHONY: setup weights demo test test-all test-floors lint bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "embedkit needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP) weights

weights: $(STAMP)
	$(BIN)/embedkit models fetch --all

demo: setup
	$(BIN)/embedkit demo

test: setup
	$(BIN)/python -m pytest -m "not slow" -q

test-all: setup
	$(BIN)/python -m pytest -q

# The dependency floors of setup.cfg are true: install exactly the declared minimums (each floor's
# release series, see .ci/floors.py) into a separate venv and run the fast tests there.
FLOORS := .venv-floors
test-floors:
	test -x $(FLOORS)/bin/python || $(PYTHON) -m venv $(FLOORS)
	$(PYTHON) .ci/floors.py > $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install -q --disable-pip-version-check -r $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(FLOORS)/bin/python -m pip list --format=freeze > $(FLOORS)/installed.txt
	$(FLOORS)/bin/embedkit models fetch --all
	$(FLOORS)/bin/python -m pytest -m "not slow" -q -p no:cacheprovider

# ruff (configured in pyproject.toml); tests/test_lint.py runs the same check.
lint: $(STAMP)
	$(BIN)/ruff check .

bench: setup
	for b in reference_agreement embed_speed embed_collection heads search recommend metric serve store_integrity highlight; do $(BIN)/python benchmarks/$$b.py || exit 1; done
	flock /tmp/embedkit-timing.lock $(BIN)/python benchmarks/models.py --part cost && $(BIN)/python benchmarks/models.py

clean:
	rm -rf $(VENV) $(FLOORS) build dist *.egg-info .pytest_cache
