"""The worker ScaledObject as the services see it: one kafka trigger per task topic (per
priority for a prioritised task) plus the retry topic, with the thresholds from settings
(which infra fills from the stack config)."""

from __future__ import annotations

from services.core import contract, policy, topics
from services.core.catalog import Catalog
from services.core.kafka_security import client_options
from services.core.lag import PartitionLag, group_lag
from services.core.scaling import KafkaTrigger, ScalingDecision, ScalingPolicy, desired_replicas
from services.core.settings import Settings


def worker_policy(settings: Settings, catalog: Catalog) -> ScalingPolicy:
    retry = KafkaTrigger(
        topic=topics.retry_topic(settings.namespace),
        lag_threshold=settings.autoscale_retry_lag_threshold,
        activation_lag_threshold=settings.autoscale_activation_lag_threshold,
        offset_reset_policy=contract.WORKER_AUTO_OFFSET_RESET,
        allow_idle_consumers=settings.autoscale_allow_idle_consumers,
        limit_to_partitions_with_lag=settings.autoscale_limit_to_partitions_with_lag,
    )
    return ScalingPolicy.uniform(
        policy.all_task_topics(catalog, settings),
        lag_threshold=settings.autoscale_lag_threshold,
        activation_lag_threshold=settings.autoscale_activation_lag_threshold,
        min_replicas=settings.autoscale_min_replicas,
        max_replicas=settings.autoscale_max_replicas,
        offset_reset_policy=contract.WORKER_AUTO_OFFSET_RESET,
        allow_idle_consumers=settings.autoscale_allow_idle_consumers,
        limit_to_partitions_with_lag=settings.autoscale_limit_to_partitions_with_lag,
        extra=(retry,),
    )


async def read_scaling(
    settings: Settings, catalog: Catalog
) -> tuple[list[PartitionLag], ScalingDecision]:
    """Read the workers' lag from Kafka and what the ScaledObject would do with it."""
    policy = worker_policy(settings, catalog)
    rows = await group_lag(
        settings.kafka_bootstrap_servers,
        settings.consumer_group,
        [trigger.topic for trigger in policy.triggers],
        offset_reset=contract.WORKER_AUTO_OFFSET_RESET,
        security=client_options(settings),
    )
    return rows, desired_replicas(rows, policy)
