"""Request duration metrics, as a plain ASGI middleware.

Starlette's ``@app.middleware("http")`` (BaseHTTPMiddleware) runs every request in an extra
task with memory streams and a task group; on the submit path that was a tenth of the API's
CPU (py-spy, ``make bench``). This wrapper only watches the response status go by.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import metrics


class RequestTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            # The route template, not the raw path: one series per endpoint, not per task id.
            route = scope.get("route")
            metrics.HTTP_REQUEST_DURATION.labels(
                scope["method"], getattr(route, "path", "unmatched"), str(status)
            ).observe(time.perf_counter() - started)
