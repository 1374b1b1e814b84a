from __future__ import annotations

import pytest

from services.core.states import TERMINAL_STATES, TRANSITIONS, TaskState, can_transition


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_lead_nowhere(terminal: TaskState) -> None:
    assert terminal.is_terminal
    assert not any(can_transition(terminal, target) for target in TaskState)


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(TaskState)


def test_a_running_task_can_report_progress_and_finish() -> None:
    assert can_transition(TaskState.PENDING, TaskState.PROGRESS)
    assert can_transition(TaskState.PROGRESS, TaskState.PROGRESS)
    assert can_transition(TaskState.PROGRESS, TaskState.COMPLETE)
    assert not can_transition(TaskState.RETRY, TaskState.COMPLETE)
