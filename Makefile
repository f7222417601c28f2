# Two commands for a newcomer: `make demo` and `make test`. Everything else is set up on the way.
SHELL := /bin/bash
VENV := .venv
TOOLS := .tools
# Lambda runs python3.13, and `sam build` needs that interpreter on PATH.
# (A pyenv shim answers `command -v` even when it can't run 3.13, so each candidate is tried.)
PYTHON313 := $(shell for p in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13; do \
	"$$p" -c "import sys" >/dev/null 2>&1 && command -v "$$p" && break; done)
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
export PATH := $(dir $(PYTHON313)):$(PATH)

.PHONY: setup tools demo test test-fast bench chaos lint template check-template wheel clean

# The version is read from the engine package at install time (pyproject.toml: dynamic), so a new one reinstalls.
$(VENV)/.installed: pyproject.toml local/pyproject.toml layers/engine/python/auditlake/__init__.py
	@test -n "$(PYTHON313)" || { echo "python3.13 is required (Lambda's runtime); install it and retry" >&2; exit 1; }
	$(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cli,lambda,dev]' -e ./local
	touch $@

setup: $(VENV)/.installed

# SAM CLI and checkov live in their own venvs: checkov pins packages that clash with the test tools.
$(TOOLS)/.installed:
	$(PYTHON313) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/pip install --quiet --upgrade pip
	$(TOOLS)/sam/bin/pip install --quiet aws-sam-cli
	$(PYTHON313) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet --upgrade pip
	$(TOOLS)/checkov/bin/pip install --quiet checkov
	touch $@

tools: $(TOOLS)/.installed

demo: setup
	$(VENV)/bin/auditlake demo

lint: setup
	$(VENV)/bin/ruff check .

# template.yaml is generated from template/source.yaml, template/vendors/*.yaml and the vendor registry; the tests
# fail when it is stale.
template: setup
	$(PY) scripts/render_template.py

check-template: setup tools
	SAM=$(TOOLS)/sam/bin/sam CHECKOV=$(TOOLS)/checkov/bin/checkov CFN_LINT=$(VENV)/bin/cfn-lint PYTHON=$(PY) \
		bash scripts/check_template.sh

# Every test, on one worker per core (pytest-xdist; tests/conftest.py says which modules stay on one worker); CI
# runs this.
PYTEST_WORKERS := -n auto
test: lint check-template
	$(VENV)/bin/pytest -q $(PYTEST_WORKERS)

# What a developer runs on every change, in under a minute: the tests not marked slow (every module keeps some),
# and the lint; no template checks (`make check-template`).
test-fast: lint
	$(VENV)/bin/pytest -q $(PYTEST_WORKERS) -m "not slow"

# The benchmark (a script, not a test; about ten minutes): backfills of 10k, 100k and 1M events per vendor, the idle
# tick, a day of live ticks, the rate-limited backfill, and the deployment packages (`sam build`). Prints tables and,
# last, the monthly cost computed from the live ticks (auditlake_local/cost.py); JSON in .auditlake/.
bench: setup tools
	SAM=$(TOOLS)/sam/bin/sam $(PY) -m auditlake_local.bench

# The long seeded chaos sweep (the test suite runs a short one); a failing seed prints how to replay it.
chaos: setup
	$(PY) -m auditlake_local.chaos --seeds 200 --ticks 40

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam

# The operator's command line as one wheel (see README, "Installing the command line").
wheel: setup
	rm -rf build dist && $(PY) -m pip wheel --quiet --no-deps -w dist .
