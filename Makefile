# Two commands (see README): `make demo` sets everything up and runs the main job on a built-in example;
# `make test` runs the tests (CI calls it through .ci/run). Everything lives in .venv/ at the repo root.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.embedkit-installed

.PHONY: setup weights demo test test-all bench clean

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

bench: setup
	for b in reference_agreement embed_speed embed_collection heads search recommend; do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
