"""The reconcile planner on its own: desired + observed -> actions."""
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
from regio_runner.reconcile import Remove, Run, Start, plan


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


def test_an_exited_instance_is_restarted_after_the_backoff():
    instance = desired()
    exited = container_of(instance, state=ContainerState.EXITED, exit_code=137)
    key = str(instance.instance_id)
    assert plan([instance], [exited], last_started={key: 10.0}, now=11.0) == []
    assert plan([instance], [exited], last_started={key: 10.0}, now=12.5) == [
        Start(instance, exited.container_id, restart=True)
    ]


def test_a_created_but_never_started_container_is_started_without_counting_a_restart():
    instance = desired()
    created = container_of(instance, state=ContainerState.STARTING)
    assert plan([instance], [created]) == [Start(instance, created.container_id, restart=False)]


def test_a_failing_first_start_is_retried_after_the_backoff():
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
