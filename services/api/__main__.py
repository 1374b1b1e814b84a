"""`python -m services.api`: serve the API with uvicorn on KT_API_HOST:KT_API_PORT."""

import uvicorn

from services.api.app import create_app
from services.core.logs import configure
from services.core.settings import Settings
from services.tasks import catalog


def main() -> None:
    settings = Settings()
    configure(level=settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings, catalog),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=int(settings.worker_shutdown_grace_seconds),
    )


if __name__ == "__main__":
    main()
