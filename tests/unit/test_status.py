"""InvocationStatus values, its final/waiting sets and the transition table."""

from __future__ import annotations

import pytest

from taskgate import InvocationStatus
from taskgate.status import ALLOWED_TRANSITIONS, can_transition

S = InvocationStatus
FINAL = {S.SUCCESS, S.FAILED, S.CONCURRENCY_CONTROLLED_FINAL, S.CANCELLED}
WAITING = {S.SCHEDULED, S.REGISTERED, S.CONCURRENCY_CONTROLLED, S.RETRY}


@pytest.mark.parametrize(
    ("status", "value"),
    [
        (S.SCHEDULED, "scheduled"),
        (S.REGISTERED, "registered"),
        (S.CONCURRENCY_CONTROLLED, "concurrency_controlled"),
        (S.CONCURRENCY_CONTROLLED_FINAL, "concurrency_controlled_final"),
        (S.RUNNING, "running"),
        (S.RETRY, "retry"),
        (S.SUCCESS, "success"),
        (S.FAILED, "failed"),
        (S.CANCELLED, "cancelled"),
    ],
)
def test_status_is_a_string_with_its_value(status: InvocationStatus, value: str) -> None:
    assert status == value
    assert str(status) == value
    assert InvocationStatus(value) is status


def test_there_are_exactly_the_documented_statuses() -> None:
    assert {s.name for s in InvocationStatus} == {
        "SCHEDULED",
        "REGISTERED",
        "CONCURRENCY_CONTROLLED",
        "CONCURRENCY_CONTROLLED_FINAL",
        "RUNNING",
        "RETRY",
        "SUCCESS",
        "FAILED",
        "CANCELLED",
    }


@pytest.mark.parametrize("status", list(InvocationStatus))
def test_is_final_only_for_success_failed_dropped_and_cancelled(status: InvocationStatus) -> None:
    assert status.is_final is (status in FINAL)


@pytest.mark.parametrize("status", list(InvocationStatus))
def test_is_waiting_only_before_running(status: InvocationStatus) -> None:
    assert status.is_waiting is (status in WAITING)


@pytest.mark.parametrize("status", list(InvocationStatus))
def test_no_status_is_both_final_and_waiting(status: InvocationStatus) -> None:
    assert not (status.is_final and status.is_waiting)


def test_every_status_has_a_row_in_the_transition_table() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(InvocationStatus)


def test_transition_table_only_names_statuses() -> None:
    for exits in ALLOWED_TRANSITIONS.values():
        assert exits <= set(InvocationStatus)


@pytest.mark.parametrize("status", sorted(FINAL))
def test_final_statuses_have_no_exits(status: InvocationStatus) -> None:
    assert ALLOWED_TRANSITIONS[status] == frozenset()
    for target in InvocationStatus:
        assert not can_transition(status, target)


@pytest.mark.parametrize("status", sorted(set(InvocationStatus) - FINAL))
def test_non_final_statuses_can_move_on(status: InvocationStatus) -> None:
    assert ALLOWED_TRANSITIONS[status]


@pytest.mark.parametrize("status", list(InvocationStatus))
def test_no_status_transitions_to_itself(status: InvocationStatus) -> None:
    assert not can_transition(status, status)


def test_every_final_status_is_reachable() -> None:
    reachable = set().union(*ALLOWED_TRANSITIONS.values())
    assert reachable >= FINAL


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.REGISTERED, S.RUNNING),
        (S.REGISTERED, S.CONCURRENCY_CONTROLLED),
        (S.REGISTERED, S.CONCURRENCY_CONTROLLED_FINAL),
        (S.CONCURRENCY_CONTROLLED, S.RUNNING),
        (S.RETRY, S.RUNNING),
        (S.RETRY, S.CONCURRENCY_CONTROLLED),
        (S.RETRY, S.CONCURRENCY_CONTROLLED_FINAL),
        (S.RUNNING, S.SUCCESS),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.RETRY),
        (S.RUNNING, S.REGISTERED),  # handed back on graceful stop, or recovered
    ],
)
def test_legal_transitions(current: InvocationStatus, new: InvocationStatus) -> None:
    assert can_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.REGISTERED, S.SUCCESS),
        (S.REGISTERED, S.FAILED),
        (S.REGISTERED, S.RETRY),
        (S.CONCURRENCY_CONTROLLED, S.SUCCESS),
        (S.CONCURRENCY_CONTROLLED, S.REGISTERED),
        (S.RETRY, S.SUCCESS),
        (S.RUNNING, S.CONCURRENCY_CONTROLLED_FINAL),
        (S.SUCCESS, S.RUNNING),
        (S.SUCCESS, S.FAILED),
        (S.FAILED, S.RETRY),
        (S.FAILED, S.REGISTERED),
        (S.CONCURRENCY_CONTROLLED_FINAL, S.RUNNING),
    ],
)
def test_illegal_transitions(current: InvocationStatus, new: InvocationStatus) -> None:
    assert not can_transition(current, new)


@pytest.mark.parametrize("status", sorted(WAITING))
def test_waiting_statuses_never_finish_without_running(status: InvocationStatus) -> None:
    assert not can_transition(status, S.SUCCESS)
    assert not can_transition(status, S.FAILED)


def test_running_is_the_only_way_to_success_or_failure() -> None:
    for status in InvocationStatus:
        if can_transition(status, S.SUCCESS) or can_transition(status, S.FAILED):
            assert status is S.RUNNING


@pytest.mark.parametrize("status", sorted(set(InvocationStatus) - FINAL))
def test_every_waiting_or_running_status_can_be_cancelled(status: InvocationStatus) -> None:
    assert can_transition(status, S.CANCELLED)
