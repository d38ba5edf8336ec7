# Everything installs itself on first use: `make demo` and `make test` create .venv and install the pinned
# dependencies (and, for the tests that need them, Debian packages) the first time they run.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test system bench-startup clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: python3.11 not found; install Python 3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The main job end to end on the embedded default model (MobileNet v2 1.0/224): build, quantize/export,
# benchmark, report; then the gate with budgets any machine can pass (sizes: configs/budgets_demo.yaml).
# Latency limits in milliseconds are a property of the machine: configs/budgets.yaml is the CI example.
demo: $(STAMP)
	$(BIN)/mnetdeploy run
	$(BIN)/mnetdeploy gate artifacts/v2_1.0_224 --budgets configs/budgets_demo.yaml

# Debian packages and the arm64 device userland some tests use (idempotent, cached under build/).
system: $(STAMP)
	bash scripts/setup_test_env.sh

# Lint and types first (seconds; configured in pyproject.toml), then the suite on two workers, one test file
# each (--dist loadfile: a file's module fixtures are built once): most of the suite is single-threaded
# conversion work, so 2 cores run it in about 60 % of the serial time.
test: $(STAMP) system
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Wall time of `mnetdeploy --help` against `import tensorflow`, measured side by side.
bench-startup: $(STAMP)
	$(BIN)/python scripts/measure_startup.py

clean:
	rm -rf $(VENV) artifacts build .pytest_cache
