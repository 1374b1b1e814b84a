"""The deployment contract: what the infra program needs to know about the services.

Service names, ports, health paths and environment variable names live here, and both the
services and ``infra/`` import them, so a renamed port or path cannot drift between the code
and its Kubernetes manifests. Keep this module free of heavy imports (no FastAPI, no faust).
"""

from __future__ import annotations

from typing import Final

ENV_PREFIX: Final = "KT_"
"""Every setting is read from an environment variable with this prefix (see settings.py)."""

API_SERVICE_NAME: Final = "kafka-tasks-api"
WORKER_SERVICE_NAME: Final = "kafka-tasks-worker"

API_PORT: Final = 8000
WORKER_HEALTH_PORT: Final = 6066
"""The worker's faust web server: liveness, readiness and Prometheus metrics."""

WORKER_AUTO_OFFSET_RESET: Final = "earliest"
"""Where a new consumer group starts reading; KEDA's offsetResetPolicy must say the same, or
it counts a never-committed partition's whole backlog as no lag at all."""

API_LIVENESS_PATH: Final = "/healthz"
API_READINESS_PATH: Final = "/readyz"
API_METRICS_PATH: Final = "/metrics"
WORKER_LIVENESS_PATH: Final = "/healthz"
WORKER_READINESS_PATH: Final = "/readyz"
WORKER_METRICS_PATH: Final = "/metrics"


def env_var(setting: str) -> str:
    """The environment variable that sets ``setting`` (a field name of ``Settings``)."""
    return f"{ENV_PREFIX}{setting.upper()}"
