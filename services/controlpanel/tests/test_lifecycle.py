"""The deployment lifecycle rules, tested where they live."""
import pytest

from regio_controlpanel.domain.deployments import Status, TransitionRefused, advance


def test_steps_move_forward_and_percent_never_shrinks():
    p = advance(Status.QUEUED, Status.BUILD)
    assert (p.status, p.percent) == (Status.BUILD, 10)
    assert advance(Status.SANITY_TESTS, Status.SANITY_TESTS, 70).percent == 75
    with pytest.raises(TransitionRefused):
        advance(Status.SCALING, Status.BUILD)


def test_an_ended_deployment_stays_ended():
    for final in (Status.SUCCESS, Status.FAILURE):
        with pytest.raises(TransitionRefused):
            advance(final, Status.FINALIZING)


def test_failure_keeps_the_progress_reached():
    assert advance(Status.SCALING, Status.FAILURE).percent == 60
