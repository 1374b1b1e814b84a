"""The one way the services connect to Redis (a single server or a cluster), and the one
place Redis errors are classified."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, TypeAlias

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from services.core.errors import BackendUnavailableError, KafkaTasksError, StateStoreError
from services.core.logs import get_logger
from services.core.settings import Settings

log = get_logger(__name__)

RedisClient: TypeAlias = Redis | RedisCluster
"""What ``connect`` returns: the store and the services use either the same way."""

UNAVAILABLE_REPLIES: Final = frozenset(
    {
        "LOADING",  # restarted, still reading its data
        "READONLY",  # a replica, during or after a failover
        "MASTERDOWN",  # a replica that lost its master
        "BUSY",  # a script runs over its time limit
        "OOM",  # over maxmemory: refuses writes
        "MISCONF",  # cannot persist: refuses writes
        "NOREPLICAS",  # min-replicas-to-write not met
        "TRYAGAIN",  # cluster: a multi-key command while its slot moves between nodes
        "CLUSTERDOWN",  # cluster: a slot is not served (a failover under way)
    }
)
"""Error replies that mean "not now" (the command was refused whole and may be sent again
once Redis recovers), as opposed to a bug in the request."""

CLUSTER_RETRIES: Final = 3
"""How often the cluster client sends a command again after a broken connection, a failover
(CLUSTERDOWN) or a slot that is not covered, refreshing its map of the slots in between.
Redirections (MOVED, ASK) and TRYAGAIN it follows on its own, within 16 hops."""


def redis_error(error: RedisError | RedisClusterException | OSError) -> KafkaTasksError:
    """What a Redis error means to the services: unavailable (the worker waits, the API answers
    503) or a bug (raised loud; never silently retried)."""
    if isinstance(error, RedisConnectionError | RedisTimeoutError | OSError):
        return BackendUnavailableError("redis", str(error) or type(error).__name__)
    if isinstance(error, SlotNotCoveredError):  # a slot without a node, mid-failover
        return BackendUnavailableError("redis", str(error))
    if isinstance(error, ClusterError) and not isinstance(error, ResponseError):
        # "TTL exhausted": redirected or told TRYAGAIN for 16 hops (a slot being moved).
        return BackendUnavailableError("redis", f"cluster: {error}")
    if isinstance(error, ResponseError):
        # redis-py keeps a known reply's code aside and strips it from the message.
        code = getattr(error, "status_code", None) or str(error).split(" ", 1)[0]
        if code in UNAVAILABLE_REPLIES:
            return BackendUnavailableError("redis", f"{code} {error}")
    return StateStoreError(f"{type(error).__name__}: {error}")


def connect(
    settings: Settings,
    *,
    max_connections: int | None = None,
    wait_for_connection: bool = True,
    read_timeout_seconds: float | None = None,
) -> RedisClient:
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

    With ``redis_cluster`` the client is redis-py's cluster client, started from the
    ``redis_url`` node: it learns the slot map, sends each command to the node that owns its
    slot and follows MOVED and ASK itself; ``max_connections`` then holds per node.
    """
    limit = max_connections or settings.redis_max_connections
    options: dict[str, Any] = {
        "socket_timeout": read_timeout_seconds or settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "health_check_interval": 30,
        "max_connections": limit,
        # redis-py 8 takes "auto" maintenance notifications (a Redis Enterprise feature) as on,
        # and then hands out pooled connections without checking that Redis has not closed
        # them: a write after a Redis restart was sent on a dead connection, and whether it
        # ran could not be known. Off, the pool reconnects first.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    if settings.redis_cluster:
        # Its nodes' connections never retry by themselves; the cluster client does, after
        # refreshing the slot map (a failover or a resharding may have moved the slot).
        options["retry"] = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=CLUSTER_RETRIES)
        return ServiceRedisCluster.from_url(
            settings.redis_url, wait_for_connection=wait_for_connection, **options
        )
    options["retry"] = Retry(
        ExponentialBackoff(cap=0.5, base=0.05),
        retries=3,
        supported_errors=(RedisConnectionError,),
    )
    pool: ConnectionPool
    if wait_for_connection:
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, timeout=settings.redis_timeout_seconds, **options
        )
    else:
        pool = ConnectionPool.from_url(settings.redis_url, **options)
    return Redis.from_pool(pool)


