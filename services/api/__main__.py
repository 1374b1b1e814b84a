"""`python -m services.api`: serve the API with uvicorn on KT_API_HOST:KT_API_PORT."""

import sys

import uvicorn

from services.api.app import create_app
from services.core.errors import ConfigurationError
from services.core.logs import configure
from services.core.settings import Settings
from services.tasks import catalog


def main() -> None:
    settings = Settings()
    configure(level=settings.log_level, json=settings.log_json)
    try:
        app = create_app(settings, catalog)
    except ConfigurationError as refused:
        print(f"kafka-tasks API refuses to start: {refused}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        # X-Forwarded-Proto/-For are believed from these peers only (the ingress proxy).
        proxy_headers=True,
        forwarded_allow_ips=settings.api_forwarded_allow_ips,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=int(settings.worker_shutdown_grace_seconds),
    )


if __name__ == "__main__":
    main()
