from __future__ import annotations

import pytest

from services.core import topics


@pytest.mark.parametrize("version", [1, 2, 7])
def test_consumer_group_follows_fausts_own_app_id_rule(version: int) -> None:
    # faust's own settings object applies the rule the worker's App uses for its group id.
    from faust.types.settings import Settings

    faust_id = Settings(topics.worker_app_id("kt"), version=version).id

    assert topics.consumer_group("kt", version) == faust_id


def test_each_task_has_its_own_topic_within_its_namespace() -> None:
    assert topics.task_topic("prod", "sleep") == "prod.tasks.sleep"
    assert topics.task_topic("prod", "sleep") != topics.task_topic("dev", "sleep")
