"""The platform on Kafka and Redis secured as infra deploys them (``devstack up --secure``):
SASL_SSL with SCRAM-SHA-512 and ACLs on Kafka, TLS and one ACL user per service on Redis,
each component logging in as itself with exactly the rights ``services.core.access`` lists.

The flows run end to end over it, and every component is refused what its ACLs leave out:
clearly (AccessDeniedError names the user and what it tried), and losing nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable
from pathlib import Path

import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed
from aiokafka.protocol.metadata import MetadataRequest
from redis.exceptions import NoPermissionError

from devstack import processes, secure, stack
from services.core import topics
from services.core.access import Component
from services.core.errors import AccessDeniedError
from services.core.kafka_security import client_options
from services.core.lag import OffsetReader
from services.core.models import TaskMessage
from services.core.publisher import TaskPublisher
from services.core.redis_client import connect
from services.core.settings import Settings
from services.tasks import catalog
from services.worker.redrive import redrive
from tests.conftest import StartApps
from tests.helpers import submit, wait_status

API_KEY = "a-key-for-the-secure-stack"


def settings_of(state: stack.StackState, namespace: str, component: Component) -> Settings:
    return stack.component_settings(state, namespace, component)


async def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """The log end offsets of ``topic``, read as the stack's admin would (every partition)."""
    async with OffsetReader(
        settings.kafka_bootstrap_servers, security=client_options(settings)
    ) as reader:
        partitions = await reader.partitions([topic])
        offsets = await reader.read(settings.consumer_group, partitions)
    return {tp: read.end for tp, read in offsets.items()}


async def test_the_api_a_worker_and_redrive_run_every_flow_each_as_its_own_user(
    start_secure_apps: StartApps, secure_backends: stack.StackState, secure_namespace: str
) -> None:
    apps = start_secure_apps(secure_namespace, env={"KT_API_KEYS": json.dumps([API_KEY])})
    apps.headers = {"X-API-Key": API_KEY}
    async with apps.client() as client:
        done = await submit(client, "noop", {"echo": "over TLS"})
        failed = await submit(client, "fail", {"message": "dead-lettered"})
        retried = await submit(client, "flaky", {"fail_times": 1})
        running = await submit(client, "sleep", {"seconds": 30, "steps": 30})

        assert (await wait_status(client, done["id"], "COMPLETE"))["result"] == "over TLS"
        assert (await wait_status(client, failed["id"], "FAILURE"))["error"]["type"] == (
            "DemoTaskError"
        )
        flaky = await wait_status(client, retried["id"], "COMPLETE")
        assert flaky["attempts"] == 2  # through the retry topic and back on its task topic
        await wait_status(client, running["id"], "PROGRESS")
        cancelled = await client.post(f"/tasks/{running['id']}/cancel")
        assert cancelled.status_code == 200
        await wait_status(client, running["id"], "CANCELLED")

        # The dashboard reads the workers' lag with the API's own (Describe-only) rights.
        summary = (await client.get("/dashboard/summary")).json()
        assert {row["topic"] for row in summary["scaling"]["topics"]} >= {
            topics.retry_topic(secure_namespace)
        }

        # Re-drive, as its own Kafka user: the dead letter, read with its own group, becomes
        # a new task that the worker runs to its (demo) failure again.
        redriver = settings_of(secure_backends, secure_namespace, Component.REDRIVE)
        old = uuid.UUID(failed["id"])
        redriven = [item for item in await redrive(redriver, catalog) if item.old_id == old]
        assert len(redriven) == 1
        assert redriven[0].new_id is not None
        again = await wait_status(client, str(redriven[0].new_id), "FAILURE")
        assert again["payload"] == {"message": "dead-lettered"}


