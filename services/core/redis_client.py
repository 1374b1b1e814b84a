"""The one way the services connect to Redis, and the one place Redis errors are classified."""

from __future__ import annotations

from typing import Final

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from services.core.errors import (
    AccessDeniedError,
    BackendUnavailableError,
    ConfigurationError,
    KafkaTasksError,
    StateStoreError,
)
from services.core.settings import Settings

UNAVAILABLE_REPLIES: Final = frozenset(
    {
        "LOADING",  # restarted, still reading its data
        "READONLY",  # a replica, during or after a failover
        "MASTERDOWN",  # a replica that lost its master
        "BUSY",  # a script runs over its time limit
        "OOM",  # over maxmemory: refuses writes
        "MISCONF",  # cannot persist: refuses writes
        "NOREPLICAS",  # min-replicas-to-write not met
        "TRYAGAIN",  # cluster: keys being moved
        "CLUSTERDOWN",  # cluster: a slot is not served
    }
)
"""Error replies that mean "not now" (the command was refused whole and may be sent again
once Redis recovers), as opposed to a bug in the request."""


def redis_error(error: RedisError | OSError) -> KafkaTasksError:
    """What a Redis error means to the services: unavailable (the worker waits, the API answers
    503) or a bug (raised loud; never silently retried). Refused credentials (WRONGPASS,
    NOAUTH) and refused commands or keys (NOPERM) are AccessDeniedError: unavailable too, but
    with a message that says what to fix."""
    if isinstance(error, AuthenticationError | AuthenticationWrongNumberOfArgsError):
        return AccessDeniedError(
            "redis",
            user=None,
            operation="log in",
            reason=f"{error}; check the user and password in KT_REDIS_URL",
        )
    if isinstance(error, NoPermissionError):
        return AccessDeniedError(
            "redis", user=None, operation="run this command", reason=f"{error} (its ACL user)"
        )
    if isinstance(error, RedisConnectionError | RedisTimeoutError | OSError):
        return BackendUnavailableError("redis", str(error) or type(error).__name__)
    if isinstance(error, ResponseError):
        code = str(error).split(" ", 1)[0]
        if code in UNAVAILABLE_REPLIES:
            return BackendUnavailableError("redis", str(error))
    return StateStoreError(f"{type(error).__name__}: {error}")


def connect(
    settings: Settings,
    *,
    max_connections: int | None = None,
    wait_for_connection: bool = True,
    read_timeout_seconds: float | None = None,
) -> Redis:
    """A pooled client that reconnects by itself: after a Redis restart every pooled
    connection is dead, and without retries each would fail one request before it is
    replaced (a 503 for a healthy Redis). Only a connection that broke is retried, never a
    timeout: a paused Redis must turn into a prompt error, and every state write is safe to
    send twice (it carries a write id the script recognises).

    With ``wait_for_connection`` a call waits for a free connection when all
    ``max_connections`` are busy (redis-py's default pool fails at once, so a burst of
    requests turned into 503s); without it, an exhausted pool raises MaxConnectionsError.
    ``read_timeout_seconds`` (default ``redis_timeout_seconds``) must outlast any blocking
    read the client makes.
    """
    options = {
        "socket_timeout": read_timeout_seconds or settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "retry": Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=3,
            supported_errors=(RedisConnectionError,),
        ),
        "health_check_interval": 30,
        "max_connections": max_connections or settings.redis_max_connections,
        # redis-py 8 takes "auto" maintenance notifications (a Redis Enterprise feature) as on,
        # and then hands out pooled connections without checking that Redis has not closed
        # them: a write after a Redis restart was sent on a dead connection, and whether it
        # ran could not be known. Off, the pool reconnects first.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    if settings.redis_ca_file is not None:  # the settings allow it with rediss:// only
        options["ssl_ca_certs"] = str(settings.redis_ca_file)
    pool: ConnectionPool
    if wait_for_connection:
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, timeout=settings.redis_timeout_seconds, **options
        )
    else:
        pool = ConnectionPool.from_url(settings.redis_url, **options)
    return Redis.from_pool(pool)


async def verify_credentials(client: Redis) -> None:
    """Refuse to start with credentials Redis rejects: a wrong password is a clear error at
    start, not a service that waits for a Redis that will never let it in. A Redis that does
    not answer is no reason to refuse (the services wait for it, and say so when probed)."""
    try:
        await client.ping()
    except (AuthenticationError, AuthenticationWrongNumberOfArgsError, NoPermissionError) as error:
        raise ConfigurationError(
            f"Redis refused the credentials in KT_REDIS_URL ({error}): set the user and "
            "password of this component's Redis user (redis://<user>:<password>@host:port/0)"
        ) from error
    except (RedisError, OSError):
        return
