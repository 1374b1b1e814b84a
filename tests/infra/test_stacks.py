"""Every stack file rendered through the Pulumi mocks: what it declares, key fields, ordering,
readiness waits and secrets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.config import parse_config
from infra.render import RenderedStack, stack_config
from services.core import contract, topics
from services.core.contract import WORKER_AUTO_OFFSET_RESET
from services.core.settings import Settings
from services.tasks import catalog

COMPONENT_TYPES = {
    "kafka-tasks:platform:Namespaces",
    "kafka-tasks:platform:StrimziOperator",
    "kafka-tasks:platform:KafkaCluster",
    "kafka-tasks:platform:KafkaTopics",
    "kafka-tasks:platform:Redis",
    "kafka-tasks:platform:Keda",
    "kafka-tasks:platform:ApiIngress",
    "kafka-tasks:app:Application",
    "kafka-tasks:app:WorkerAutoscaling",
}


def spec(resource: Any) -> dict[str, Any]:
    result: dict[str, Any] = resource.inputs["spec"]
    return result


def pod(rendered: RenderedStack, name: str) -> dict[str, Any]:
    result: dict[str, Any] = spec(rendered.one("Deployment", name))["template"]["spec"]
    return result


def namespace_of(stack: RenderedStack) -> str:
    return parse_config(stack_config(stack.stack)).task_namespace


# --- What each stack declares ----------------------------------------------------------------


def test_every_component_is_declared_once_and_parents_its_children(stack: RenderedStack) -> None:
    components = [r for r in stack.resources if r.type.startswith("kafka-tasks:")]
    assert sorted(r.type for r in components) == sorted(COMPONENT_TYPES)
    component_urns = {r.urn for r in components}
    for resource in stack.resources:
        if resource.custom or resource.type.startswith("kubernetes:helm"):
            assert resource.parent in component_urns, f"{resource.name} is not in a component"


def test_one_topic_per_task_plus_retry_and_dead_letter(stack: RenderedStack) -> None:
    ns = namespace_of(stack)
    expected = [topics.task_topic(ns, name) for name in catalog.names()]
    expected += [topics.retry_topic(ns), topics.dead_letter_topic(ns)]
    declared = [spec(t)["topicName"] for t in stack.kind("KafkaTopic")]
    assert sorted(declared) == sorted(expected)
    assert stack.outputs["topicNames"] == expected


def test_topics_get_partitions_replicas_and_retention_from_config(stack: RenderedStack) -> None:
    config = parse_config(stack_config(stack.stack))
    for topic in stack.kind("KafkaTopic"):
        topic_spec = spec(topic)
        is_dead_letter = topic_spec["topicName"] == config.dead_letter_topic
        assert topic_spec["partitions"] == (
            config.dead_letter_partitions if is_dead_letter else config.topic_partitions
        )
        assert topic_spec["replicas"] == config.topic_replicas
        assert topic_spec["config"]["retention.ms"] == (
            config.dead_letter_retention_ms if is_dead_letter else config.topic_retention_ms
        )
        assert topic.inputs["metadata"]["labels"] == {"strimzi.io/cluster": "kafka-tasks"}


def test_kafka_is_kraft_with_strimzi_v1_and_no_zookeeper(stack: RenderedStack) -> None:
    config = parse_config(stack_config(stack.stack))
    kafka = stack.one("Kafka", config.kafka_cluster_name)
    assert kafka.inputs["apiVersion"] == "kafka.strimzi.io/v1"
    assert "zookeeper" not in spec(kafka)
    kafka_config = spec(kafka)["kafka"]["config"]
    assert kafka_config["min.insync.replicas"] == config.kafka_min_insync_replicas
    assert kafka_config["default.replication.factor"] == config.kafka_replication_factor
    assert spec(kafka)["kafka"]["version"] == config.kafka_version


def test_dev_runs_one_combined_node(committed: Callable[[str], RenderedStack]) -> None:
    pools = committed("dev").kind("KafkaNodePool")
    assert [(spec(p)["replicas"], spec(p)["roles"]) for p in pools] == [
        (1, ["controller", "broker"])
    ]


def test_prod_runs_three_controllers_and_three_brokers(
    committed: Callable[[str], RenderedStack],
) -> None:
    pools = {p.inputs["metadata"]["name"]: spec(p) for p in committed("prod").kind("KafkaNodePool")}
    assert pools["controller"]["replicas"] == 3
    assert pools["controller"]["roles"] == ["controller"]
    assert pools["broker"]["replicas"] == 3
    assert pools["broker"]["storage"]["volumes"][0]["size"] == "200Gi"


def test_outputs(stack: RenderedStack) -> None:
    config = parse_config(stack_config(stack.stack))
    assert stack.outputs["apiUrl"] == f"http://{config.api_host}"
    assert stack.outputs["kafkaBootstrap"] == "kafka-tasks-kafka-bootstrap.kafka.svc:9092"
    assert stack.outputs["consumerGroup"] == topics.consumer_group(config.task_namespace)


# --- Ordering and readiness --------------------------------------------------------------------


def test_kafka_waits_for_the_operator_chart_and_its_node_pools(stack: RenderedStack) -> None:
    kafka = stack.kind("Kafka")[0]
    assert stack.depends_on(kafka, stack.named("strimzi-chart"))
    for pool in stack.kind("KafkaNodePool"):
        assert stack.depends_on(kafka, pool)
        assert stack.depends_on(pool, stack.named("strimzi-chart"))


def test_topics_wait_for_kafka(stack: RenderedStack) -> None:
    kafka = stack.kind("Kafka")[0]
    for topic in stack.kind("KafkaTopic"):
        assert stack.depends_on(topic, kafka)


@pytest.mark.parametrize("deployment", [contract.API_SERVICE_NAME, contract.WORKER_SERVICE_NAME])
def test_workloads_wait_for_every_topic_and_redis(stack: RenderedStack, deployment: str) -> None:
    workload = stack.one("Deployment", deployment)
    for topic in stack.kind("KafkaTopic"):
        assert stack.depends_on(workload, topic)
    assert stack.depends_on(workload, stack.one("StatefulSet", "kafka-tasks-redis"))


def test_scaled_object_waits_for_keda_and_the_worker(stack: RenderedStack) -> None:
    scaled_object = stack.kind("ScaledObject")[0]
    assert stack.depends_on(scaled_object, stack.named("keda-chart"))
    assert stack.depends_on(scaled_object, stack.one("Deployment", contract.WORKER_SERVICE_NAME))


def test_the_operator_does_not_wait_for_the_app(stack: RenderedStack) -> None:
    """Guards the direction of the edges: the dependency check must not be trivially true."""
    worker = stack.one("Deployment", contract.WORKER_SERVICE_NAME)
    assert not stack.depends_on(stack.named("strimzi-chart"), worker)
    assert not stack.depends_on(stack.kind("Kafka")[0], worker)


@pytest.mark.parametrize("kind", ["Kafka", "KafkaTopic", "ScaledObject"])
def test_custom_resources_the_app_needs_are_awaited_ready(stack: RenderedStack, kind: str) -> None:
    timeout = str(parse_config(stack_config(stack.stack)).readiness_timeout_seconds)
    for resource in stack.kind(kind):
        annotations = resource.inputs["metadata"]["annotations"]
        assert annotations["pulumi.com/waitFor"] == "condition=Ready"
        assert annotations["pulumi.com/timeoutSeconds"] == timeout


def test_gateway_is_awaited_programmed(stack: RenderedStack) -> None:
    gateway = stack.kind("Gateway")[0]
    assert gateway.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == (
        "condition=Programmed"
    )


# --- Autoscaling -------------------------------------------------------------------------------


def test_scaled_object_reads_the_lag_of_the_workers_own_group(stack: RenderedStack) -> None:
    config = parse_config(stack_config(stack.stack))
    scaled_object = spec(stack.kind("ScaledObject")[0])
    assert scaled_object["scaleTargetRef"] == {"name": contract.WORKER_SERVICE_NAME}
    assert scaled_object["maxReplicaCount"] <= config.topic_partitions
    triggers = scaled_object["triggers"]
    assert [t["metadata"]["topic"] for t in triggers] == config.consumed_topics
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert metadata["consumerGroup"] == topics.consumer_group(config.task_namespace)
        assert metadata["offsetResetPolicy"] == WORKER_AUTO_OFFSET_RESET == "earliest"
        assert metadata["bootstrapServers"] == stack.outputs["kafkaBootstrap"]
    assert triggers[-1]["metadata"]["lagThreshold"] == str(config.retry_lag_threshold)
    assert triggers[0]["metadata"]["lagThreshold"] == str(config.lag_threshold)


def test_worker_deployment_leaves_the_replica_count_to_keda(stack: RenderedStack) -> None:
    assert "replicas" not in spec(stack.one("Deployment", contract.WORKER_SERVICE_NAME))


# --- The application -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "port", "liveness", "readiness"),
    [
        (
            contract.API_SERVICE_NAME,
            contract.API_PORT,
            contract.API_LIVENESS_PATH,
            contract.API_READINESS_PATH,
        ),
        (
            contract.WORKER_SERVICE_NAME,
            contract.WORKER_HEALTH_PORT,
            contract.WORKER_LIVENESS_PATH,
            contract.WORKER_READINESS_PATH,
        ),
    ],
)
def test_pods_are_hardened_and_probed_on_the_contract_paths(
    stack: RenderedStack, name: str, port: int, liveness: str, readiness: str
) -> None:
    pod_spec = pod(stack, name)
    assert pod_spec["enableServiceLinks"] is False
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert len(pod_spec["topologySpreadConstraints"]) == 2
    (container,) = pod_spec["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": liveness, "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": readiness, "port": port}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert not container["image"].endswith(":latest")


def test_settings_configmap_only_sets_real_settings(stack: RenderedStack) -> None:
    settings = next(c for c in stack.kind("ConfigMap") if c.name == "app-settings").inputs["data"]
    known = {contract.env_var(field) for field in Settings.model_fields}
    assert set(settings) <= known
    assert settings[contract.env_var("namespace")] == namespace_of(stack)
    assert settings[contract.env_var("api_host")] == "0.0.0.0"
    assert settings[contract.env_var("worker_web_bind")] == "0.0.0.0"  # probed on the pod IP
    assert settings[contract.env_var("declare_topics")] == "false"  # Strimzi owns topics
    # The services compute KEDA's decision with exactly the ScaledObject's numbers.
    scaled = stack.kind("ScaledObject")[0].inputs["spec"]
    assert settings[contract.env_var("autoscale_max_replicas")] == str(scaled["maxReplicaCount"])
    assert settings[contract.env_var("autoscale_min_replicas")] == str(scaled["minReplicaCount"])
    first_trigger = scaled["triggers"][0]["metadata"]
    assert settings[contract.env_var("autoscale_lag_threshold")] == str(
        first_trigger["lagThreshold"]
    )


def test_api_keys_and_redis_url_are_sent_as_secrets(stack: RenderedStack) -> None:
    assert {"redis_url", "api_keys"} <= set(Settings.model_fields)
    app_secret = stack.named("app-secrets")
    assert app_secret.secret_paths  # the engine must receive them encrypted
    assert set(app_secret.inputs["stringData"]) == {
        contract.env_var("redis_url"),
        contract.env_var("api_keys"),
    }
    assert stack.named("redis-auth").secret_paths
    assert not stack.named("app-settings").secret_paths


def test_redis_url_carries_the_password_to_the_in_cluster_service(stack: RenderedStack) -> None:
    url = stack.named("app-secrets").inputs["stringData"][contract.env_var("redis_url")]
    assert url == "redis://:preview-only-not-a-secret@kafka-tasks-redis.kafka-tasks.svc:6379/0"


def test_redis_persists_with_aof_and_limits(stack: RenderedStack) -> None:
    conf = next(c for c in stack.kind("ConfigMap") if c.name == "redis-conf").inputs["data"]
    assert "appendonly yes" in conf["valkey.conf"]
    redis = spec(stack.one("StatefulSet", "kafka-tasks-redis"))
    (container,) = redis["template"]["spec"]["containers"]
    assert "bitnami" not in container["image"]
    assert container["resources"]["limits"]["memory"]
    assert redis["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]


def test_only_the_app_and_keda_reach_kafka_and_only_the_app_reaches_redis(
    stack: RenderedStack,
) -> None:
    (listener,) = spec(stack.kind("Kafka")[0])["kafka"]["listeners"]
    peers = listener["networkPolicyPeers"]
    allowed = [p["podSelector"] for p in peers]
    assert allowed[0]["matchExpressions"][0]["values"] == [
        contract.API_SERVICE_NAME,
        contract.WORKER_SERVICE_NAME,
    ]
    assert allowed[1] == {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}
    redis_policy = spec(stack.named("redis-allow-clients"))
    (rule,) = redis_policy["ingress"]
    assert rule["from"][0]["podSelector"]["matchExpressions"][0]["values"] == [
        contract.API_SERVICE_NAME,
        contract.WORKER_SERVICE_NAME,
    ]
    deny = spec(stack.one("NetworkPolicy", "default-deny-ingress"))
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_api_is_routed_through_the_gateway_by_default(stack: RenderedStack) -> None:
    route = spec(stack.kind("HTTPRoute")[0])
    assert route["rules"][0]["backendRefs"] == [
        {"name": contract.API_SERVICE_NAME, "port": contract.API_PORT}
    ]
    assert not stack.kind("Ingress")


# --- Variants selected by config -------------------------------------------------------------


def test_ingress_nginx_mode_declares_an_ingress_instead(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    rendered = render_dev_with(ingressMode="ingress-nginx", apiTlsSecretName="api-tls")
    (ingress,) = rendered.kind("Ingress")
    backend = spec(ingress)["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": contract.API_SERVICE_NAME, "port": {"number": contract.API_PORT}}
    assert spec(ingress)["tls"] == [{"hosts": ["tasks.dev.example.com"], "secretName": "api-tls"}]
    assert not rendered.kind("HTTPRoute")
    assert rendered.outputs["apiUrl"] == "https://tasks.dev.example.com"
    chart = rendered.named("ingress-ingress-nginx").inputs
    assert chart["version"].startswith("4.15.")


def test_external_redis_declares_no_statefulset_and_passes_the_url_as_secret(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    url = "rediss://:pw@managed.example.com:6380/0"
    rendered = render_dev_with(secrets={"apiKeys": '["k"]', "redisUrl": url}, redisMode="external")
    assert not rendered.kind("StatefulSet")
    app_secret = rendered.named("app-secrets")
    assert app_secret.inputs["stringData"][contract.env_var("redis_url")] == url
    assert app_secret.secret_paths


def test_a_cluster_endpoint_selects_the_cluster_client(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    url = "rediss://app:pw@clustercfg.example.cache.amazonaws.com:6379"
    rendered = render_dev_with(
        secrets={"apiKeys": '["k"]', "redisUrl": url}, redisMode="cluster-external"
    )
    assert not rendered.kind("StatefulSet")
    assert rendered.named("app-secrets").inputs["stringData"][contract.env_var("redis_url")] == url
    assert rendered.named("app-settings").inputs["data"][contract.env_var("redis_cluster")] == (
        "true"
    )


def test_a_single_redis_keeps_the_single_server_client(stack: RenderedStack) -> None:
    settings = stack.named("app-settings").inputs["data"]
    assert settings[contract.env_var("redis_cluster")] == "false"


def test_charts_come_from_the_pinned_sources(stack: RenderedStack) -> None:
    config = parse_config(stack_config(stack.stack))
    strimzi = stack.named("strimzi-chart").inputs
    assert strimzi["chart"] == "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
    assert strimzi["version"] == config.strimzi_chart_version
    keda = stack.named("keda-chart").inputs
    assert (keda["chart"], keda["version"]) == ("keda", config.keda_chart_version)
    assert keda["version"].startswith("2.20.")