async def test_each_component_is_refused_what_its_acls_leave_out_and_nothing_is_lost(
    secure_backends: stack.StackState, secure_namespace: str
) -> None:
    state, namespace = secure_backends, secure_namespace
    api = settings_of(state, namespace, Component.API)
    worker = settings_of(state, namespace, Component.WORKER)
    retry, dead_letter = topics.retry_topic(namespace), topics.dead_letter_topic(namespace)
    redrive_group = topics.redrive_group(namespace)
    message = TaskMessage(id=uuid.uuid4(), task="noop", payload={})
    before = {topic: await end_offsets(worker, topic) for topic in (retry, dead_letter)}

    refusals: dict[str, AccessDeniedError] = {}

    async def refused(name: str, attempt: Awaitable[object]) -> None:
        with pytest.raises(AccessDeniedError) as denied:
            await attempt
        refusals[name] = denied.value

    # The API writes task topics only: not the worker's retry or dead-letter topics.
    for topic in (retry, dead_letter):
        publisher = TaskPublisher(api)
        try:
            await refused(f"api writes {topic}", publisher.publish(topic, message, key="k"))
        finally:
            await publisher.stop()
    # The worker writes its own namespace only, and reads no other group's offsets.
    other = topics.task_topic(f"x{namespace}", "noop")
    publisher = TaskPublisher(worker)
    try:
        await refused("worker writes another namespace", publisher.publish(other, message, key="k"))
    finally:
        await publisher.stop()
    async with OffsetReader(
        worker.kafka_bootstrap_servers, security=client_options(worker)
    ) as reader:
        await refused(
            "worker reads re-drive's offsets",
            reader.read(redrive_group, [TopicPartition(dead_letter, 0)]),
        )

    for name, error in refusals.items():
        user = Component.API.user if name.startswith("api") else Component.WORKER.user
        assert error.user == user, name
        assert "not allowed to" in str(error), (name, str(error))
        assert "ACLs" in str(error), (name, str(error))

    # Below the services' own clients: Kafka refuses outright what no ACL allows.
    with pytest.raises(KafkaError, match="TopicAuthorization"):
        await read_one(worker, TopicPartition(dead_letter, 0))  # re-drive's topic
    with pytest.raises(KafkaError, match="TopicAuthorization"):
        await read_one(api, TopicPartition(topics.task_topic(namespace, "noop"), 0))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=worker.kafka_bootstrap_servers, **client_options(worker)
    )
    await admin.start()
    try:
        created = await admin.create_topics([NewTopic(f"{namespace}.tasks.new", 1, 1)])
        assert [code for _, code, *_ in created.topic_errors] == [29]  # TOPIC_AUTHORIZATION
    finally:
        await admin.close()

    # Nothing was written where it was refused; re-drive's group never moved.
    after = {topic: await end_offsets(worker, topic) for topic in (retry, dead_letter)}
    assert after == before
    redriver = settings_of(state, namespace, Component.REDRIVE)
    async with OffsetReader(
        redriver.kafka_bootstrap_servers, security=client_options(redriver)
    ) as reader:
        partitions = await reader.partitions([dead_letter])
        assert partitions
        await reader.read(redrive_group, partitions)  # re-drive may read its own group


