# featurelake developer commands. `make demo` sets everything up first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PY) scripts/demo.py

test: setup
	@bash scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks jobs scripts notebooks
	$(VENV)/bin/ruff format --check src tests benchmarks jobs scripts notebooks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) scripts/import_cycles.py

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf demo_store .pytest-tmp spark-warehouse metastore_db derby.log .pytest_cache .mypy_cache .ruff_cache
