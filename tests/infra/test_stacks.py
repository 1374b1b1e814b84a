"""Every stack file rendered through the Pulumi mocks: what it declares, key fields, ordering,
readiness waits and secrets."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from infra.components.kafka_users import binding_secret
from infra.components.redis import service_password
from infra.config import StackConfig, parse_config
from infra.errors import ConfigError
from infra.render import PREVIEW_SECRET, STACK_REFERENCE_TYPE, RenderedStack, stack_config
from services.core import access, contract, topics
from services.core.access import Component
from services.core.contract import WORKER_AUTO_OFFSET_RESET
from services.core.settings import Settings
from services.tasks import catalog

COMPONENT_TYPES = {
    "kafka-tasks:platform:Namespaces",
    "kafka-tasks:platform:StrimziOperator",
    "kafka-tasks:platform:KafkaCluster",
    "kafka-tasks:platform:KafkaTopics",
    "kafka-tasks:platform:KafkaUsers",
    "kafka-tasks:platform:KafkaAccessSecrets",
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
        if resource.type.startswith("kubernetes:"):
            assert resource.parent in component_urns, f"{resource.name} is not in a component"


def test_one_topic_per_task_and_priority_plus_retry_and_dead_letter(stack: RenderedStack) -> None:
    ns = namespace_of(stack)
    expected = [
        topic
        for spec_ in catalog.specs()
        for topic in topics.task_topics(ns, spec_.name, prioritized=spec_.prioritized)
    ]
    assert topics.task_topic(ns, "noop", "high") in expected  # a prioritised demo task
    assert topics.task_topic(ns, "fail", "high") not in expected
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
    assert stack.outputs["kafkaBootstrap"] == "kafka-tasks-kafka-bootstrap.kafka.svc:9093"
    assert stack.outputs["consumerGroup"] == topics.consumer_group(config.task_namespace)


# --- Ordering and readiness --------------------------------------------------------------------


def test_kafka_waits_for_the_operator_chart_and_its_node_pools(stack: RenderedStack) -> None:
    kafka = stack.kind("Kafka")[0]
    assert stack.depends_on(kafka, stack.named("strimzi-chart"))
    for pool in stack.kind("KafkaNodePool"):
        assert stack.depends_on(kafka, pool)
        assert stack.depends_on(pool, stack.named("strimzi-chart"))


def test_nothing_is_sent_before_the_stack_has_read_its_own_outputs(stack: RenderedStack) -> None:
    """No step writes the stack's state while the program reads it (infra.program says why
    that matters with a local file backend)."""
    (own_outputs,) = stack.by_type(STACK_REFERENCE_TYPE)
    objects = [r for r in stack.resources if r.custom and r is not own_outputs]
    assert len(objects) > 40
    for resource in objects:
        assert stack.depends_on(resource, own_outputs), resource.name


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
    api_secret, worker_secret = stack.named("app-api-secrets"), stack.named("app-worker-secrets")
    for secret in (api_secret, worker_secret, stack.named("redis-acl")):
        assert secret.secret_paths  # the engine must receive them encrypted
    assert set(api_secret.inputs["stringData"]) == {
        contract.env_var("redis_url"),
        contract.env_var("api_keys"),
    }
    # The workers never see the API keys.
    assert set(worker_secret.inputs["stringData"]) == {contract.env_var("redis_url")}
    assert stack.named("redis-auth").secret_paths
    assert not stack.named("app-settings").secret_paths


@pytest.mark.parametrize("component", access.REDIS_COMPONENTS)
def test_each_service_logs_in_to_redis_as_its_own_user(
    stack: RenderedStack, component: Component
) -> None:
    secret = stack.named(f"app-{component.value}-secrets")
    url = secret.inputs["stringData"][contract.env_var("redis_url")]
    password = service_password(PREVIEW_SECRET, component)
    assert url == (f"redis://{component.user}:{password}@kafka-tasks-redis.kafka-tasks.svc:6379/0")
    # Valkey knows the user by the hash of that password, limited to the namespace's keys;
    # the administrator's password is not a service's.
    acl = stack.named("redis-acl").inputs["stringData"]["users.acl"].splitlines()
    digest = hashlib.sha256(password.encode()).hexdigest()
    rules = access.redis_rules([namespace_of(stack)])
    assert f"user {component.user} on #{digest} {rules}" in acl
    assert password != PREVIEW_SECRET
    conf = stack.named("redis-conf").inputs["data"]["valkey.conf"]
    assert "aclfile /etc/valkey-acl/users.acl" in conf.splitlines()


def test_redis_tls_is_served_when_a_certificate_secret_is_named(
    committed: Callable[[str], RenderedStack], render_dev_with: Callable[..., RenderedStack]
) -> None:
    plain = committed("dev")
    assert "tls-port" not in plain.named("redis-conf").inputs["data"]["valkey.conf"]
    tls = render_dev_with(redisTlsSecretName="redis-tls")
    conf = tls.named("redis-conf").inputs["data"]["valkey.conf"].splitlines()
    assert {"port 0", "tls-port 6379"} <= set(conf)
    url = tls.named("app-worker-secrets").inputs["stringData"][contract.env_var("redis_url")]
    assert url.startswith("rediss://kafka-tasks-worker:")
    settings = tls.named("app-settings").inputs["data"]
    assert settings[contract.env_var("redis_ca_file")] == "/etc/kafka-tasks/redis-ca/ca.crt"
    volumes = pod(tls, contract.WORKER_SERVICE_NAME)["volumes"]
    assert {
        "name": "redis-ca",
        "secret": {"secretName": "redis-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    } in volumes


# --- Kafka security --------------------------------------------------------------------------


def test_kafka_has_one_tls_scram_listener_and_authorizes(stack: RenderedStack) -> None:
    kafka = spec(stack.kind("Kafka")[0])
    (listener,) = kafka["kafka"]["listeners"]
    assert (listener["name"], listener["port"], listener["tls"]) == ("tls", 9093, True)
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["kafka"]["authorization"] == {"type": "simple"}
    assert "userOperator" in kafka["entityOperator"]
    config = parse_config(stack_config(stack.stack))
    assert config.kafka_bootstrap.endswith(".svc:9093")


def test_each_component_has_a_kafka_user_with_exactly_its_acls(stack: RenderedStack) -> None:
    config = parse_config(stack_config(stack.stack))
    grants = access.kafka_grants(config.task_namespace, catalog)
    users = {r.inputs["metadata"]["name"]: r.inputs for r in stack.kind("KafkaUser")}
    assert set(users) == {component.user for component in Component}
    for component in Component:
        user = users[component.user]
        assert user["metadata"]["namespace"] == config.kafka_namespace
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == config.kafka_cluster_name
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert user["spec"]["authorization"]["acls"] == [
            grant.strimzi_acl() for grant in grants[component]
        ]
    # KEDA may only describe: no Read, no Write anywhere.
    keda_operations = {
        op
        for acl in users[Component.KEDA.user]["spec"]["authorization"]["acls"]
        for op in acl["operations"]
    }
    assert keda_operations == {"Describe"}


def test_each_users_credentials_and_the_cluster_ca_reach_the_app_namespace(
    stack: RenderedStack,
) -> None:
    config = parse_config(stack_config(stack.stack))
    for component in Component:
        access_object = stack.one("KafkaAccess", component.user)
        assert access_object.inputs["metadata"]["namespace"] == config.app_namespace
        assert access_object.inputs["spec"] == {
            "kafka": {
                "name": config.kafka_cluster_name,
                "namespace": config.kafka_namespace,
                "listener": "tls",
            },
            "user": {
                "kind": "KafkaUser",
                "apiGroup": "kafka.strimzi.io",
                "name": component.user,
                "namespace": config.kafka_namespace,
            },
            "secretName": binding_secret(component),
        }
        assert stack.depends_on(access_object, stack.one("KafkaUser", component.user))


@pytest.mark.parametrize(
    ("service", "component"),
    [(contract.API_SERVICE_NAME, Component.API), (contract.WORKER_SERVICE_NAME, Component.WORKER)],
)
def test_each_service_logs_in_to_kafka_as_its_own_user_and_checks_the_cluster_ca(
    stack: RenderedStack, service: str, component: Component
) -> None:
    settings = stack.named("app-settings").inputs["data"]
    assert settings[contract.env_var("kafka_security_protocol")] == "SASL_SSL"
    assert settings[contract.env_var("kafka_sasl_mechanism")] == "SCRAM-SHA-512"
    assert settings[contract.env_var("kafka_ssl_ca_file")] == "/etc/kafka-tasks/kafka-ca/ca.crt"
    pod_spec = pod(stack, service)
    (container,) = pod_spec["containers"]
    from_secret = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in container["env"]}
    assert from_secret == {
        contract.env_var("kafka_sasl_username"): {
            "name": binding_secret(component),
            "key": "username",
        },
        contract.env_var("kafka_sasl_password"): {
            "name": binding_secret(component),
            "key": "password",
        },
    }
    ca_volume = next(v for v in pod_spec["volumes"] if v["name"] == "kafka-ca")
    assert ca_volume["secret"] == {
        "secretName": binding_secret(component),
        "items": [{"key": "ssl.truststore.crt", "path": "ca.crt"}],
    }
    assert {"name": "kafka-ca", "mountPath": "/etc/kafka-tasks/kafka-ca", "readOnly": True} in (
        container["volumeMounts"]
    )
    deployment = stack.one("Deployment", service)
    assert stack.depends_on(deployment, stack.one("KafkaAccess", component.user))


def test_keda_reads_the_lag_as_its_own_user_through_a_trigger_authentication(
    stack: RenderedStack,
) -> None:
    authentication = stack.one("TriggerAuthentication", "kafka-tasks-keda-kafka")
    secret = binding_secret(Component.KEDA)
    assert spec(authentication) == {
        "secretTargetRef": [
            {"parameter": "username", "name": secret, "key": "username"},
            {"parameter": "password", "name": secret, "key": "password"},
            {"parameter": "ca", "name": secret, "key": "ssl.truststore.crt"},
        ]
    }
    scaled = stack.kind("ScaledObject")[0]
    assert authentication.inputs["metadata"]["namespace"] == scaled.inputs["metadata"]["namespace"]
    for trigger in spec(scaled)["triggers"]:
        assert trigger["authenticationRef"] == {"name": "kafka-tasks-keda-kafka"}
        assert (trigger["metadata"]["tls"], trigger["metadata"]["sasl"]) == (
            "enable",
            "scram_sha512",
        )
    assert stack.depends_on(scaled, authentication)
    assert stack.depends_on(scaled, stack.one("KafkaAccess", Component.KEDA.user))


# --- Egress ----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", [contract.API_SERVICE_NAME, contract.WORKER_SERVICE_NAME])
def test_services_reach_kafka_redis_and_dns_and_nothing_else(
    stack: RenderedStack, service: str
) -> None:
    config = parse_config(stack_config(stack.stack))
    deny = spec(stack.one("NetworkPolicy", "default-deny-egress"))
    assert deny == {"podSelector": {}, "policyTypes": ["Egress"]}
    name = "api-egress" if service == contract.API_SERVICE_NAME else "worker-egress"
    policy = spec(stack.one("NetworkPolicy", name))
    pod_labels = spec(stack.one("Deployment", service))["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    kafka, redis, dns = policy["egress"]
    assert kafka["ports"] == [{"protocol": "TCP", "port": 9093}]
    (brokers,) = kafka["to"]
    assert brokers["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": config.kafka_namespace
    }
    assert brokers["podSelector"]["matchLabels"]["strimzi.io/broker-role"] == "true"
    assert redis["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert redis["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "kafka-tasks-redis"
    )
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_external_redis_egress_goes_to_its_network_and_port(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    rendered = render_dev_with(
        secrets={"apiKeys": '["k"]', "redisUrl": "rediss://u:p@redis.example:6380/0"},
        redisMode="external",
        redisExternalCidr="10.20.0.0/16",
        redisExternalPort=6380,
    )
    _, redis, _ = spec(rendered.one("NetworkPolicy", "worker-egress"))["egress"]
    assert redis == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"protocol": "TCP", "port": 6380}],
    }


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
    for component in access.REDIS_COMPONENTS:
        app_secret = rendered.named(f"app-{component.value}-secrets")
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
    for component in access.REDIS_COMPONENTS:
        secret = rendered.named(f"app-{component.value}-secrets")
        assert secret.inputs["stringData"][contract.env_var("redis_url")] == url
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


# --- Helm hooks that Chart v4 never runs (defect 1) -------------------------------------------


def test_envoy_gateway_certgen_is_declared_and_runs_before_the_chart(
    stack: RenderedStack,
) -> None:
    config = parse_config(stack_config(stack.stack))
    job = stack.one("Job", "envoy-gateway-certgen")
    (container,) = spec(job)["template"]["spec"]["containers"]
    assert container["command"] == ["envoy-gateway", "certgen"]
    assert container["args"] == ["--disable-topology-injector"]
    assert (
        container["image"] == f"docker.io/envoyproxy/gateway:{config.envoy_gateway_chart_version}"
    )
    chart = stack.named("ingress-envoy-gateway")
    assert stack.depends_on(chart, job)
    # The Job may write Secrets in its namespace, and nothing else.
    role = stack.one("Role", "envoy-gateway-certgen")
    assert role.inputs["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]}
    ]
    assert stack.depends_on(job, role)
    assert stack.depends_on(job, stack.one("RoleBinding", "envoy-gateway-certgen"))
    # The chart's own image and the certgen image are the same one.
    values = chart.inputs["values"]
    assert values["global"]["images"]["envoyGateway"]["image"] == container["image"]
    assert values["topologyInjector"] == {"enabled": False}


def test_ingress_nginx_admission_webhook_is_switched_off(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    rendered = render_dev_with(ingressMode="ingress-nginx")
    values = rendered.named("ingress-ingress-nginx").inputs["values"]
    assert values["controller"]["admissionWebhooks"] == {"enabled": False}


# --- Service exposure and the waits that match it (defect 2) ----------------------------------


def test_dev_exposes_the_gateway_as_cluster_ip_for_kind(
    committed: Callable[[str], RenderedStack],
) -> None:
    dev = committed("dev")
    proxy = spec(dev.one("EnvoyProxy", "kafka-tasks"))
    assert proxy["provider"]["kubernetes"]["envoyService"] == {"type": "ClusterIP"}
    gateway_class = spec(dev.one("GatewayClass", "kafka-tasks"))
    assert gateway_class["parametersRef"] == {
        "group": "gateway.envoyproxy.io",
        "kind": "EnvoyProxy",
        "name": "kafka-tasks",
        "namespace": "ingress",
    }
    assert dev.depends_on(
        dev.one("GatewayClass", "kafka-tasks"), dev.one("EnvoyProxy", "kafka-tasks")
    )


@pytest.mark.parametrize(
    ("stack_name", "exposure"), [("staging", "LoadBalancer"), ("prod", "LoadBalancer")]
)
def test_staging_and_prod_use_a_load_balancer(
    committed: Callable[[str], RenderedStack], stack_name: str, exposure: str
) -> None:
    proxy = spec(committed(stack_name).one("EnvoyProxy", "kafka-tasks"))
    assert proxy["provider"]["kubernetes"]["envoyService"]["type"] == exposure


@pytest.mark.parametrize("exposure", ["LoadBalancer", "NodePort", "ClusterIP"])
def test_ingress_nginx_waits_for_an_address_only_behind_a_load_balancer(
    render_dev_with: Callable[..., RenderedStack], exposure: str
) -> None:
    rendered = render_dev_with(ingressMode="ingress-nginx", apiExposure=exposure)
    values = rendered.named("ingress-ingress-nginx").inputs["values"]
    assert values["controller"]["service"]["type"] == exposure
    (ingress,) = rendered.kind("Ingress")
    annotations = ingress.inputs["metadata"]["annotations"]
    skips = annotations.get("pulumi.com/skipAwait") == "true"
    assert skips == (exposure != "LoadBalancer")


def test_an_unknown_exposure_is_refused() -> None:
    with pytest.raises(ConfigError, match="apiExposure"):
        parse_config({**stack_config("dev"), "apiExposure": "Ingress"})


# --- KafkaTopic changes Kafka refuses (defect 3) ----------------------------------------------


def test_the_deployed_topic_layout_is_exported(stack: RenderedStack) -> None:
    config = parse_config(stack_config(stack.stack))
    assert stack.outputs["topicLayout"] == {
        "topicPartitions": config.topic_partitions,
        "deadLetterPartitions": config.dead_letter_partitions,
        "topicReplicas": config.topic_replicas,
    }


def test_the_program_reads_the_layout_back_from_its_own_stack(stack: RenderedStack) -> None:
    (reference,) = stack.by_type("pulumi:pulumi:StackReference")
    assert reference.inputs["name"] == f"organization/kafka-tasks/{stack.stack}"


def test_a_replica_change_after_deploy_stops_the_run(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    deployed = {
        "topicLayout": {"topicPartitions": 3, "deadLetterPartitions": 1, "topicReplicas": 1}
    }
    with pytest.raises(ConfigError, match=r"topicReplicas=2 but the deployed topics have 1"):
        render_dev_with(
            deployed_outputs=deployed,
            topicReplicas=2,
            kafkaBrokerReplicas=2,
            kafkaReplicationFactor=2,
        )


def test_fewer_partitions_after_deploy_stop_the_run(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    deployed = {
        "topicLayout": {"topicPartitions": 3, "deadLetterPartitions": 1, "topicReplicas": 1}
    }
    with pytest.raises(ConfigError, match=r"topicPartitions=2 is below the 3 partitions"):
        render_dev_with(deployed_outputs=deployed, topicPartitions=2, workerMaxReplicas=2)


def test_more_partitions_after_deploy_are_sent(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    deployed = {
        "topicLayout": {"topicPartitions": 3, "deadLetterPartitions": 1, "topicReplicas": 1}
    }
    rendered = render_dev_with(deployed_outputs=deployed, topicPartitions=6)
    assert {spec(t)["partitions"] for t in rendered.kind("KafkaTopic")} == {6, 1}


# --- KEDA (defect 4) ----------------------------------------------------------------------------


def test_keda_defaults_to_the_release_with_the_hpa_active_fix() -> None:
    version = StackConfig.model_fields["keda_chart_version"].default
    assert tuple(int(part) for part in version.split(".")) >= (2, 20, 2)


# --- Kafka node pools: own sizing for controllers, spread over nodes (defect 5) ---------------


def test_prod_controllers_have_their_own_sizing(committed: Callable[[str], RenderedStack]) -> None:
    config = parse_config(stack_config("prod"))
    pools = {p.inputs["metadata"]["name"]: spec(p) for p in committed("prod").kind("KafkaNodePool")}
    controller, broker = pools["controller"], pools["broker"]
    assert (
        controller["storage"]["volumes"][0]["size"]
        == config.kafka_controller_storage_size
        == "20Gi"
    )
    assert broker["storage"]["volumes"][0]["size"] == config.kafka_storage_size == "200Gi"
    assert controller["resources"]["limits"] == {
        "cpu": config.kafka_controller_cpu_limit,
        "memory": config.kafka_controller_memory_limit,
    }
    assert broker["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert controller["resources"] != broker["resources"]


def test_every_node_pool_spreads_over_nodes_and_zones(stack: RenderedStack) -> None:
    for pool in stack.kind("KafkaNodePool"):
        name = pool.inputs["metadata"]["name"]
        by_key = {
            c["topologyKey"]: c for c in spec(pool)["template"]["pod"]["topologySpreadConstraints"]
        }
        assert by_key["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
        assert by_key["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
        for constraint in by_key.values():
            assert constraint["labelSelector"]["matchLabels"] == {
                "strimzi.io/cluster": "kafka-tasks",
                "strimzi.io/pool-name": name,
            }


# --- TLS redirect and the headless Redis Service (defect 6) -----------------------------------


def test_with_tls_plain_http_only_redirects_to_https(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    rendered = render_dev_with(apiTlsSecretName="api-tls")
    api_route = spec(rendered.one("HTTPRoute", contract.API_SERVICE_NAME))
    assert api_route["parentRefs"] == [
        {"name": "kafka-tasks", "namespace": "ingress", "sectionName": "https"}
    ]
    redirect = spec(rendered.one("HTTPRoute", f"{contract.API_SERVICE_NAME}-https-redirect"))
    assert redirect["parentRefs"] == [
        {"name": "kafka-tasks", "namespace": "ingress", "sectionName": "http"}
    ]
    (rule,) = redirect["rules"]
    assert rule["filters"] == [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    ]
    assert "backendRefs" not in rule
    listeners = {
        listener["name"]: listener for listener in spec(rendered.kind("Gateway")[0])["listeners"]
    }
    assert listeners["https"]["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "api-tls"}]
    assert "tls" not in listeners["http"]


def test_without_tls_the_api_is_served_on_plain_http(stack: RenderedStack) -> None:
    (route,) = stack.kind("HTTPRoute")
    assert route.inputs["spec"]["parentRefs"] == [{"name": "kafka-tasks", "namespace": "ingress"}]


def test_ingress_nginx_redirects_to_https_with_tls(
    render_dev_with: Callable[..., RenderedStack],
) -> None:
    rendered = render_dev_with(ingressMode="ingress-nginx", apiTlsSecretName="api-tls")
    (ingress,) = rendered.kind("Ingress")
    annotations = ingress.inputs["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"


def test_redis_statefulset_is_governed_by_a_headless_service(stack: RenderedStack) -> None:
    statefulset = spec(stack.one("StatefulSet", "kafka-tasks-redis"))
    headless = stack.one("Service", statefulset["serviceName"])
    assert spec(headless)["clusterIP"] == "None"
    assert spec(headless)["selector"] == statefulset["selector"]["matchLabels"]
    # Clients keep the ClusterIP Service the Redis URL names.
    assert "clusterIP" not in spec(stack.one("Service", "kafka-tasks-redis"))
    assert stack.depends_on(stack.one("StatefulSet", "kafka-tasks-redis"), headless)
