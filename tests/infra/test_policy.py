"""The policy pack, exercised without the Pulumi CLI: each rule's validate function is called
with constructed arguments, first on the stacks this program renders (no violations), then on
objects that break exactly one rule."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from infra.policy import rules
from infra.render import RenderedStack
from services.core import contract

OPTIONS = PolicyResourceOptions(
    protect=False,
    ignore_changes=[],
    delete_before_replace=None,
    aliases=[],
    custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
    additional_secret_outputs=[],
)


def resource_args(resource_type: str, props: dict[str, Any]) -> ResourceValidationArgs:
    return ResourceValidationArgs(resource_type, props, f"urn:{resource_type}", "r", OPTIONS, None)


def policy_resource(resource_type: str, props: dict[str, Any]) -> PolicyResource:
    urn = f"urn:{resource_type}:{props.get('metadata', {}).get('name')}"
    return PolicyResource(resource_type, props, urn, "r", OPTIONS, None, None, [], {})


def violations(
    validate: Callable[[Any, Any], None], args: ResourceValidationArgs | StackValidationArgs
) -> list[str]:
    found: list[str] = []
    validate(args, lambda message, urn=None: found.append(message))
    return found


def stack_args(stack: RenderedStack) -> StackValidationArgs:
    return StackValidationArgs(
        [policy_resource(r.type, r.state) for r in stack.resources if r.custom]
    )


def worker(stack: RenderedStack) -> dict[str, Any]:
    state = stack.one("Deployment", contract.WORKER_SERVICE_NAME).state
    return copy.deepcopy(state)


def container_of(props: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = props["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_pack_has_the_platform_rules() -> None:
    names = {policy.name for policy in rules.POLICIES}
    assert names == {
        "resource-limits-set",
        "probes-present",
        "no-latest-tags",
        "run-as-non-root",
        "replicas-within-partitions",
    }


def test_rendered_stacks_pass_every_rule(stack: RenderedStack) -> None:
    validators = [
        rules.resource_limits_set,
        rules.probes_present,
        rules.no_latest_tags,
        rules.runs_as_non_root,
    ]
    checked = 0
    for resource in stack.resources:
        if resource.type in rules.WORKLOAD_TYPES:
            checked += 1
            for validate in validators:
                assert violations(validate, resource_args(resource.type, resource.state)) == []
    assert checked == 3  # API, worker, Redis
    assert violations(rules.replicas_within_partitions, stack_args(stack)) == []


def test_missing_limit_is_reported(stack: RenderedStack) -> None:
    props = worker(stack)
    del container_of(props)["resources"]["limits"]["memory"]
    args = resource_args("kubernetes:apps/v1:Deployment", props)
    found = violations(rules.resource_limits_set, args)
    assert found == ["container 'kafka-tasks-worker' has no memory limit"]


def test_missing_probe_is_reported(stack: RenderedStack) -> None:
    props = worker(stack)
    del container_of(props)["readinessProbe"]
    found = violations(rules.probes_present, resource_args("kubernetes:apps/v1:Deployment", props))
    assert found == ["container 'kafka-tasks-worker' has no readinessProbe"]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("ghcr.io/acme/worker:latest", "uses the latest tag"),
        ("ghcr.io/acme/worker", "has no tag"),
        ("localhost:5000/worker", "has no tag"),
    ],
)
def test_unpinned_image_is_reported(stack: RenderedStack, image: str, expected: str) -> None:
    props = worker(stack)
    container_of(props)["image"] = image
    found = violations(rules.no_latest_tags, resource_args("kubernetes:apps/v1:Deployment", props))
    assert len(found) == 1
    assert expected in found[0]


def test_digest_and_registry_port_are_pinned() -> None:
    assert rules.image_tag_problem("localhost:5000/worker:1.2") is None
    assert rules.image_tag_problem("ghcr.io/acme/worker@sha256:" + "0" * 64) is None


def test_root_container_is_reported(stack: RenderedStack) -> None:
    props = worker(stack)
    del props["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    del container_of(props)["securityContext"]["runAsNonRoot"]
    found = violations(
        rules.runs_as_non_root, resource_args("kubernetes:apps/v1:Deployment", props)
    )
    assert found == ["container 'kafka-tasks-worker' may run as root"]


def test_privilege_escalation_is_reported(stack: RenderedStack) -> None:
    props = worker(stack)
    del container_of(props)["securityContext"]["allowPrivilegeEscalation"]
    found = violations(
        rules.runs_as_non_root, resource_args("kubernetes:apps/v1:Deployment", props)
    )
    assert found == ["container 'kafka-tasks-worker' allows privilege escalation"]


def test_third_party_workloads_are_left_alone(stack: RenderedStack) -> None:
    props = worker(stack)
    props["metadata"]["labels"] = {"app.kubernetes.io/name": "keda-operator"}
    del container_of(props)["resources"]
    args = resource_args("kubernetes:apps/v1:Deployment", props)
    assert violations(rules.resource_limits_set, args) == []


def test_replicas_above_partitions_are_reported(stack: RenderedStack) -> None:
    args = stack_args(stack)
    scaled = next(r for r in args.resources if r.resource_type == rules.SCALED_OBJECT_TYPE)
    scaled.props = copy.deepcopy(scaled.props)
    scaled.props["spec"]["maxReplicaCount"] = 1000
    found = violations(rules.replicas_within_partitions, args)
    assert len(found) == len(scaled.props["spec"]["triggers"])
    assert all("maxReplicaCount 1000 exceeds" in message for message in found)


def test_idle_consumers_on_purpose_are_not_reported(stack: RenderedStack) -> None:
    args = stack_args(stack)
    scaled = next(r for r in args.resources if r.resource_type == rules.SCALED_OBJECT_TYPE)
    scaled.props = copy.deepcopy(scaled.props)
    scaled.props["spec"]["maxReplicaCount"] = 1000
    for trigger in scaled.props["spec"]["triggers"]:
        trigger["metadata"]["allowIdleConsumers"] = "true"
    assert violations(rules.replicas_within_partitions, args) == []


def test_policies_are_mandatory() -> None:
    assert {policy.enforcement_level for policy in rules.POLICIES} == {EnforcementLevel.MANDATORY}
