# boundary-k8s: every entry point a developer or CI needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

export BK_CACHE ?= $(HOME)/.cache/boundary-k8s
# The pinned uv that tools/install-python.sh installs.
export PATH := $(BK_CACHE)/uv/bin:$(PATH)
export STACK_BIN ?= $(CURDIR)/.stack/bin
STACK_ENV ?= $(CURDIR)/.stack/env
RUN := uv run --frozen --quiet

.PHONY: help tools apt-packages python-env go-tools wine-shim container-engine offline-images stack demo \
	test lint typecheck unit e2e chaos test-chaos e2e-kind

help:
	@echo "make demo    run the main job end to end (DEMO_EXIT=1 to exit when done)"
	@echo "make test    lint, type checks, unit, e2e and short chaos tests"
	@echo "make test-chaos  the full fault-injection suite"
	@echo "make tools   install/build every program the tests use and print versions"
	@echo "make stack   start the real local stack in the foreground; writes .stack/env"
	@echo "make e2e-kind  the install journey in real pods on kind (part of make test)"

## Installation -----------------------------------------------------------------------------
apt-packages:
	@bash tools/install-apt.sh

python-env:
	@bash tools/install-python.sh

go-tools:
	@bash tools/build-go-tools.sh

wine-shim: apt-packages
	@bash tools/build-wine-shim.sh

# The project's own dockerd (its data root is in $(BK_CACHE)/docker), for images and kind.
container-engine: apt-packages
	@bash tools/container-engine.sh start

# The images this machine cannot pull (no registry is reachable): the bases images/Containerfile
# builds on, the example backends, and the kind node image. Cached: a warm run builds nothing.
offline-images: container-engine go-tools
	@bash tools/images/offline-bases.sh >/dev/null
	@bash tools/kind/build-node-image.sh >/dev/null

tools: apt-packages python-env go-tools wine-shim container-engine offline-images
	@$(RUN) python -m boundary_devstack versions --bin-dir "$(STACK_BIN)"

## Running ----------------------------------------------------------------------------------
stack: tools
	@$(RUN) python -m boundary_devstack up --bin-dir "$(STACK_BIN)" --env-file "$(STACK_ENV)"

demo: tools
	@$(RUN) python -m boundary_devstack.demo $(if $(DEMO_EXIT),--exit,)

## Checks -----------------------------------------------------------------------------------
# Our own shell scripts, Containerfiles and Go programs (the Go wrapper modules are not ours).
SHELL_SCRIPTS := $(wildcard tools/*.sh tools/*/*.sh) .ci/run tools/kind/iptables-mode \
	tools/kind/containerd-oom-score-adj tools/images/postgres-entrypoint
CONTAINERFILES := images/Containerfile $(wildcard tools/*/*.Containerfile)
GO_PROGRAMS := images/worker-probe images/worker-supervisor tools/kind/kindnetd tools/kind/goconst

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) hadolint $(CONTAINERFILES)
	$(RUN) shellcheck $(SHELL_SCRIPTS)
	@for program in $(GO_PROGRAMS); do \
	  (cd $$program && test -z "$$(gofmt -l .)" && GOTOOLCHAIN=local go vet ./...) || \
	    { echo "lint: $$program is not gofmt-clean or fails go vet"; exit 1; }; \
	done

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

# The install journey in real pods: images, kind, the chart, examples/, sessions, faults. It
# tears down the cluster and the project's dockerd when it ends.
e2e-kind: tools
	@rm -f .stack/e2e-kind-timings.txt
	status=0; $(RUN) pytest -q tests/kind || status=$$?; \
	  bash tools/container-engine.sh stop; exit $$status
	@cat .stack/e2e-kind-timings.txt 2>/dev/null || true

test: tools lint typecheck unit e2e chaos e2e-kind

## Benchmarks -------------------------------------------------------------------------------
.PHONY: bench bench-quick
bench: tools
	$(RUN) python -m bench.run_all

bench-quick: tools
	$(RUN) python -m bench.run_all --quick

## Running pods without a container runtime ---------------------------------------------------
.PHONY: pod-run operator
pod-run:
	@test -n "$(POD)" || { echo "usage: make pod-run POD=<namespace>/<pod>"; exit 2; }
	@$(RUN) python -m boundary_devstack.podrunner "$(POD)" --env-file "$(STACK_ENV)"

operator:
	@set -a; source "$(STACK_ENV)"; set +a; $(RUN) boundary-operator run
