# SPDX-License-Identifier: Apache-2.0
# bmops — every entry point a newcomer needs. `make demo` and `make test` are
# the two that matter; the rest are the steps they are made of.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV     ?= .venv
BIN      := $(CURDIR)/$(VENV)/bin
PY       := $(BIN)/python
# Where base root filesystems and image archives are cached between runs
# (outside the clone, so a fresh clone on the same machine stays warm).
export BMOPS_CACHE   ?= /var/cache/bmops
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH          := $(BIN):$(PATH)
export PY_COLORS      := 0
export ANSIBLE_FORCE_COLOR := 0

PLAYBOOKS := $(sort $(wildcard playbooks/*.yml))
MODULES   := $(sort $(basename $(notdir $(wildcard plugins/modules/*.py))))
# Molecule scenarios in the order they run: the harness smoke test first.
SCENARIOS ?= $(strip $(filter smoke,$(notdir $(wildcard molecule/*))) \
             $(filter-out smoke,$(notdir $(wildcard molecule/*))))

.PHONY: help setup os-deps engine images ee i18n lint unit integration molecule test demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

os-deps:  ## install the Debian packages the harness needs (root; no-op when present)
	bash tests/harness/os_deps.sh

setup: os-deps $(VENV)/.stamp  ## create the virtualenv with runtime and test dependencies

$(VENV)/.stamp: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

engine: os-deps  ## make sure a Docker engine answers (installs and starts dockerd if needed)
	bash tests/harness/engine.sh

images: setup engine  ## build the local images (cached by input hash) and their archives
	$(PY) tests/harness/images.py build

ee: setup engine  ## build the AWX execution environment bmops/ee (ee/prepare.py, then ansible-builder build)
	$(PY) tests/harness/images.py build ee

i18n: setup  ## compile the message catalogues i18n/*/LC_MESSAGES/bmops.po into .mo (Babel)
	$(BIN)/pybabel compile -d i18n -D bmops --statistics

lint: setup  ## yamllint, ruff, ansible-lint (production), syntax-check, ansible-doc
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ansible-lint
	@for pb in $(PLAYBOOKS); do \
	  echo "syntax-check $$pb"; \
	  $(BIN)/ansible-playbook --syntax-check -i inventory/demo $$pb >/dev/null; \
	done
	@for m in $(MODULES); do \
	  echo "ansible-doc $$m"; \
	  $(BIN)/ansible-doc -t module $$m | grep -q "RETURN VALUES"; \
	done

unit: setup  ## pytest unit tests (pure logic, no servers)
	$(BIN)/pytest tests/unit

# What `make integration` runs (tests/harness/live.sh splits it in two lanes).
IT ?= tests/integration

integration: images  ## pytest integration tests against real servers in Docker
	$(BIN)/pytest $(IT) --durations=30

molecule: images  ## Molecule scenarios on the systemd host: converge, idempotence, verify
	@for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s"; \
	  $(BIN)/molecule test -s $$s || exit 1; \
	done

test:  ## everything CI runs: lint, unit, then integration beside Molecule (tests/harness/live.sh)
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) images
	bash tests/harness/live.sh

demo: images  ## deploy the stack on a local demo host, run the daily check, show the report
	bash tests/harness/demo.sh

bench: images  ## run the benchmarks in bench/ and rewrite BENCHMARKS.md
	bash bench/run.sh

clean:  ## remove the virtualenv and local caches (not the image cache)
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
