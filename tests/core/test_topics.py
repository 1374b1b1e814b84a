from __future__ import annotations

import pytest

from services.core import topics


@pytest.mark.parametrize("version", [1, 2, 7])
def test_consumer_group_follows_fausts_own_app_id_rule(version: int) -> None:
    import faust

    app = faust.App(topics.worker_app_id("kt"), version=version, broker="kafka://127.0.0.1:1")

    assert topics.consumer_group("kt", version) == app.conf.id


def test_each_task_has_its_own_topic_within_its_namespace() -> None:
    assert topics.task_topic("prod", "sleep") == "prod.tasks.sleep"
    assert topics.task_topic("prod", "sleep") != topics.task_topic("dev", "sleep")
