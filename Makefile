# certtoken developer tasks. The virtualenv is created on first use and reinstalled only
# when pyproject.toml or constraints.txt change (stamp file $(VENV)/.installed).
#   make run | test | chaos | lint | bench | secrets | clean | distclean
#   make test PYTEST_ARGS="-m 'not postgres' -x"     # extra pytest arguments
#   make test DRILLS=no TEST_WORKERS=0               # no machine-wide drills, one process
#   make bench BENCH_ARGS="--quick"                   # extra arguments for every benchmark

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Installs the system packages the tests need and starts RabbitMQ and PostgreSQL when they are
# down (root only then); `PREPARE=:` skips it.
PREPARE ?= .ci/prepare
CHAOS_ENROLLMENTS ?= 10000
# Processes for the tests that may run side by side (all but the machine-wide drills).
TEST_WORKERS ?= 2
# DRILLS=no leaves out the drills that restart RabbitMQ or PostgreSQL or mount a tmpfs.
DRILLS ?= yes
JUNIT_DIR ?=
junit = $(if $(JUNIT_DIR),--junitxml=$(JUNIT_DIR)/junit-$(1).xml)
BENCH_ARGS ?=
SECRETS_DIR ?= secrets
# The team's script that installs and starts a reference privacyIDEA 3.14 (outside this repo).
PI_SETUP ?= ../shared/tools/privacyidea/pi_setup.sh
PI_URL ?= http://127.0.0.1:5151

.DEFAULT_GOAL := help
.PHONY: help venv run test chaos lint format bench secrets clean distclean compare-privacyidea

help:
	@echo "make run        all three services in one process (.venv/bin/certtoken run)"
	@echo "make test       installs what is missing, starts RabbitMQ and PostgreSQL, runs the suite"
	@echo "make chaos      the fault drills at scale (CHAOS_ENROLLMENTS=10000 per drill)"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make bench      run every bench/*.py (prints figures; fails only if one crashes)"
	@echo "make compare-privacyidea   the same requests to privacyIDEA 3.14 and certtoken, differences"
	@echo "make secrets    create ./secrets/* for docker compose (kept when present)"
	@echo "make clean      caches and build output; distclean also removes $(VENV)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/certtoken run

# The venv is made after $(PREPARE), which installs python3-venv when it is missing.
# Two runs: every test but the machine-wide drills (marker machine_wide) on $(TEST_WORKERS)
# processes (pytest-xdist), then those alone: they restart RabbitMQ and PostgreSQL or mount a
# tmpfs. A run with nothing selected (exit status 5) is fine while the other ran something.
# JUNIT_DIR=dir writes a JUnit report per run.
test:
	PYTHON=$(PYTHON) $(PREPARE)
	@$(MAKE) --no-print-directory -s venv
	@first=0; second=0; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --drills=skip $(call junit,tests) $(PYTEST_ARGS) || first=$$?; \
	if [ "$(DRILLS)" = no ]; then second=5; else \
	$(BIN)/python -m pytest --drills=only $(call junit,drills) $(PYTEST_ARGS) || second=$$?; fi; \
	[ $$first = 5 ] && [ $$second = 5 ] && exit 5; \
	[ $$first = 5 ] && first=0; [ $$second = 5 ] && second=0; \
	[ $$first = 0 ] && [ $$second = 0 ]

chaos:
	PYTHON=$(PYTHON) $(PREPARE)
	@$(MAKE) --no-print-directory -s venv
	CERTTOKEN_CHAOS_ENROLLMENTS=$(CHAOS_ENROLLMENTS) $(BIN)/python -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	@set -e; found=0; \
	for f in bench/*.py; do \
		case "$$(basename "$$f")" in _*) continue ;; esac; \
		[ -f "$$f" ] || continue; \
		found=1; echo "== $$f"; $(BIN)/python "$$f" $(BENCH_ARGS); \
	done; \
	[ "$$found" = 1 ] || echo "no benchmarks under bench/"

# Opt-in, not part of make test: starts the reference when it is not running (idempotent).
compare-privacyidea: $(STAMP)
	bash $(PI_SETUP) all
	$(BIN)/python -m tests.contract.compare --url $(PI_URL)

# Compose bind-mounts secret files with their host permissions: 0644 files (so the
# image's uid 10001 can read them) inside a 0700 directory (so other host users cannot).
secrets: $(SECRETS_DIR)/secret_key $(SECRETS_DIR)/ca_passphrase $(SECRETS_DIR)/pkcs11_pin \
	$(SECRETS_DIR)/backup_passphrase

$(SECRETS_DIR)/%:
	@install -d -m 0700 $(SECRETS_DIR)
	@umask 022 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))' > $@
	@echo "created $@"

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .bench .ci/junit
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -prune -exec rm -rf {} + \
		-o -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
