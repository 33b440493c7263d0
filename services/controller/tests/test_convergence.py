"""The healer's rules for one environment's instances, without a database."""
from uuid import uuid4

from regio_controller.domain.states import InstanceState
from regio_controller.healing.convergence import Seen, converge

HEALTHY, RUNNING, PENDING = InstanceState.HEALTHY, InstanceState.RUNNING, InstanceState.PENDING


def seen(runner: str, state=HEALTHY, leaving: bool = False) -> Seen:
    return Seen(uuid4(), runner, state, leaving)


def test_scaling_up_adds_the_missing_instances_counting_those_on_their_way():
    plan = converge(4, [seen("r1"), seen("r2", PENDING)])

    assert (plan.add, plan.drain, plan.stop) == (2, [], [])


def test_scaling_down_drains_the_newest_instance_of_the_most_crowded_runner():
    old_r1, r2, new_r1 = seen("r1"), seen("r2"), seen("r1")

    plan = converge(2, [old_r1, r2, new_r1])

    assert plan.drain == [new_r1.id] and plan.add == 0


def test_an_instance_of_a_lost_runner_serves_until_its_replacement_is_healthy():
    lost, other = seen("r1", leaving=True), seen("r2")

    waiting = converge(2, [lost, other])
    assert (waiting.add, waiting.drain) == (1, [])

    replacement_starting = converge(2, [lost, other, seen("r2", RUNNING)])
    assert (replacement_starting.add, replacement_starting.drain) == (0, [])

    replaced = converge(2, [lost, other, seen("r2")])
    assert (replaced.add, replaced.drain) == (0, [lost.id])


def test_instances_on_their_way_to_a_leaving_runner_are_stopped_and_replaced():
    doomed = seen("r1", PENDING, leaving=True)

    plan = converge(1, [doomed])

    assert plan.stop == [doomed.id] and plan.add == 1


def test_scaling_down_while_scaling_up_stops_the_least_advanced_newcomers():
    pending, running = seen("r1", PENDING), seen("r2", RUNNING)

    plan = converge(2, [seen("r1"), pending, running])

    assert plan.stop == [pending.id] and plan.add == 0


def test_a_settled_environment_needs_nothing():
    assert converge(2, [seen("r1"), seen("r2")]).idle
