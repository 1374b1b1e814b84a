"""All configuration, in one typed place, read from ``KT_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core import contract, topics
from services.core.priorities import DEFAULT_WEIGHTS, Priority
from services.core.schedules import Schedule

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default ``message.max.bytes``; a payload must fit under it with room for the envelope."""

Namespace = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=contract.ENV_PREFIX, frozen=True)

    namespace: Namespace = "kt"
    """Scopes topics, the consumer group and Redis keys (see topics.py)."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    """How every Kafka client of the services connects (kafka_security.py builds them all):
    PLAINTEXT (the local stack), SSL (TLS; with a client certificate: mTLS), or SASL_SSL (TLS
    plus a SCRAM user, what infra deploys: Strimzi's SCRAM-SHA-512 listener)."""
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    """The SCRAM user (SASL_SSL): one per component, each with only the ACLs it needs."""
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: Path | None = None
    """PEM file of the CA(s) the brokers' certificates are checked against (Strimzi's cluster
    CA); unset: the system's trust store. Every certificate in the file is trusted, so a
    renewed CA and the one it replaces can be trusted together."""
    kafka_ssl_cert_file: Path | None = None
    """PEM client certificate for mTLS (SSL); with ``kafka_ssl_key_file``."""
    kafka_ssl_key_file: Path | None = None
    kafka_request_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    """How long the API waits for the broker's acknowledgement before answering 503."""

    declare_topics: bool = True
    """Create missing topics at startup. Off in Kubernetes, where Strimzi KafkaTopics own them."""
    topic_partitions: Annotated[int, Field(ge=1, le=1000)] = 4
    topic_replication_factor: Annotated[int, Field(ge=1, le=7)] = 1

    redis_url: str = "redis://127.0.0.1:6379/0"
    """A single Redis, or (with ``redis_cluster``) any node of a cluster: ``rediss://`` for
    TLS, ``redis://:<password>@host`` or ``redis://<user>:<password>@host`` for auth."""
    redis_cluster: bool = False
    """Talk to a Redis Cluster (or Valkey / ElastiCache / Memorystore / Azure cluster mode)
    with the cluster client. The keys and scripts are the same in both modes (keys.py)."""
    redis_ca_file: Path | None = None
    """PEM file of the CA a ``rediss://`` server's certificate is checked against; unset: the
    system's trust store."""
    redis_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    redis_max_connections: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Redis connections per process for requests and task writes. When all are busy a call
    waits for one (up to ``redis_timeout_seconds``) instead of failing."""

    api_keys: list[SecretStr] = []
    """Accepted API keys (a JSON list); several at once so keys can be rotated. Empty: the API
    is open (fine on 127.0.0.1, never in a cluster: infra always sets keys)."""
    api_keys_file: Path | None = None
    """A file with one API key per line (a mounted Secret), added to ``api_keys``."""
    publish_deadline_seconds: Annotated[float, Field(gt=0)] = 30.0
    """A PENDING task whose publication the API never confirmed (it died, or lost Redis after
    Kafka's acknowledgement) is published again by the reaper after this long. Longer than an
    API takes to publish or withdraw a submission (see the validator below)."""

    api_max_event_streams: Annotated[int, Field(ge=1, le=10_000)] = 1000
    """Event streams (``GET /tasks/<id>/events``) one API process serves at once; each waits
    on a Redis connection of its own, apart from ``redis_max_connections``. One more is
    answered 503 with Retry-After (the client SDK polls meanwhile)."""

    api_max_batch_tasks: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """Tasks one ``POST /tasks/batch`` may carry."""
    api_max_batch_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    """The largest body ``POST /tasks/batch`` reads (every payload still obeys
    ``max_payload_bytes``)."""

    api_host: str = "127.0.0.1"
    """The API's listening address. Anything but a loopback address needs API keys: the API
    refuses to start open where others can reach it."""
    api_port: Annotated[int, Field(ge=1, le=65535)] = contract.API_PORT
    api_https_only: bool = False
    """Refuse every request that carries an API key over plain HTTP (the key has crossed the
    network in clear text: the answer says to rotate it). Behind a TLS-terminating proxy the
    scheme is the proxy's ``X-Forwarded-Proto``, trusted from ``api_forwarded_allow_ips``."""
    api_forwarded_allow_ips: str = "127.0.0.1"
    """Peers whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` uvicorn believes (comma
    separated, or ``*``). In Kubernetes only the ingress namespace reaches the API (its
    NetworkPolicy), so infra sets ``*``."""

    worker_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 500
    """How many tasks one worker process runs at once. Async task functions mostly wait on
    I/O, so hundreds fit in one process (64 capped the seed load test, issue 12); synchronous
    ones are further held to ``worker_threads``."""
    worker_threads: Annotated[int, Field(ge=1, le=1_000)] = 16
    """Thread pool size for synchronous task functions."""
    worker_web_bind: str = "127.0.0.1"
    """Address of the worker's health and metrics server (0.0.0.0 in a container)."""
    worker_web_port: Annotated[int, Field(ge=1, le=65535)] = contract.WORKER_HEALTH_PORT
    worker_shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 30.0
    """On SIGTERM, how long running tasks may take to finish before the worker exits."""
    worker_session_timeout_seconds: Annotated[float, Field(ge=3, le=300)] = 10.0
    """How soon Kafka gives a dead worker's partitions to the others."""
    worker_sweep_interval_seconds: Annotated[float, Field(gt=0)] = 10.0
    """How often a worker's reaper looks for abandoned tasks (see ``worker_lease_seconds``)."""
    worker_lease_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    """A running attempt's lease, renewed every third of it by its worker. Once it lapses (the
    worker is gone, paused, or its writes were lost) the reaper puts the task back on its
    topic: an abandoned task runs again within this plus ``worker_sweep_interval_seconds``."""

    result_ttl_seconds: Annotated[int, Field(ge=1)] = 86_400
    """How long a record lives after reaching a terminal state (Celery's result_expires)."""
    max_payload_bytes: Annotated[int, Field(ge=1, le=KAFKA_DEFAULT_MAX_MESSAGE_BYTES // 2)] = (
        256 * 1024
    )

    # The worker ScaledObject's thresholds, so that the dashboard and `kafka-tasks lag` show
    # the replicas KEDA would ask for. Infra sets them from the same stack config it gives KEDA.
    autoscale_lag_threshold: Annotated[int, Field(ge=1)] = 50
    autoscale_retry_lag_threshold: Annotated[int, Field(ge=1)] = 30
    autoscale_activation_lag_threshold: Annotated[int, Field(ge=0)] = 0
    autoscale_min_replicas: Annotated[int, Field(ge=0)] = 1
    autoscale_max_replicas: Annotated[int, Field(ge=1)] = 12
    autoscale_allow_idle_consumers: bool = False
    autoscale_limit_to_partitions_with_lag: bool = False

    rate_limits: dict[str, str] = {}
    """Per task name, a rate limit that replaces the catalog's ('10/s', '100/m'; '' for none),
    like Celery's task annotations: a JSON object."""
    schedules: list[Schedule] = []
    """Periodic schedules besides those declared in the catalog: a JSON list of objects with
    name, task, cron or every_seconds, timezone, payload, priority, expires_seconds."""
    priority_weights: dict[Priority, Annotated[int, Field(ge=1, le=1000)]] = dict(DEFAULT_WEIGHTS)
    """How freed worker slots are shared between priorities when all have tasks waiting."""
    timer_interval_seconds: Annotated[float, Field(gt=0, le=10)] = 0.1
    """How often each worker looks for held-back tasks that are due (delays, rate and
    concurrency limits): a delayed task is queued within this of its due time."""
    scheduler_lease_seconds: Annotated[float, Field(ge=1, le=300)] = 10.0
    """The periodic scheduler's leader lease: another worker takes over within this after the
    leader died."""
    scheduler_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    """How often the scheduler looks for due ticks (and a non-leader for a free lease)."""
    schedule_misfire_grace_seconds: Annotated[float, Field(ge=1)] = 300.0
    """A tick missed (no worker ran, or the leader changed) is still fired within this much of
    its time; older ones are skipped and counted (APScheduler's misfire_grace_time)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _publication_outlasts_a_submission(self) -> Settings:
        longest = 2 * self.redis_timeout_seconds + self.kafka_request_timeout_ms / 1000
        if self.publish_deadline_seconds <= longest:
            raise ValueError(
                f"publish_deadline_seconds ({self.publish_deadline_seconds:g}) must be longer "
                f"than a submission can take ({longest:g} s: twice redis_timeout_seconds plus "
                "kafka_request_timeout_ms), or the reaper would publish tasks the API is still "
                "publishing or taking back"
            )
        return self

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        protocol = self.kafka_security_protocol
        sasl = self.kafka_sasl_username is not None or self.kafka_sasl_password is not None
        tls = any(
            path is not None
            for path in (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        )
        if protocol == "SASL_SSL" and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                "kafka_security_protocol SASL_SSL needs kafka_sasl_username and "
                "kafka_sasl_password (KT_KAFKA_SASL_USERNAME, KT_KAFKA_SASL_PASSWORD)"
            )
        if protocol != "SASL_SSL" and sasl:
            raise ValueError(
                f"kafka_sasl_username/password are set but kafka_security_protocol is {protocol}:"
                " they would never be sent; set KT_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
            )
        if protocol == "PLAINTEXT" and tls:
            raise ValueError(
                "kafka_ssl_* files are set but kafka_security_protocol is PLAINTEXT: set "
                "KT_KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("kafka_ssl_cert_file and kafka_ssl_key_file go together (mTLS)")
        return self

    @model_validator(mode="after")
    def _redis_ca_needs_tls(self) -> Settings:
        if self.redis_ca_file is not None and not self.redis_url.startswith("rediss://"):
            raise ValueError(
                "redis_ca_file is set but redis_url is not rediss://: the CA would never be "
                "used; use a rediss:// URL for TLS"
            )
        return self

    @cached_property
    def consumer_group(self) -> str:
        return topics.consumer_group(self.namespace)

    @cached_property
    def key_prefix(self) -> str:
        return topics.redis_key_prefix(self.namespace)

    def all_api_keys(self) -> list[str]:
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            keys += [line.strip() for line in lines if line.strip()]
        return keys

    def task_topic(self, task_name: str, priority: str = Priority.DEFAULT) -> str:
        return topics.task_topic(self.namespace, task_name, priority)
