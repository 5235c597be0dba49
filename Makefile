# The commands the README names. Each creates the virtual environment on first use.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: venv run test bench fuzz lint fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## the service on the embedded default (SQLite + in-process cache)
	$(BIN)/recsys db upgrade
	RECSYS_DEMO_MODELS=$${RECSYS_DEMO_MODELS:-1} $(BIN)/recsys serve --host $(HOST) --port $(PORT)

test: $(STAMP)  ## the whole suite (needs Postgres and Redis: see .ci/run)
	$(BIN)/pytest -q

bench: $(STAMP)  ## benchmarks; results land in bench/results/
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/redis_client.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/e2e.py
	nice -n 10 $(BIN)/python bench/ab_sim.py
	$(BIN)/python bench/ui.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/promotion.py
	$(BIN)/python bench/ann.py

fuzz: $(STAMP)  ## schemathesis against every route (Postgres + Redis when up, else SQLite)
	$(BIN)/python scripts/fuzz.py --max-examples $${FUZZ_EXAMPLES:-1000} $(FUZZ_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app models tests bench research scripts
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format app models tests bench research scripts
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
