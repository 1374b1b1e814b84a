"""The one way the services connect to Redis."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.core.settings import Settings


def connect(
    settings: Settings,
    *,
    max_connections: int | None = None,
    wait_for_connection: bool = True,
    read_timeout_seconds: float | None = None,
) -> Redis:
    """A pooled client that reconnects by itself: after a Redis restart every pooled
    connection is dead, and without retries each would fail one request before it is
    replaced (a 503 for a healthy Redis).

    With ``wait_for_connection`` a call waits for a free connection when all
    ``max_connections`` are busy (redis-py's default pool fails at once, so a burst of
    requests turned into 503s); without it, an exhausted pool raises MaxConnectionsError.
    ``read_timeout_seconds`` (default ``redis_timeout_seconds``) must outlast any blocking
    read the client makes.
    """
    options = {
        "socket_timeout": read_timeout_seconds or settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 30,
        "max_connections": max_connections or settings.redis_max_connections,
    }
    pool: ConnectionPool
    if wait_for_connection:
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, timeout=settings.redis_timeout_seconds, **options
        )
    else:
        pool = ConnectionPool.from_url(settings.redis_url, **options)
    return Redis.from_pool(pool)
