"""The reconcile planner on its own: desired + observed -> actions."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from uuid import uuid4

from regio_common.runners import ContainerState, DesiredInstance
from regio_runner.docker_engine import (
    LABEL_ENVIRONMENT,
    LABEL_INSTANCE,
    LABEL_RELEASE,
    LABEL_RUNNER,
    Container,
    container_name,
)
from regio_runner.reconcile import Backoff, Pacing, Remove, Run, Start, plan


def desired(image: str = "app:1") -> DesiredInstance:
    return DesiredInstance(instance_id=uuid4(), environment_id=uuid4(), release_id=uuid4(), image=image,
                           port=8000, sealed_env="sealed")


def container_of(instance: DesiredInstance, state=ContainerState.RUNNING, **changes) -> Container:
    labels = {
        LABEL_RUNNER: "r1",
        LABEL_INSTANCE: str(instance.instance_id),
        LABEL_ENVIRONMENT: str(instance.environment_id),
        LABEL_RELEASE: str(changes.pop("release_id", instance.release_id)),
    }
    fields = dict(container_id=uuid4().hex, name=container_name(instance.instance_id), image=instance.image,
                  labels=labels, state=state, exit_code=None, started_at=None, host_port=32768)
    fields.update(changes)
    return Container(**fields)


def test_a_desired_instance_without_container_is_run():
    instance = desired()
    assert plan([instance], []) == [Run(instance)]


def test_a_running_desired_instance_is_left_alone():
    instance = desired()
    assert plan([instance], [container_of(instance)]) == []


def test_an_undesired_container_is_removed():
    gone = container_of(desired())
    assert plan([], [gone]) == [Remove(gone.container_id, gone.key, gone.instance_id)]


def test_nothing_is_touched_before_the_desired_state_is_known():
    stray = container_of(desired(), state=ContainerState.EXITED)
    assert plan(None, [stray]) == []


T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def exited_after(container: Container, started: float, ran: float, code: int = 1) -> Container:
    """The container's run that started ``started`` seconds after T0 ended after ``ran`` seconds."""
    return replace(container, state=ContainerState.EXITED, exit_code=code,
                   started_at=T0 + timedelta(seconds=started), finished_at=T0 + timedelta(seconds=started + ran))


class CrashLoop:
    """Plays the agent around plan(): keeps the pacing of one instance as the agent does,
    and lets its runs end after a given time."""

    def __init__(self):
        self.instance = desired()
        self.key = str(self.instance.instance_id)
        self.container = container_of(self.instance, started_at=T0, finished_at=None)
        self.pacing: dict[str, Pacing] = {}
        self.clock = 0.0  # the planner's clock, seconds after T0

    def plan(self):
        return plan([self.instance], [self.container], pacing=self.pacing, now=self.clock)

    def exit_after(self, ran: float) -> float:
        """The current run ends after ``ran`` seconds; returns the delay the restart is scheduled with."""
        started = (self.container.started_at - T0).total_seconds()
        self.clock = started + ran
        self.container = exited_after(self.container, started, ran)
        [backoff] = self.plan()
        assert isinstance(backoff, Backoff) and backoff.container == self.container
        self.pacing[self.key] = backoff.pacing
        # Nothing more happens before the delay is over, however often the agent passes.
        self.clock += backoff.delay * 0.99
        assert self.plan() == []
        self.clock += backoff.delay * 0.01
        assert self.plan() == [Start(self.instance, self.container.container_id, restart=True)]
        self.pacing[self.key] = self.pacing[self.key].restarted()
        self.container = replace(self.container, state=ContainerState.RUNNING, exit_code=None,
                                 started_at=T0 + timedelta(seconds=self.clock), finished_at=None)
        return backoff.delay


def test_an_instance_that_keeps_exiting_is_restarted_after_delays_that_double_up_to_30s():
    loop = CrashLoop()
    assert [loop.exit_after(0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_run_of_30s_ends_the_crash_loop():
    loop = CrashLoop()
    assert [loop.exit_after(2) for _ in range(4)] == [1, 2, 4, 8]
    assert loop.exit_after(29) == 16  # not long enough
    assert loop.exit_after(30) == 1  # ran 30 s: the next exit counts as a first one
    assert [loop.exit_after(1) for _ in range(3)] == [2, 4, 8]


def test_a_restart_is_scheduled_once_per_exit_with_the_exit_in_it():
    instance = desired()
    key = str(instance.instance_id)
    exited = exited_after(container_of(instance), 0, 3, code=137)
    [backoff] = plan([instance], [exited], now=3.0)
    assert backoff == Backoff(instance, exited, 1.0, Pacing(0, exited.started_at, 4.0))
    # Scheduled: later passes wait for it rather than scheduling it again.
    assert plan([instance], [exited], pacing={key: backoff.pacing}, now=3.5) == []


def test_a_restart_that_failed_is_scheduled_again_further_off():
    instance = desired()
    key = str(instance.instance_id)
    exited = exited_after(container_of(instance), 0, 60)  # a long run: first delay
    [backoff] = plan([instance], [exited], now=60.0)
    assert backoff.delay == 1.0
    # The start failed: the container is still the exited run; the restart was counted.
    [again] = plan([instance], [exited], pacing={key: backoff.pacing.restarted()}, now=61.0)
    assert isinstance(again, Backoff) and again.delay == 2.0


def test_a_created_but_never_started_container_is_started_without_counting_a_restart():
    instance = desired()
    created = container_of(instance, state=ContainerState.STARTING)
    assert plan([instance], [created]) == [Start(instance, created.container_id, restart=False)]


def test_a_failing_first_start_is_retried_after_a_while():
    instance = desired()
    key = str(instance.instance_id)
    assert plan([instance], [], last_started={key: 5.0}, now=6.0) == []
    assert plan([instance], [], last_started={key: 5.0}, now=7.0) == [Run(instance)]


def test_an_instance_with_an_action_running_is_not_planned_again():
    instance, gone = desired(), container_of(desired())
    assert plan([instance], [gone], busy={str(instance.instance_id), gone.key}) == []


def test_a_container_of_another_release_is_replaced_remove_first():
    instance = desired()
    old = container_of(instance, release_id=uuid4())
    actions = plan([instance], [old])
    assert actions == [Remove(old.container_id, old.key, old.instance_id)]
    # Once removed, the next pass runs the desired release.
    assert plan([instance], []) == [Run(instance)]


def test_a_duplicate_container_of_an_instance_is_removed_and_the_right_one_kept():
    instance = desired()
    right = container_of(instance)
    duplicate = container_of(instance, name="hand-made-copy")
    assert plan([instance], [duplicate, right]) == [Remove(duplicate.container_id, duplicate.key, instance.instance_id)]


def test_a_container_without_instance_label_is_removed_by_container_id():
    stray = container_of(desired())
    stray = Container(**{**stray.__dict__, "labels": {LABEL_RUNNER: "r1"}})
    assert plan([], [stray]) == [Remove(stray.container_id, stray.container_id, None)]
