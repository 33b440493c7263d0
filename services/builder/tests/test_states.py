"""The build lifecycle's transitions."""
from regio_builder.domain.states import BuildState, can_transition


def test_a_build_runs_once_queued_and_ends_succeeded_or_failed():
    assert can_transition(BuildState.QUEUED, BuildState.RUNNING)
    assert can_transition(BuildState.RUNNING, BuildState.SUCCEEDED)
    assert can_transition(BuildState.RUNNING, BuildState.FAILED)


def test_only_a_running_build_goes_back_to_the_queue():
    assert can_transition(BuildState.RUNNING, BuildState.QUEUED)
    assert not can_transition(BuildState.QUEUED, BuildState.SUCCEEDED)


def test_a_finished_build_never_changes():
    for end in (BuildState.SUCCEEDED, BuildState.FAILED):
        assert not any(can_transition(end, state) for state in BuildState)
