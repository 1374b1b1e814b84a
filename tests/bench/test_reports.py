"""The benchmark's numbers and tables, from fixed inputs (no benchmark runs here)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.profile import frame_name, package, summarize_collapsed
from bench.report import comparison_rows, markdown, targets
from bench.seed import SeedOptions, summarize
from bench.stats import Row, markdown_table, percentile, ratio


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([5], 0.99) == 5
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="fraction"):
        percentile([1], 1.5)


def test_ratio_and_direction() -> None:
    assert ratio(300, 100) == 3
    assert math.isnan(ratio(1, 0))
    faster = Row("p99", ours=50, anchor=100, higher_is_better=False)
    assert faster.ratio == 0.5
    assert faster.better
    slower = Row("rate", ours=50, anchor=100, higher_is_better=True)
    assert slower.better is False


def test_table_shows_each_figure_with_its_ratio_to_the_anchor() -> None:
    table = markdown_table([Row("completion rate, tasks/s", 900, 300, True, target="≥ 3x")])
    assert "| completion rate, tasks/s (higher is better) | 900 | 300 | 3.00x | ≥ 3x |" in table


def summary(system: str, scenario: str, **values: float) -> dict[str, object]:
    base: dict[str, object] = {
        "system": system,
        "scenario": scenario,
        "submitted": 10,
        "accepted": 10,
        "completed": 10,
        "failures": 0,
        "never_finished": 0,
        "submit_rate": math.nan,
        "completion_rate": math.nan,
        "p50_ms": math.nan,
        "p95_ms": math.nan,
        "p99_ms": math.nan,
        "max_ms": math.nan,
        "api_checked": 0,
        "api_mismatches": 0,
    }
    base.update(values)
    return base


def test_report_rows_pair_the_systems_scenario_by_scenario() -> None:
    runs = [
        summary("kafka-tasks", "burst noop", submit_rate=2000, completion_rate=900),
        summary("celery", "burst noop", submit_rate=1000, completion_rate=300),
        summary("kafka-tasks", "open loop noop @200/s", p50_ms=10, p95_ms=20, p99_ms=40),
        summary("celery", "open loop noop @200/s", p50_ms=5, p95_ms=10, p99_ms=80),
    ]
    rows = {row.metric: row for row in comparison_rows(runs, offered_rate=200)}
    assert rows["burst noop: completion rate, tasks/s"].ratio == 3
    assert rows["noop @200/s: p99 end-to-end, ms"].ratio == 0.5
    assert math.isnan(rows["sleep 50 ms @200/s: p99 end-to-end, ms"].ratio)  # not measured
    text = markdown(runs, ceiling=5000, offered_rate=200, setup={"apis": 1}, command="x")
    assert "5,000 requests/s" in text
    assert "0.40x of it" in text


def test_profile_summary_groups_samples_by_function_and_package() -> None:
    # py-spy writes paths relative to sys.path; absolute ones are cut at site-packages.
    frame = "publish (services/core/publisher.py:40)"
    assert frame_name(frame) == "publisher.py:publish"
    assert package(frame) == "services"
    assert package("send (/v/lib/python3.11/site-packages/aiokafka/producer.py:3)") == "aiokafka"
    assert package("wait (/usr/lib/python3.11/threading.py:327)") == "threading"
    assert package("run (asyncio/runners.py:118)") == "asyncio"
    collapsed = (
        "main (services/api/app.py:1);publish (services/core/publisher.py:40) 3\n"
        "main (services/api/app.py:1) 1\n"
        "Thread._bootstrap (threading.py:1002);Condition.wait (threading.py:327) 50\n"
    )
    text = summarize_collapsed(collapsed)
    assert "4 samples" in text  # the parked pool thread is left out
    assert "75.0%  publisher.py:publish" in text
    assert "100.0%  app.py:main" in text


def test_longest_gap_without_a_finish_after_an_event() -> None:
    from bench.scale import longest_gap

    finishes = [0.1, 0.2, 1.5, 1.6, 5.0]
    assert longest_gap(finishes, 0.0, 2.0) == pytest.approx(1.3)
    assert longest_gap([], 0.0, 2.0) == 2.0
    assert longest_gap(finishes, 1.6, 3.0) == pytest.approx(1.4)


def test_the_five_targets_are_judged_side_by_side() -> None:
    seed = {"failures": 0, "task_failures": 0, "requests_per_second": 900.0, "p50_ms": 2000.0}
    seed |= {"p95_ms": 3000.0}
    runs = [
        summary("kafka-tasks", "burst noop", completion_rate=900),
        summary("celery", "burst noop", completion_rate=300),
        summary(
            "kafka-tasks",
            "open loop noop @200/s",
            p99_ms=5,
            cpu_ms_per_task={"api": 1.0, "kafka": 1.0, "driver": 5.0},
        ),
        summary(
            "celery",
            "open loop noop @200/s",
            p99_ms=6,
            cpu_ms_per_task={"api": 1.5, "worker": 1.0, "driver": 5.0},
        ),
        summary("kafka-tasks", "open loop sleep @200/s", p99_ms=66),
        summary("celery", "open loop sleep @200/s", p99_ms=61),
        summary("kafka-tasks", "fan-out 10000 noop in batches of 1000", complete_seconds=2.0),
        summary("celery", "fan-out 10000 noop, one request each", submit_seconds=20.0),
        {
            "system": "kafka-tasks",
            "scenario": "seed 1000 users",
            "completed": 12000,
            **seed,
            "p99_ms": 9000.0,
        },
        {
            "system": "celery",
            "scenario": "seed 1000 users",
            "completed": 12097,
            **seed,
            "p99_ms": 17000.0,
        },
    ]
    judged = {target.name: target for target in targets(runs, offered_rate=200)}

    assert {name: target.met for name, target in judged.items()} == {
        "seed: tasks completed in 90 s": False,  # 12,000 < 12,097
        "seed: failures (kafka-tasks)": True,
        "seed: end-to-end p99, ms": True,
        "noop @200/s: p99, ms": True,
        "noop @200/s: CPU per task, ms": True,  # 2.0 against 2.5, the driver left out
        "sleep 50 ms @200/s: p99, ms": True,  # 1.08x is within 10 %
        "burst: completion rate, tasks/s": True,
        "fan-out: s to submit+complete (ours) vs submit (anchor)": True,  # 10x
    }
    assert judged["fan-out: s to submit+complete (ours) vs submit (anchor)"].value == 10
    text = markdown(runs, ceiling=5000, offered_rate=200, setup={}, command="x")
    assert "| seed: tasks completed in 90 s | 12,000 | 12,097 | 0.99x | ≥ 1.0x | **no** |" in text


def test_the_seed_scenario_is_read_from_locusts_csv(tmp_path: Path) -> None:
    header = (
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
        "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    )
    rows = [
        "TASK,sleep via poll,1000,3,2000,2100,1000,9000,0,11.1,0.0,"
        "2000,2100,2200,2300,2500,3000,4000,5000,8000,9000,9000",
        ",Aggregated,21000,5,50,60,1,9000,10,233.3,0.0,50,60,70,80,90,100,200,300,900,9000,9000",
    ]
    stats = tmp_path / "seed-kafka-tasks_stats.csv"
    stats.write_text("\n".join([header, *rows]) + "\n")
    result = summarize("kafka-tasks", stats, SeedOptions(users=1000, seconds=90))
    assert (result["completed"], result["task_failures"], result["failures"]) == (997, 3, 5)
    assert result["p99_ms"] == 5000
    assert result["requests"] == 21000
