"""The devstack tool against the processes it starts."""

from __future__ import annotations

import pytest

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
