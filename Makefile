# The project's interface: developers and CI run the same targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export PYTHONDONTWRITEBYTECODE := 1

UV := $(shell scripts/ensure-uv.sh)
RUN := $(UV) run --frozen
DEVSTACK := $(RUN) python -m devstack

.PHONY: help sync tools up down status demo test check lint fmt typecheck pytest engine preview charts-check keda-scaler keda-check clean loadtest bench bench-scale bench-state bench-down chaos chaos-down

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

test: tools engine check keda-scaler pytest ## lint, type-check and run every test (real Kafka, Redis, Pulumi engine, KEDA scaler)

check: lint typecheck ## static checks only

lint: sync ## ruff lint and format check
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .

fmt: sync ## apply ruff's fixes and formatting
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

typecheck: sync ## mypy --strict on services, devstack, infra and kedacheck
	@$(RUN) mypy

pytest: sync ## the test suite only
	@$(RUN) pytest

engine: sync ## build and cache the real Pulumi CLI, Kubernetes provider and helm (cold ~25 min, then seconds)
	@$(RUN) python -m infra.engine build

# CHARTS=tests/infra/charts (or a mirror folder) takes every Helm chart from there instead of
# the public chart registries.
CHARTS ?=

preview: engine ## mocks + the real engine (preview, render-mode up) for every stack, compared and validated
	@$(RUN) python -m infra.preview --engine $(if $(CHARTS),--local-charts $(CHARTS))

charts-check: engine ## refuse charts whose Helm hooks Chart v4 would drop (CHARTS= as for preview)
	@$(RUN) python -m infra.charts $(if $(CHARTS),--local-charts $(CHARTS))

keda-scaler: sync ## build KEDA's kafka scaler at each stack's chart version (~9 min once, cached in ~/.cache)
	@$(RUN) python -m kedacheck --build-only

STACKS ?=
keda-check: tools ## KEDA's own kafka scaler on each stack's ScaledObject vs the model, on the local Kafka (STACKS=dev)
	@$(RUN) python -m kedacheck $(STACKS)

clean: down ## remove the local stack's data and the build output (keeps the jar cache)
	@rm -rf .devstack/kafka .devstack/redis .devstack/logs .devstack/state.json build

# --- load tests and benchmarks (dev-only dependency groups: loadtest, bench) ---------------
USERS ?= 20
SPAWN_RATE ?= 10
DURATION ?= 30s
SHAPE ?= steady
MAX_FAIL_RATIO ?= 0.01
MAX_P99_MS ?=
BENCH_ARGS ?=
SCALE_ARGS ?=

loadtest: tools ## Locust, headless, on the local stack (started if needed): USERS= DURATION= SHAPE=steady|ramp|spike MAX_FAIL_RATIO= MAX_P99_MS=
	@$(DEVSTACK) up
	@$(RUN) --group loadtest python -m loadtest.run --users $(USERS) --spawn-rate $(SPAWN_RATE) \
		--duration $(DURATION) --shape $(SHAPE) --max-fail-ratio $(MAX_FAIL_RATIO) \
		$(if $(MAX_P99_MS),--max-p99-ms $(MAX_P99_MS))

bench: tools ## kafka-tasks vs FastAPI + Celery + Redis on its own stack; table + plot in build/bench/ (BENCH_ARGS=...)
	@$(RUN) --group bench --group loadtest python -m bench.run $(BENCH_ARGS)

bench-scale: tools ## throughput and lag with 1, 2, 4 workers, rebalance pauses; build/bench/scale.* (SCALE_ARGS=...)
	@$(RUN) --group bench python -m bench.scale $(SCALE_ARGS)

STATE_ARGS ?=
bench-state: tools ## state layer: Redis memory per task (BASELINE=checkout for 'before'), standalone vs 3-master cluster tasks/s; build/bench/state.*
	@$(RUN) --group bench python -m bench.state $(if $(BASELINE),--baseline $(BASELINE)) $(STATE_ARGS)

bench-down: ## stop whatever an interrupted benchmark left in build/bench/.stack
	@$(RUN) python -m devstack --home build/bench/.stack down

# --- fault injection -------------------------------------------------------------------------
SEED ?=
LONGEST ?= 60

chaos: DURATION = 10m
chaos: tools ## seeded faults + a steady workload + a checker on 3 brokers; build/chaos/report.md (SEED= DURATION= LONGEST=)
	@$(RUN) python -m chaos --duration $(DURATION) --longest $(LONGEST) $(if $(SEED),--seed $(SEED))

chaos-down: ## stop whatever an interrupted chaos run left in build/chaos/.stack
	@$(RUN) python -m devstack --home build/chaos/.stack down