class ServiceRedisCluster(RedisCluster):
    """redis-py's cluster client with two changes the services rely on.

    - With ``wait_for_connection`` a call waits for a connection instead of failing with
      MaxConnectionsError when ``max_connections`` are busy (as ``BlockingConnectionPool``
      does for a single server): at most ``max_connections`` calls run at once, each holding
      at most one connection per node, so no node's pool runs dry.
    - When redis-py refreshes its slot map in the middle of a command (after MOVED, or
      CLUSTERDOWN during a failover) it calls ``aclose()``, which tore down every connection,
      those other commands were using included: they failed with RuntimeError or
      AttributeError (a write to a closed transport) instead of a connection error, and a
      worker took that for a failure of the task. Here that refresh marks the connections
      for a reconnect before their next use, as redis-py's own topology refresh does;
      ``aclose()`` outside a command still closes everything.
    - redis-py 8.1 still disconnects idle connections after a connection error while
      another command may be picking one of them up (redis-py #4287, fixed after 8.1.0):
      such a write to a closed transport is turned into the ConnectionError it is, and the
      command is sent again on a fresh connection (every state write is safe to repeat).
    """

    def __init__(self, *args: Any, wait_for_connection: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = int(kwargs.get("max_connections", 100))
        self._calls = asyncio.Semaphore(limit) if wait_for_connection else None

    async def in_command(self, call: Callable[[], Awaitable[Any]]) -> Any:
        # A pipeline re-sends redirected commands through execute_command: a call that holds
        # its turn already does not queue again (it would wait for itself).
        if _IN_COMMAND.get():
            return await call()
        token = _IN_COMMAND.set(True)
        try:
            if self._calls is None:
                return await past_closed_transports(call)
            async with self._calls:
                return await past_closed_transports(call)
        finally:
            _IN_COMMAND.reset(token)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await self.in_command(lambda: RedisCluster.execute_command(self, *args, **kwargs))

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        # mypy sees ClusterPipeline as abstract (an attribute its mixins declare); redis-py
        # instantiates it the same way in RedisCluster.pipeline.
        return _ServicePipeline(self, transaction)  # type: ignore[abstract]

    async def aclose(self) -> None:
        if not _IN_COMMAND.get():
            await super().aclose()
            return
        self._initialize = True  # the next attempt reads the slot map again
        for node in list(self.nodes_manager.nodes_cache.values()):
            node.update_active_connections_for_reconnect()
            for connection in list(node._free):
                connection.mark_for_reconnect()  # type: ignore[no-untyped-call]  # redis-py's


CLOSED_TRANSPORT_RETRIES: Final = 2


async def past_closed_transports(call: Callable[[], Awaitable[Any]]) -> Any:
    """``call()``, sent again (at most ``CLOSED_TRANSPORT_RETRIES`` times) when it met a
    connection closed under it; raised as a ConnectionError when that keeps happening."""
    for attempt in range(CLOSED_TRANSPORT_RETRIES + 1):
        try:
            return await call()
        except (RuntimeError, AttributeError, TypeError) as error:
            if not closed_under_the_command(error):
                raise
            log.info("redis connection closed under a command", error=str(error), try_=attempt)
            if attempt == CLOSED_TRANSPORT_RETRIES:
                raise RedisConnectionError(
                    f"connection closed under the command: {error}"
                ) from error
    raise AssertionError("unreachable")


def closed_under_the_command(error: BaseException) -> bool:
    """Whether ``error`` came out of redis-py's connection I/O (a transport another task
    closed), not out of our code or a command's arguments."""
    frames = traceback.extract_tb(error.__traceback__)
    return any(
        frame.filename.endswith(("redis/asyncio/connection.py", "asyncio/streams.py"))
        and frame.name in _CONNECTION_IO
        for frame in frames
    )


_CONNECTION_IO: Final = frozenset(
    {"_send_packed_command", "send_packed_command", "writelines", "write", "drain"}
)


_IN_COMMAND: ContextVar[bool] = ContextVar("in_a_redis_cluster_command", default=False)


class _ServicePipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, ServiceRedisCluster)
        return await client.in_command(
            lambda: ClusterPipeline.execute(self, raise_on_error, allow_redirections)
        )


async def ping(client: RedisClient) -> bool:
    """Redis answers: the server, or every master of a cluster (a replica that is down
    leaves every slot served)."""
    if isinstance(client, RedisCluster):
        return bool(await client.ping(target_nodes=RedisCluster.PRIMARIES))
    return bool(await client.ping())
