# Two commands do all the set-up on a fresh machine (Python 3.11+, Node 20+, the registries):
#   make drill   install what is missing, synthesize, run a local recovery drill end to end
#   make test    install what is missing, lint, run every test
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# node_modules/.bin first: the pinned CDK CLI and a supported Node (22) for jsii.
export PATH := $(CURDIR)/node_modules/.bin:$(BIN):$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
SCENARIO ?= instance-failure
# CONFIG=path: a file holding the `recovery` object (absolute, or relative to this directory);
# default: cdk.json's context.recovery. STACKS: the stacks to deploy (default: all of them).
CONFIG ?=
STACKS ?=
CDK_CONFIG = $(if $(CONFIG),-c recovery_config=$(abspath $(CONFIG)))

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help setup layer synth drill test lint format schema deploy clean bench config-validate check-config

help:
	@echo "make drill     set up, synthesize, run a local recovery drill (SCENARIO=$(SCENARIO))"
	@echo "make test      set up, lint, run every test"
	@echo "make layer     build the functions' dependency layer from requirements.txt (cached in .build/)"
	@echo "make synth     synthesize the stack into cdk.out (CONFIG=path: a file holding the recovery object)"
	@echo "make deploy    deploy to the account of your current AWS credentials (CONFIG=path, STACKS=names)"
	@echo "make config-validate CONFIG=path   every problem of a configuration, without synthesizing"
	@echo "make schema    publish the impairment event's JSON Schema to schemas/"
	@echo "make bench     run the benchmarks (not part of test): bench/results.json, docs/performance.md"
	@echo "make lint | format | clean"

$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The functions' dependencies, from PyPI for Lambda's platform once per requirements (infra/layer.py).
layer: $(PY_STAMP)
	$(BIN)/python -m infra.layer

setup: $(PY_STAMP) $(NODE_STAMP) layer

check-config:
	@test -z "$(CONFIG)" || test -f "$(abspath $(CONFIG))" || { echo "make: CONFIG=$(CONFIG): no such file" >&2; exit 2; }

synth: setup check-config
	cdk synth --no-notices --quiet $(CDK_CONFIG)

config-validate: setup check-config
	$(BIN)/python -m recoveryctl.cli config validate $(if $(CONFIG),$(abspath $(CONFIG)),cdk.json)

drill: synth
	$(BIN)/recoveryctl drill --scenario $(SCENARIO)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every test, on every core (pytest-xdist; a file's tests stay on one worker, so its module
# fixtures are built once). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

schema: setup
	PYTHONPATH=functions $(BIN)/python -m core.contract > schemas/impairment-event.v1.json

bench: synth
	$(BIN)/python -m bench.run

deploy: synth
	cdk deploy --no-notices $(CDK_CONFIG) $(or $(STACKS),--all)

clean:
	rm -rf cdk.out .pytest_cache .ruff_cache
