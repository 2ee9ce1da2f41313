# Two entry points, each building .venv itself on a fresh machine.
#   make demo   - the embedded default job
#   make test   - the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/softseg demo

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_downsample.py
	$(BIN)/python benchmarks/bench_downsample.py --convention cv2

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
