# voip.sip_edge: the one entry point for developers and CI.
# Every target does its own set-up, idempotently (see scripts/setup.sh).
# Build artefacts live in .cache/ and the controller toolchain in .venv/ (ansible-core
# 2.19 on Python 3.11) and .venv-2.20/ (ansible-core 2.20 on Python 3.12, the *-2.20 targets).
# SIPEDGE_MOLECULE_IMAGE and SIPEDGE_MOLECULE_IMAGE_TRIXIE override the Debian 12 and 13
# systemd images for Molecule.

SHELL := /bin/bash
SETUP := scripts/setup.sh
STAGE := scripts/stage.sh
LEG_2_20 := env SIPEDGE_CORE=2.20

.DEFAULT_GOAL := help
.PHONY: help venv venv-2.20 packages collections docker image lint sanity units integration router-test \
	conformance molecule sanity-2.20 units-2.20 integration-2.20 molecule-2.20 test demo bench bench-provision fuzz \
	clean docker-stop lock

help: ## list the targets
	@grep -E '^[a-z0-9.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

venv: ## .venv with the pinned controller toolchain (+ the router, editable)
	@bash $(SETUP) venv

venv-2.20: ## .venv-2.20: ansible-core 2.20 on Python 3.12 (requirements/controller-2.20.txt)
	@$(LEG_2_20) bash $(SETUP) venv

packages: ## Debian packages the tests need (installed only when missing)
	@bash $(SETUP) packages

collections: ## needed collections + this one placed under .cache/collections
	@bash $(SETUP) collections

docker: ## a running Docker engine (starts dockerd when 'docker info' fails)
	@bash $(SETUP) docker

image: ## the Debian 12 and 13 systemd base images for Molecule (SIPEDGE_MOLECULE_IMAGE[_TRIXIE])
	@bash $(SETUP) image:all

lint: ## ansible-lint (production profile) and antsibull-changelog lint
	@bash $(STAGE) lint

sanity: ## ansible-test sanity (no ignore files)
	@bash $(STAGE) sanity

units: ## ansible-test units
	@bash $(STAGE) units

integration: ## ansible-test integration (the modules' targets, on temporary DBs)
	@bash $(STAGE) integration

router-test: ## the router's own pytest suite (files/sipedge/tests)
	@bash $(STAGE) router-test

conformance: ## pytest tests/conformance
	@bash $(STAGE) conformance

molecule: ## molecule test for every scenario under molecule/
	@bash $(STAGE) molecule

sanity-2.20: ## ansible-test sanity with ansible-core 2.20 on Python 3.12
	@$(LEG_2_20) bash $(STAGE) sanity

units-2.20: ## ansible-test units with ansible-core 2.20 on Python 3.12
	@$(LEG_2_20) bash $(STAGE) units

integration-2.20: ## ansible-test integration with ansible-core 2.20 on Python 3.12
	@$(LEG_2_20) bash $(STAGE) integration

molecule-2.20: ## molecule test -s default with ansible-core 2.20 on Python 3.12
	@$(LEG_2_20) bash $(STAGE) molecule

test: ## everything above, timed, ending with "N passed, N failed"
	@bash scripts/test.sh

demo: ## set up and run the demo (scripts/demo.sh)
	@bash $(SETUP) venv packages docker image collections
	@test -f scripts/demo.sh || { echo "sipedge: missing: scripts/demo.sh (the demo is not written yet)" >&2; exit 1; }
	@bash scripts/demo.sh

bench: ## run the benchmarks (scripts/bench.sh)
	@bash $(SETUP) venv
	@test -f scripts/bench.sh || { echo "sipedge: missing: scripts/bench.sh (the benchmark is not written yet)" >&2; exit 1; }
	@bash scripts/bench.sh

bench-provision: ## 10,000 tenants through the tenants role into a running router (scripts/bench_provision.py)
	@bash $(SETUP) venv collections
	@bash -c '. scripts/lib.sh && python scripts/bench_provision.py --workdir "$$RESULTS/bench-provision" $(ARGS)'

fuzz: ## long fuzz run of the router (files/sipedge/tests/fuzz_run.py; FUZZ_ARGS=... adds options)
	@bash $(SETUP) venv
	@.venv/bin/python files/sipedge/tests/fuzz_run.py --out .cache/results/fuzz $(FUZZ_ARGS)

lock: ## regenerate requirements/controller*.txt from requirements/controller*.in
	@bash scripts/lock-requirements.sh
	@$(LEG_2_20) bash scripts/lock-requirements.sh

docker-stop: ## stop the dockerd that 'make docker' started (by its PID), if any
	@bash scripts/docker-stop.sh

clean: ## remove build artefacts (.cache but the dockerd PID, tests/output); keeps the venvs and images
	@if [ -d .cache ]; then find .cache -mindepth 1 -maxdepth 1 ! -name 'dockerd.*' -exec rm -rf {} +; fi
	rm -rf tests/output .ansible
	find . \( -path ./.venv -o -path ./.venv-2.20 \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
