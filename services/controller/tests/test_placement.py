"""The scheduler's placement function: spread, capacity, and nothing-fits."""
import pytest

from regio_controller.scheduler.placement import NoCapacity, RunnerCapacity, place


def test_one_environments_instances_spread_across_runners_before_doubling_up():
    runners = [RunnerCapacity("r1", 4096, 0), RunnerCapacity("r2", 2048, 0), RunnerCapacity("r3", 1024, 0)]

    assert place(runners, 3, 512) == ["r1", "r2", "r3"]


def test_runner_already_running_the_environment_is_chosen_last():
    runners = [RunnerCapacity("r1", 8192, 0, environment_instances=1), RunnerCapacity("r2", 1024, 512)]

    assert place(runners, 1, 256) == ["r2"]


def test_among_equally_spread_runners_the_one_with_most_free_memory_wins():
    runners = [RunnerCapacity("a", 4096, 3584), RunnerCapacity("b", 2048, 0), RunnerCapacity("c", 4096, 1024)]

    assert place(runners, 1, 512) == ["c"]


def test_memory_held_by_other_instances_is_not_free():
    runners = [RunnerCapacity("full", 2048, 1800), RunnerCapacity("small", 1024, 0)]

    assert place(runners, 2, 512) == ["small", "small"]


def test_nothing_fits_places_nothing():
    runners = [RunnerCapacity("r1", 1024, 768), RunnerCapacity("r2", 512, 256)]

    with pytest.raises(NoCapacity) as raised:
        place(runners, 1, 512)
    assert raised.value.memory_mb == 512


def test_all_or_nothing_when_only_some_instances_fit():
    runners = [RunnerCapacity("r1", 1024, 0)]

    with pytest.raises(NoCapacity) as raised:
        place(runners, 3, 512)
    assert (raised.value.placed, raised.value.wanted) == (2, 3)


def test_no_runners_at_all():
    with pytest.raises(NoCapacity):
        place([], 1, 128)


def test_zero_instances_needs_no_runner():
    assert place([], 0, 512) == []


def test_an_instance_goes_where_its_environment_fits_in_the_runners_desired_state():
    runners = [RunnerCapacity("roomy", 8192, 0, env_bytes=700_000), RunnerCapacity("r2", 2048, 0, env_bytes=100)]

    assert place(runners, 2, 512, env_bytes=300_000, max_env_bytes=800_000) == ["r2", "r2"]


def test_no_room_for_the_environment_anywhere_says_so_rather_than_memory():
    runners = [RunnerCapacity("r1", 8192, 0, env_bytes=700_000)]

    with pytest.raises(NoCapacity) as e:
        place(runners, 1, 512, env_bytes=300_000, max_env_bytes=800_000)
    assert e.value.env_bytes == 300_000 and "room for a 300000-byte environment" in str(e.value)
