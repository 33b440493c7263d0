"""The instance lifecycle table and the sanity-test verdict on HTTP statuses."""
import pytest

from regio_controller.domain.states import InstanceState as S
from regio_controller.domain.states import can_move, sources_of
from regio_controller.rollout.sanity import is_alive
from regio_controller.rollout.steps import STEPS, steps_from


@pytest.mark.parametrize("current,target", [
    (S.PENDING, S.STARTING), (S.STARTING, S.RUNNING), (S.RUNNING, S.HEALTHY), (S.HEALTHY, S.DRAINING),
    (S.DRAINING, S.STOPPED), (S.PENDING, S.FAILED), (S.RUNNING, S.FAILED), (S.HEALTHY, S.FAILED),
])
def test_moves_a_rollout_makes(current, target):
    assert can_move(current, target)


@pytest.mark.parametrize("current,target", [
    (S.STOPPED, S.RUNNING), (S.FAILED, S.RUNNING), (S.HEALTHY, S.RUNNING), (S.RUNNING, S.STARTING),
    (S.DRAINING, S.HEALTHY), (S.PENDING, S.HEALTHY),
])
def test_nothing_goes_backwards_or_leaves_an_end_state(current, target):
    assert not can_move(current, target)


def test_heartbeat_moves_only_start_from_pending_or_starting():
    assert set(sources_of(S.RUNNING)) == {S.PENDING, S.STARTING}


@pytest.mark.parametrize("status,alive", [
    (101, True), (200, True), (302, True), (404, True), (500, True), (502, False), (503, False), (504, False),
])
def test_sanity_verdict(status, alive):
    assert is_alive(status) is alive


def test_steps_run_in_divio_order_and_resume_at_the_announced_one():
    assert [s.name for s in STEPS] == ["release commands", "scaling", "sanity tests", "finalizing"]
    assert [s.percent for s in STEPS] == [55, 60, 75, 90]
    assert [s.name for s in steps_from("sanity tests")] == ["sanity tests", "finalizing"]
    assert steps_from(None) == STEPS
