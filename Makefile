# The project's interface: developers and CI run the same targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export PYTHONDONTWRITEBYTECODE := 1

UV := $(shell scripts/ensure-uv.sh)
RUN := $(UV) run --frozen
DEVSTACK := $(RUN) python -m devstack

.PHONY: help sync tools up down status demo test check lint fmt typecheck pytest preview clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

sync: ## install the locked Python dependencies into .venv
	@$(UV) sync --frozen

tools: sync ## install java / maven / redis-server if missing (root) and fetch Kafka's jars
	@$(DEVSTACK) tools

demo: tools ## start the stack if needed and watch demo tasks run
	@$(DEVSTACK) up
	@$(RUN) python -m devstack.demo

up: tools ## start Kafka, Redis, the API (127.0.0.1:8000) and a worker; returns when ready
	@$(DEVSTACK) up

down: ## stop everything the local stack started
	@$(DEVSTACK) down

status: ## what runs where, and where its logs are
	@$(DEVSTACK) status

test: tools check pytest ## lint, type-check and run every test against a real Kafka and Redis

check: lint typecheck ## static checks only

lint: sync ## ruff lint and format check
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .

fmt: sync ## apply ruff's fixes and formatting
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

typecheck: sync ## mypy --strict on services, devstack and infra
	@$(RUN) mypy

pytest: sync ## the test suite only
	@$(RUN) pytest

preview: sync ## render every stack's Kubernetes objects offline and validate them (build/manifests/)
	@$(RUN) python -m infra.preview

clean: down ## remove the local stack's data and the build output (keeps the jar cache)
	@rm -rf .devstack/kafka .devstack/redis .devstack/logs .devstack/state.json build
