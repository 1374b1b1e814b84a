"""KEDA's own kafka scaler against the model, on the real local Kafka: every stack's rendered
ScaledObject, and one trigger setting at a time."""

from __future__ import annotations

import asyncio

import pytest

from devstack.stack import StackState
from infra.render import STACKS
from kedacheck.cases import setting_readings, stack_readings
from kedacheck.probe import Reading
from kedacheck.stacks import stack_scaled_object
from tests.kedacheck.conftest import ScalerFor

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stack", STACKS)
async def test_kedas_scaler_agrees_with_the_model_on_each_stacks_scaled_object(
    stack: str, backends: StackState, namespace: str, keda_scaler: ScalerFor
) -> None:
    # The stack's own ScaledObject; only the topics' namespace is the test's own.
    scaled = await asyncio.to_thread(
        stack_scaled_object, stack, backends.bootstrap_servers, {"taskNamespace": namespace}
    )
    readings: list[Reading] = []
    binary = keda_scaler(scaled.chart_version)
    await stack_readings(binary, scaled, backends.bootstrap_servers, readings)

    assert [p for r in readings for p in r.problems()] == []
    first = scaled.topics[0]
    partitions = scaled.topic_partitions[first]
    threshold = int(scaled.manifest["spec"]["triggers"][0]["metadata"]["lagThreshold"])
    idle, backlog = readings[0].figures, readings[1].figures
    assert (idle.keda_active, idle.trigger(first).keda_metric_milli) == (False, 0)
    # Twice the cap, never committed (earliest): KEDA reports the capped partitions x T.
    assert backlog.keda_active
    assert backlog.trigger(first).keda_metric_milli == partitions * threshold * 1000
    assert backlog.keda_replicas == min(partitions, scaled.manifest["spec"]["maxReplicaCount"])
    assert not readings[-1].figures.keda_active


async def test_kedas_scaler_agrees_with_the_model_and_the_hand_worked_figures_per_setting(
    backends: StackState, namespace: str, keda_scaler: ScalerFor
) -> None:
    dev = await asyncio.to_thread(stack_scaled_object, "dev", backends.bootstrap_servers)
    readings: list[Reading] = []
    binary = keda_scaler(dev.chart_version)
    await setting_readings(binary, dev.manifest, backends.bootstrap_servers, namespace, readings)

    assert [p for r in readings for p in r.problems()] == []
    assert all(r.expected is not None for r in readings)
    assert len(readings) >= 20
