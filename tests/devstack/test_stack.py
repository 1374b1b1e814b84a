"""The devstack tool against the processes it starts."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack import processes, stack
from devstack.kafka import _registered_brokers


async def test_the_suite_runs_against_a_live_kraft_broker_and_redis(
    backends: stack.StackState,
) -> None:
    assert backends.backends_alive()
    cluster_id, brokers = await _registered_brokers(backends.bootstrap_servers)
    assert (
        cluster_id == backends.kafka_nodes[0].cluster_id or not backends.kafka_nodes[0].cluster_id
    )
    assert brokers == len(backends.kafka_nodes)
    # Loopback only.
    assert all(server.startswith("127.0.0.1:") for server in backends.bootstrap_servers.split(","))
    assert backends.redis_url.startswith("redis://127.0.0.1:")


def test_a_preferred_port_in_use_is_not_handed_out(backends: stack.StackState) -> None:
    taken = backends.kafka_nodes[0].port
    assert processes.free_port(taken) != taken


def test_an_unknown_app_process_cannot_be_waited_for(backends: stack.StackState) -> None:
    ghost = stack.AppProcess(name="ghost", pid=2**22 + 7, port=1, log="/nonexistent", namespace="x")
    with pytest.raises(processes.DevstackError, match="exited while starting"):
        stack.wait_app_ready(ghost, timeout=2)


async def test_down_then_up_keeps_kafka_data_as_redis_keeps_its_own(tmp_path: Path) -> None:
    # `make down` / `make up` must not format a fresh Kafka under Redis's old records: the
    # messages of every accepted task would be gone while their records stay PENDING.
    state, started = await asyncio.to_thread(stack.ensure_backends, tmp_path)
    assert started
    try:
        await produce_one(state.bootstrap_servers, "kept")
        assert state.redis_server is not None
        redis.Redis(port=state.redis_server.port).set("kept", "1")
        cluster_id = state.kafka_nodes[0].cluster_id

        await asyncio.to_thread(stack.stop_all, state)
        state, started = await asyncio.to_thread(stack.ensure_backends, tmp_path)
        assert started
        assert state.kafka_nodes[0].cluster_id == cluster_id
        assert await end_offset(state.bootstrap_servers, "kept") == 1
        assert state.redis_server is not None
        assert redis.Redis(port=state.redis_server.port).get("kept") == b"1"

        # One backend died: only that one is started again, on its own data.
        kafka_pid = state.kafka_nodes[0].pid
        processes.kill(state.redis_server.pid)
        state, started = await asyncio.to_thread(stack.ensure_backends, tmp_path)
        assert state.kafka_nodes[0].pid == kafka_pid
        assert state.redis_server is not None
        assert redis.Redis(port=state.redis_server.port).get("kept") == b"1"
        assert await end_offset(state.bootstrap_servers, "kept") == 1
    finally:
        await asyncio.to_thread(stack.stop_all, stack.load(tmp_path))


async def produce_one(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"message")
    finally:
        await producer.stop()


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([partition]))[partition])
    finally:
        await consumer.stop()


async def test_up_after_another_stack_took_the_old_ports_starts_afresh(tmp_path: Path) -> None:
    # Kafka's nodes know each other by port (KRaft's voters) and cannot move; Redis can. A
    # stack whose Kafka port another process took meanwhile starts both afresh, together,
    # rather than failing; one whose Redis port was taken moves Redis and keeps its data.
    state, _ = await asyncio.to_thread(stack.ensure_backends, tmp_path)
    try:
        assert state.redis_server is not None
        redis.Redis(port=state.redis_server.port).set("kept", "1")
        old_redis_port = state.redis_server.port
        await asyncio.to_thread(stack.stop_all, state)
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", old_redis_port))
            squatter.listen()
            state, started = await asyncio.to_thread(stack.ensure_backends, tmp_path)
        assert started
        assert state.redis_server is not None
        assert state.redis_server.port != old_redis_port
        assert redis.Redis(port=state.redis_server.port).get("kept") == b"1"

        old_kafka_port = state.kafka_nodes[0].port
        await asyncio.to_thread(stack.stop_all, state)
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", old_kafka_port))
            squatter.listen()
            state, started = await asyncio.to_thread(stack.ensure_backends, tmp_path)
        assert started
        assert state.kafka_nodes[0].port != old_kafka_port
        assert state.redis_server is not None
        assert redis.Redis(port=state.redis_server.port).get("kept") is None  # reset together
    finally:
        await asyncio.to_thread(stack.stop_all, stack.load(tmp_path))
