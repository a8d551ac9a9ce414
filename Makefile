# boundary-k8s: every entry point a developer or CI needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

export BK_CACHE ?= $(HOME)/.cache/boundary-k8s
# The pinned uv that tools/install-python.sh installs.
export PATH := $(BK_CACHE)/uv/bin:$(PATH)
export STACK_BIN ?= $(CURDIR)/.stack/bin
STACK_ENV ?= $(CURDIR)/.stack/env
RUN := uv run --frozen --quiet

.PHONY: help tools apt-packages python-env go-tools wine-shim stack demo test lint typecheck unit e2e chaos \
	test-chaos

help:
	@echo "make demo    run the main job end to end (DEMO_EXIT=1 to exit when done)"
	@echo "make test    lint, type checks, unit, e2e and short chaos tests"
	@echo "make test-chaos  the full fault-injection suite"
	@echo "make tools   install/build every program the tests use and print versions"
	@echo "make stack   start the real local stack in the foreground; writes .stack/env"

## Installation -----------------------------------------------------------------------------
apt-packages:
	@bash tools/install-apt.sh

python-env:
	@bash tools/install-python.sh

go-tools:
	@bash tools/build-go-tools.sh

wine-shim: apt-packages
	@bash tools/build-wine-shim.sh

tools: apt-packages python-env go-tools wine-shim
	@$(RUN) python -m boundary_devstack versions --bin-dir "$(STACK_BIN)"

## Running ----------------------------------------------------------------------------------
stack: tools
	@$(RUN) python -m boundary_devstack up --bin-dir "$(STACK_BIN)" --env-file "$(STACK_ENV)"

demo: tools
	@$(RUN) python -m boundary_devstack.demo $(if $(DEMO_EXIT),--exit,)

## Checks -----------------------------------------------------------------------------------
lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) hadolint images/Containerfile
	$(RUN) shellcheck tools/*.sh .ci/run

typecheck:
	$(RUN) mypy

unit:
	$(RUN) pytest -q $(wildcard tests/test_*.py) $(wildcard */tests)

e2e:
	$(RUN) pytest -q tests/e2e

# The fault-injection suite in its short form; `make test-chaos` runs the full sizes.
chaos:
	$(RUN) pytest -q tests/chaos

test-chaos: tools
	BK_CHAOS=full $(RUN) pytest -q tests/chaos

test: tools lint typecheck unit e2e chaos

## Benchmarks -------------------------------------------------------------------------------
.PHONY: bench bench-quick
bench: tools
	$(RUN) python -m bench.run_all

bench-quick: tools
	$(RUN) python -m bench.run_all --quick

## A real cluster with a container runtime (never runs on the development machines) ----------
.PHONY: e2e-kind
e2e-kind:
	@bash tools/e2e-kind.sh

## Running pods without a container runtime ---------------------------------------------------
.PHONY: pod-run operator
pod-run:
	@test -n "$(POD)" || { echo "usage: make pod-run POD=<namespace>/<pod>"; exit 2; }
	@$(RUN) python -m boundary_devstack.podrunner "$(POD)" --env-file "$(STACK_ENV)"

operator:
	@set -a; source "$(STACK_ENV)"; set +a; $(RUN) boundary-operator run
