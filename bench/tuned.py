"""What-if launchers: the API and worker with the tuning proposed in docs/performance.md,
applied from outside so the gain can be measured before anyone edits ``services/``.

``python -m bench.tuned api``: the same app as ``python -m services.api`` with
  1. ``get_services`` resolved as an ``async`` dependency: FastAPI runs a plain ``def``
     dependency in the thread pool, one thread hop per request for a dictionary lookup;
  2. the ``@app.middleware("http")`` timing middleware replaced by a pure ASGI one:
     ``BaseHTTPMiddleware`` wraps every request in an extra task, memory streams and a
     task group.
``python -m bench.tuned worker``: the same worker under uvloop (the API already gets it from
uvicorn; faust's default is the stdlib selector loop).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from fastapi import Request

from services.api.deps import Services
from services.core.settings import Settings


async def get_services_async(request: Request) -> Services:
    # Module level: FastAPI resolves the annotations of a dependency by name at import time.
    services: Services = request.app.state.services
    return services


def _fast_app() -> Any:
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from services.api.app import create_app
    from services.api.deps import get_services
    from services.core import metrics
    from services.tasks import catalog

    app = create_app(Settings(), catalog)

    app.dependency_overrides[get_services] = get_services_async

    class Observe:
        """The timing middleware as plain ASGI: no extra task or stream per request."""

        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.inner(scope, receive, sending)
            finally:
                route = scope.get("route")
                metrics.HTTP_REQUEST_DURATION.labels(
                    scope["method"], getattr(route, "path", "unmatched"), str(status)
                ).observe(time.perf_counter() - started)

    kept = [m for m in app.user_middleware if getattr(m, "cls", None) is not BaseHTTPMiddleware]
    app.user_middleware = kept
    app.add_middleware(Observe)
    return app


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which == "api":
        import uvicorn

        from services.core.logs import configure

        settings = Settings()
        configure(level=settings.log_level, json=settings.log_json)
        uvicorn.run(
            _fast_app(),
            host=settings.api_host,
            port=settings.api_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    elif which == "worker":
        import uvloop

        from services.worker.__main__ import main as worker_main

        uvloop.install()
        worker_main()
    else:
        raise SystemExit("usage: python -m bench.tuned api|worker")


if __name__ == "__main__":
    main()
