"""The Locust load shapes; the arithmetic lives in ``profiles.py``.

``use_common_options`` makes Locust pass -u/--users, -r/--spawn-rate and -t/--run-time to the
shape, so ``make loadtest USERS=... DURATION=...`` sets them whatever the shape.
"""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from loadtest.profiles import Params, Tick, spike, steady, step_ramp


class _ParamShape(LoadTestShape):
    """Reads -u/--users, -r/--spawn-rate and -t/--run-time like a run without a shape would."""

    abstract: ClassVar[bool] = True
    use_common_options: ClassVar[bool] = True

    def params(self) -> Params:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        users = int(getattr(options, "num_users", None) or 10)
        rate = float(getattr(options, "spawn_rate", None) or max(users / 10, 1))
        duration = float(getattr(options, "run_time", None) or 60)
        return Params(users, rate, duration)


class SteadyShape(_ParamShape):
    abstract: ClassVar[bool] = False

    def tick(self) -> Tick:
        return steady(self.get_run_time(), self.params())


class StepRampShape(_ParamShape):
    abstract: ClassVar[bool] = False

    def tick(self) -> Tick:
        return step_ramp(self.get_run_time(), self.params())


class SpikeShape(_ParamShape):
    abstract: ClassVar[bool] = False

    def tick(self) -> Tick:
        return spike(self.get_run_time(), self.params())


SHAPES: dict[str, type[LoadTestShape]] = {
    "steady": SteadyShape,
    "ramp": StepRampShape,
    "spike": SpikeShape,
}
