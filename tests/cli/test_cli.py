"""The `kafka-tasks` command against the real local stack."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devstack import stack
from services.cli.app import app
from tests.conftest import AppStack, StartApps

runner = CliRunner()


@pytest.fixture
def env(start_apps: StartApps, namespace: str) -> dict[str, str]:
    apps: AppStack = start_apps(namespace)
    assert apps.api is not None
    return {"KAFKA_TASKS_URL": apps.api.url}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_submit_wait_status_and_list(env: dict[str, str]) -> None:
    code, out = run(env, "submit", "noop", "-f", "echo=hi", "--wait", "--json")
    assert code == 0, out
    record = json.loads(out)
    assert (record["status"], record["result"]) == ("COMPLETE", "hi")

    code, out = run(env, "status", record["id"], "--json")
    assert code == 0
    assert json.loads(out)["id"] == record["id"]

    code, out = run(env, "list", "--task", "noop", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == [record["id"]]

    code, out = run(env, "status", record["id"])
    assert code == 0
    assert "COMPLETE" in out


def test_exit_codes_mean_something(env: dict[str, str]) -> None:
    code, out = run(env, "submit", "fail", "--wait")
    assert code == 1
    assert "DemoTaskError" in out

    code, _ = run(env, "status", str(uuid.uuid4()))
    assert code == 4

    code, out = run(env, "submit", "sleep", "-p", '{"seconds": -1}')
    assert code == 8
    assert "payload.seconds: Input should be greater than or equal to 0" in out

    code, out = run(env, "submit", "sleep", "-f", "seconds=30", "--json")
    task_id = json.loads(out)["id"]
    assert run(env, "cancel", task_id)[0] == 0
    assert run(env, "status", task_id)[0] == 3
    assert run(env, "cancel", task_id)[0] == 8  # already finished: 409


def test_an_unreachable_api_is_exit_7() -> None:
    code, out = run({"KAFKA_TASKS_URL": "http://127.0.0.1:9"}, "status", str(uuid.uuid4()))
    assert code == 7
    assert "cannot reach" in out


def test_lag_shows_the_backlog_and_the_replicas_keda_would_ask_for(
    start_apps: StartApps, namespace: str, backends: stack.StackState
) -> None:
    apps = start_apps(namespace, workers=0)  # nobody consumes: everything submitted is lag
    assert apps.api is not None
    api = {"KAFKA_TASKS_URL": apps.api.url}
    for _ in range(3):
        assert run(api, "submit", "noop")[0] == 0
    env = {
        **backends.service_env(namespace),
        "KT_AUTOSCALE_LAG_THRESHOLD": "1",
        "KT_AUTOSCALE_MAX_REPLICAS": "4",
    }

    code, out = run(env, "lag", "--json")

    assert code == 0, out
    decision = json.loads(out)
    noop = next(t for t in decision["triggers"] if t["topic"] == f"{namespace}.tasks.noop")
    assert noop["lag"] == 3
    assert noop["replicas"] == 3  # ceil(3 / lagThreshold 1), under the 4-partition cap
    assert decision["replicas"] == 3


def test_delayed_prioritised_and_expiring_submissions_and_the_schedules(
    start_apps: StartApps, namespace: str
) -> None:
    schedule = {"name": "hourly", "task": "noop", "every_seconds": 3600}
    apps = start_apps(namespace, workers=0, env={"KT_SCHEDULES": json.dumps([schedule])})
    assert apps.api is not None
    env = {"KAFKA_TASKS_URL": apps.api.url}
    code, out = run(
        env,
        "submit",
        "noop",
        "--countdown",
        "600",
        "--priority",
        "high",
        "--expires",
        "900",
        "--json",
    )
    assert code == 0, out
    record = json.loads(out)
    assert (record["status"], record["held_by"], record["priority"]) == ("PENDING", "eta", "high")
    assert record["expires_at"] > record["due_at"]

    code, out = run(env, "status", record["id"])
    assert code == 0
    assert "due" in out
    assert "(eta)" in out

    code, out = run(env, "submit", "fail", "--priority", "high")
    assert code == 8
    assert "prioritized=True" in out

    code, out = run(env, "schedules", "--json")
    assert code == 0, out
    [listed] = json.loads(out)
    assert (listed["name"], listed["rule"], listed["last_run_at"]) == (
        "hourly",
        "every 3600 s",
        None,
    )
    code, out = run(env, "schedules")
    assert "hourly" in out


def test_workflow_submit_status_and_cancel(env: dict[str, str], tmp_path: Path) -> None:
    spec = {
        "kind": "chain",
        "tasks": [{"task": "add", "payload": {"x": 1}}, {"task": "add", "payload": {"x": 2}}],
    }
    code, out = run(env, "workflow", "submit", json.dumps(spec), "--wait", "--json")
    assert code == 0, out
    chained = json.loads(out)
    assert (chained["status"], chained["result"]) == ("COMPLETE", 3)

    code, out = run(env, "workflow", "status", chained["id"])
    assert code == 0, out
    assert "2 of 2" in out
    assert "COMPLETE" in out

    spec_file = tmp_path / "group.json"
    sleeper = {"task": "sleep", "payload": {"seconds": 30}}
    spec_file.write_text(json.dumps({"kind": "group", "tasks": [sleeper, sleeper]}))
    code, out = run(env, "workflow", "submit", f"@{spec_file}", "--json")
    assert code == 0, out
    group_id = json.loads(out)["id"]
    code, out = run(env, "workflow", "cancel", group_id, "--json")
    assert code == 0, out
    assert json.loads(out)["status"] == "CANCELLED"
    code, out = run(env, "workflow", "status", group_id)
    assert code == 3  # cancelled
    code, out = run(env, "workflow", "cancel", group_id)
    assert code == 8  # it ended already

    failing = {"kind": "chain", "tasks": [{"task": "fail"}]}
    code, out = run(env, "workflow", "submit", json.dumps(failing), "--wait")
    assert code == 1
    code, out = run(env, "workflow", "submit", '{"kind": "chord", "tasks": [{"task": "add"}]}')
    assert code == 2  # refused before it is sent: a chord needs a callback
    assert "callback" in out


def test_submit_batch_from_json_lines(env: dict[str, str], tmp_path: Path) -> None:
    lines = tmp_path / "tasks.jsonl"
    lines.write_text(
        '{"task": "noop", "payload": {"echo": "1"}}\n\n{"task": "noop", "payload": {}}\n'
    )
    code, out = run(env, "submit-batch", str(lines), "--json")
    assert code == 0, out
    assert [record["task"] for record in json.loads(out)] == ["noop", "noop"]

    lines.write_text('{"payload": {}}\n')
    code, out = run(env, "submit-batch", str(lines))
    assert code == 2
    assert "line 1" in out
