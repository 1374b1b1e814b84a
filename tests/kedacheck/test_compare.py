"""A difference between KEDA and the model, or between KEDA and a hand-worked figure, is
reported: the check can fail."""

from __future__ import annotations

from kedacheck.compare import Figures, TriggerFigures
from kedacheck.probe import Expected, Reading


def figures(keda_metric_milli: int, keda_replicas: int) -> Figures:
    trigger = TriggerFigures(
        topic="kt.tasks.sleep",
        lag=55,
        keda_metric_milli=keda_metric_milli,
        model_metric=55,
        keda_active=True,
        model_active=True,
        keda_replicas=keda_replicas,
        model_replicas=1,
    )
    return Figures(
        label="lag 55 at 1",
        current_replicas=1,
        triggers=(trigger,),
        keda_active=True,
        model_active=True,
        keda_replicas=keda_replicas,
        model_replicas=1,
        keda_limited_by="tolerance",
        model_limited_by="tolerance",
    )


def test_equal_figures_agree() -> None:
    assert figures(55_000, 1).agree
    assert Reading(figures(55_000, 1), Expected({"kt.tasks.sleep": 55}, True, 1)).problems() == []


def test_each_figure_that_differs_is_named() -> None:
    different = figures(56_000, 2)
    assert not different.agree
    assert different.differences() == [
        "kt.tasks.sleep: metric KEDA 56, model 55",
        "kt.tasks.sleep: replicas KEDA 2, model 1",
        "replicas: KEDA 2, model 1",
    ]


def test_keda_against_the_hand_worked_figure_is_checked_too() -> None:
    reading = Reading(figures(55_000, 1), Expected({"kt.tasks.sleep": 50}, True, 2))
    assert reading.problems() == [
        "lag 55 at 1: kt.tasks.sleep: KEDA's metric 55, expected 50",
        "lag 55 at 1: replicas 1, expected 2",
    ]