async def read_one(settings: Settings, partition: TopicPartition) -> None:
    """Fetch from ``partition`` (assigned, no group) for up to 5 s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_options(settings),
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.getmany(partition, timeout_ms=5000)
    finally:
        await consumer.stop()


async def test_redis_users_reach_their_namespace_and_data_commands_only(
    secure_backends: stack.StackState, secure_namespace: str
) -> None:
    worker = settings_of(secure_backends, secure_namespace, Component.WORKER)
    assert worker.redis_url.startswith("rediss://kafka-tasks-worker:")
    client = connect(worker)
    try:
        await client.set(f"{worker.key_prefix}probe", "1")
        assert await client.get(f"{worker.key_prefix}probe") == b"1"
        for command in (
            ("GET", "another-namespace:task:1"),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "requirepass"),
            ("ACL", "LIST"),
            ("PUBLISH", "channel", "message"),
        ):
            with pytest.raises(NoPermissionError):
                await client.execute_command(*command)
    finally:
        await client.aclose()


async def test_plain_text_and_wrong_passwords_do_not_get_in(
    secure_backends: stack.StackState, secure_namespace: str
) -> None:
    assert secure_backends.redis_server is not None
    port = secure_backends.redis_server.port
    plain = redis.asyncio.Redis(port=port, socket_timeout=3)
    try:
        with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            await plain.ping()  # TLS only: no plain port
    finally:
        await plain.aclose()
    worker = settings_of(secure_backends, secure_namespace, Component.WORKER)
    wrong = worker.model_copy(
        update={
            "redis_url": worker.redis_url.replace("kafka-tasks-worker:", "kafka-tasks-worker:x")
        }
    )
    client = connect(wrong)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()


async def test_kafka_lets_in_neither_a_wrong_password_nor_plain_text(
    secure_backends: stack.StackState, secure_namespace: str
) -> None:
    worker = settings_of(secure_backends, secure_namespace, Component.WORKER)
    host, port = worker.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
    right = client_options(worker)
    # The right password gets a connection (so what follows fails for the reason it names).
    conn = await create_conn(host, int(port), request_timeout_ms=10_000, **right)
    conn.close()
    wrong = {**right, "sasl_plain_password": "not-the-password"}
    with pytest.raises(SaslAuthenticationFailed):
        await create_conn(host, int(port), request_timeout_ms=10_000, **wrong)

    # Plain text on the SASL_SSL listener: the broker closes the connection on the first
    # request (aiokafka's own version probe, or the metadata request).
    async def plain_request() -> None:
        plain = await create_conn(host, int(port), request_timeout_ms=5_000)
        try:
            await plain.send(MetadataRequest([]))
        finally:
            plain.close()

    with pytest.raises(KafkaConnectionError):
        await plain_request()


async def refused_at_start(
    backends: stack.StackState, namespace: str, service: str, name: str, env: dict[str, str]
) -> str:
    """Start ``service`` with ``env``; it must exit non-zero within 60 s. Its log."""
    start = stack.start_api if service == "api" else stack.start_worker
    env = {"KT_API_KEYS": json.dumps([API_KEY]), **env}
    app = start(backends, namespace=namespace, name=name, extra_env=env)
    try:
        exited = await asyncio.to_thread(
            processes.wait_for, lambda: not processes.alive(app.pid), timeout=60
        )
        assert exited, f"the {service} kept running ({name})"
        assert processes.exit_code(app.pid) not in (0, None)
        return await asyncio.to_thread(Path(app.log).read_text, errors="replace")
    finally:
        stack.stop_app(backends, name, grace_seconds=5)


@pytest.mark.parametrize("service", ["api", "worker"])
async def test_a_wrong_redis_password_is_a_clear_error_at_start_not_a_hang(
    secure_backends: stack.StackState, secure_namespace: str, service: str
) -> None:
    settings = settings_of(secure_backends, secure_namespace, Component.WORKER)
    wrong_url = settings.redis_url.replace("kafka-tasks-worker:", "kafka-tasks-worker:wrong")
    name = f"{secure_namespace}-{service}-wrong-password"
    log = await refused_at_start(
        secure_backends, secure_namespace, service, name, {"KT_REDIS_URL": wrong_url}
    )
    assert "Redis refused the credentials in KT_REDIS_URL" in log
    assert "invalid username-password pair" in log  # Redis's own WRONGPASS reply


@pytest.mark.parametrize("service", ["api", "worker"])
async def test_a_wrong_kafka_password_is_a_clear_error_at_start_not_a_wait(
    secure_backends: stack.StackState, secure_namespace: str, service: str
) -> None:
    """aiokafka reports a refused login as "Unable to bootstrap", which alone would read like
    an outage: the worker would wait for Kafka forever and the API would answer 503."""
    name = f"{secure_namespace}-{service}-wrong-kafka-password"
    env = {"KT_KAFKA_SASL_PASSWORD": "not-the-password"}
    log = await refused_at_start(secure_backends, secure_namespace, service, name, env)
    assert "Kafka refused the login as" in log
    assert "SaslAuthenticationFailed" in log
    assert "kafka unavailable" not in log


def test_the_secure_stack_keeps_its_secrets_to_its_owner(
    secure_backends: stack.StackState,
) -> None:
    security = secure_backends.security
    assert security is not None
    directory = Path(security.directory)
    assert directory.stat().st_mode & 0o077 == 0
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    # Redis's ACL file holds password hashes, never the passwords.
    acl = security.redis_acl_file.read_text()
    assert all(password not in acl for password in security.redis_passwords.values())
    assert secure.ADMIN in security.kafka_passwords
