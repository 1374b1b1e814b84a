"""All configuration, in one typed place, read from ``KT_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core import contract, topics

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default ``message.max.bytes``; a payload must fit under it with room for the envelope."""

Namespace = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=contract.ENV_PREFIX, frozen=True)

    namespace: Namespace = "kt"
    """Scopes topics, the consumer group and Redis keys (see topics.py)."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_request_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    """How long the API waits for the broker's acknowledgement before answering 503."""

    declare_topics: bool = True
    """Create missing topics at startup. Off in Kubernetes, where Strimzi KafkaTopics own them."""
    topic_partitions: Annotated[int, Field(ge=1, le=1000)] = 4
    topic_replication_factor: Annotated[int, Field(ge=1, le=7)] = 1

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0

    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = contract.API_PORT

    worker_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    """How many tasks one worker process runs at once."""
    worker_threads: Annotated[int, Field(ge=1, le=1_000)] = 16
    """Thread pool size for synchronous task functions."""
    worker_web_bind: str = "127.0.0.1"
    """Address of the worker's health and metrics server (0.0.0.0 in a container)."""
    worker_web_port: Annotated[int, Field(ge=1, le=65535)] = contract.WORKER_HEALTH_PORT
    worker_shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 30.0

    result_ttl_seconds: Annotated[int, Field(ge=1)] = 86_400
    """How long a record lives after reaching a terminal state (Celery's result_expires)."""
    max_payload_bytes: Annotated[int, Field(ge=1, le=KAFKA_DEFAULT_MAX_MESSAGE_BYTES // 2)] = (
        256 * 1024
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @cached_property
    def consumer_group(self) -> str:
        return topics.consumer_group(self.namespace)

    @cached_property
    def key_prefix(self) -> str:
        return topics.redis_key_prefix(self.namespace)

    def task_topic(self, task_name: str) -> str:
        return topics.task_topic(self.namespace, task_name)
