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
        "kafka-listeners-encrypted-and-authenticated",
        "kafka-users-least-privilege",
        "egress-policies-present",
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
    assert violations(rules.egress_policies_present, stack_args(stack)) == []
    security = {"Kafka": rules.kafka_listeners_encrypted_and_authenticated}
    security["KafkaUser"] = rules.kafka_users_least_privilege
    secured = 0
    for resource in stack.resources:
        kind = resource.state.get("kind") if resource.custom else None
        if kind in security:
            secured += 1
            assert violations(security[kind], resource_args(resource.type, resource.state)) == []
    assert secured == 5  # the cluster and one user per component


def kafka(stack: RenderedStack) -> dict[str, Any]:
    return copy.deepcopy(stack.kind("Kafka")[0].state)


def kafka_violations(props: dict[str, Any]) -> list[str]:
    args = resource_args(rules.KAFKA_TYPE, props)
    return violations(rules.kafka_listeners_encrypted_and_authenticated, args)


def test_a_plain_or_anonymous_listener_is_reported(stack: RenderedStack) -> None:
    props = kafka(stack)
    listener = props["spec"]["kafka"]["listeners"][0]
    listener["tls"] = False
    del listener["authentication"]
    assert kafka_violations(props) == [
        "listener 'tls' is not TLS (no plain listeners)",
        "listener 'tls' lets clients in without authentication",
    ]


def test_a_cluster_that_does_not_authorize_is_reported(stack: RenderedStack) -> None:
    props = kafka(stack)
    del props["spec"]["kafka"]["authorization"]
    assert kafka_violations(props) == [
        "the Kafka cluster does not authorize (set kafka.authorization.type: simple)"
    ]


def keda_user(stack: RenderedStack) -> dict[str, Any]:
    return copy.deepcopy(stack.one("KafkaUser", "kafka-tasks-keda").state)


def user_violations(props: dict[str, Any]) -> list[str]:
    args = resource_args(rules.KAFKA_USER_TYPE, props)
    return violations(rules.kafka_users_least_privilege, args)


def test_a_user_without_acls_is_reported(stack: RenderedStack) -> None:
    props = keda_user(stack)
    props["spec"]["authorization"]["acls"] = []
    assert user_violations(props) == [
        "KafkaUser 'kafka-tasks-keda' has no ACLs (authorization type simple)"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "*"}, "has an ACL on more than one topic '*'"),
        ({"patternType": "prefix"}, "has an ACL on more than one topic"),
    ],
)
def test_a_wildcard_or_prefixed_acl_is_reported(
    stack: RenderedStack, change: dict[str, str], expected: str
) -> None:
    props = keda_user(stack)
    props["spec"]["authorization"]["acls"][0]["resource"].update(change)
    (found,) = user_violations(props)
    assert found.startswith(f"KafkaUser 'kafka-tasks-keda' {expected}")


def test_an_acl_granting_all_is_reported(stack: RenderedStack) -> None:
    props = keda_user(stack)
    props["spec"]["authorization"]["acls"][0]["operations"] = ["All"]
    (found,) = user_violations(props)
    assert found.startswith("KafkaUser 'kafka-tasks-keda' may do All on topic")


def without(stack: RenderedStack, policy_name: str) -> StackValidationArgs:
    return StackValidationArgs(
        [
            policy_resource(r.type, r.state)
            for r in stack.resources
            if r.custom and (r.state.get("metadata") or {}).get("name") != policy_name
        ]
    )


def test_a_namespace_that_does_not_deny_egress_is_reported(stack: RenderedStack) -> None:
    found = violations(rules.egress_policies_present, without(stack, "default-deny-egress"))
    assert sorted(found) == [
        f"namespace 'kafka-tasks' of {service!r} does not deny egress by default"
        for service in sorted([contract.API_SERVICE_NAME, contract.WORKER_SERVICE_NAME])
    ]


def test_a_deployment_without_its_own_egress_policy_is_reported(stack: RenderedStack) -> None:
    found = violations(rules.egress_policies_present, without(stack, "worker-egress"))
    assert found == [f"Deployment {contract.WORKER_SERVICE_NAME!r} has no egress policy of its own"]


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
