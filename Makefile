# Every target that needs Python depends on $(STAMP): the virtualenv is created and the
# project installed only when .venv is missing or pyproject.toml changed since.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick
JOBS ?= 3
# Test processes: most tests wait on child processes, so two share 2 cores well; the `serial`
# ones (wall-clock bounds) then run alone. Tests go to the workers one at a time, end-to-end
# ones first (tests/conftest.py), so both stay busy to the end.
TEST_JOBS ?= 2
# the files that hold `serial` tests: that phase collects only these
SERIAL_FILES = $(shell grep -l 'mark.serial' tests/test_*.py)
TRACKING_URI ?= sqlite:///mlflow.db
PORT ?= 5000

.PHONY: venv test test-fast bench lint clean ui figures paper sweep-noise sweep-agents sweep-lr sweep-tasks sweep-search

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --maxschedchunk 1 -m "not serial"
	$(BIN)/python -m pytest -q -m serial $(SERIAL_FILES)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check core sweeps analysis dqt tests benchmarks

ui: $(STAMP)
	$(BIN)/dqt ui --tracking-uri $(TRACKING_URI) --port $(PORT)

figures: $(STAMP)
	$(BIN)/dqt figures --all --tracking-uri $(TRACKING_URI)

sweep-noise: $(STAMP)
	$(BIN)/dqt sweep sweeps/noise.yaml --profile $(PROFILE) --jobs $(JOBS) --tracking-uri $(TRACKING_URI)

sweep-agents sweep-lr: $(STAMP)
	$(BIN)/dqt sweep sweeps/agents.yaml --profile $(PROFILE) --jobs $(JOBS) --tracking-uri $(TRACKING_URI)

sweep-tasks: $(STAMP)
	$(BIN)/dqt sweep sweeps/tasks.yaml --profile $(PROFILE) --jobs $(JOBS) --tracking-uri $(TRACKING_URI)

# The paper's figures 2, 4 and 5 at one profile (quick: ~30 min; cpu: ~4 h on 2 cores; paper: a GPU
# machine) into reports/paper/. Rerun the same command after an interruption: finished runs are skipped.
paper: $(STAMP)
	$(BIN)/dqt sweep sweeps/agents.yaml --profile $(PROFILE) --jobs $(JOBS) --tracking-uri $(TRACKING_URI)
	$(BIN)/dqt sweep sweeps/noise.yaml --profile $(PROFILE) --jobs $(JOBS) --tracking-uri $(TRACKING_URI)
	$(BIN)/dqt sweep sweeps/tasks.yaml --profile $(PROFILE) --jobs $(JOBS) --tracking-uri $(TRACKING_URI)
	$(BIN)/dqt paper --profile $(PROFILE) --tracking-uri $(TRACKING_URI)

sweep-search: $(STAMP)
	$(BIN)/dqt sweep sweeps/search.yaml --profile $(PROFILE) --jobs $(JOBS) --tracking-uri $(TRACKING_URI)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache reports/bench *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
