"""The instance meter against the real Docker Engine, NATS and Postgres: the pieces of a run
that the runner sends (InstanceUsageMetered) add up to Docker's own run time of the container,
are cut at each metering period's end, and an agent restarted in the middle of a run neither
skips nor repeats a piece."""
import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

from regio_common.messages import InstanceUsageMetered, decode, subject_for

from .test_agent import _running, container_gone
from .test_restarts import reported


class Metered:
    """Every InstanceUsageMetered of the region, by instance. A re-send of a message (same id)
    by the outbox relay counts once, as JetStream and the control panel's inbox count it; a piece
    sent twice as two messages counts twice."""

    def __init__(self):
        self.pieces: dict[UUID, list[InstanceUsageMetered]] = {}
        self._seen: set[UUID] = set()

    async def on_message(self, msg) -> None:
        message = decode(msg.headers, msg.data)
        if isinstance(message, InstanceUsageMetered) and message.id not in self._seen:
            self._seen.add(message.id)
            self.pieces.setdefault(message.instance_id, []).append(message)

    def of(self, instance_id: UUID) -> list[InstanceUsageMetered]:
        return sorted(self.pieces.get(instance_id, []), key=lambda m: m.segment_start)


async def metered(region) -> Metered:
    sink = Metered()
    await region.nc.subscribe(subject_for(InstanceUsageMetered, region.name), cb=sink.on_message)
    return sink


def died_at(docker_client, container_id: str, since: datetime) -> datetime:
    """When the engine says the container's process ended (its ``die`` event: FinishedAt)."""
    events = docker_client.events(since=since, until=datetime.now(UTC) + timedelta(seconds=1), decode=True,
                                  filters={"container": container_id, "event": "die"})
    times = [datetime.fromtimestamp(e["timeNano"] / 1e9, UTC) for e in events]
    assert len(times) == 1, times
    return times[0]


def seconds(pieces: list[InstanceUsageMetered]) -> float:
    return sum((p.segment_end - p.segment_start).total_seconds() for p in pieces)


def assert_contiguous(pieces: list[InstanceUsageMetered], started_at: datetime) -> None:
    """From Docker's StartedAt on, each piece begins where the one before ended: none skipped,
    none twice."""
    assert pieces[0].segment_start == started_at
    for before, after in zip(pieces, pieces[1:]):
        assert after.segment_start == before.segment_end, (before, after)
    assert len({p.segment_start for p in pieces}) == len(pieces)


async def test_a_stopped_instances_pieces_add_up_to_dockers_run_time(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    sink = await metered(region)
    instance = region.instance(app_image)
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])
        seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        await asyncio.sleep(3)
        await region.put_desired(runner_name, 2, [])  # no longer desired: stopped and removed
        await eventually(lambda: container_gone(docker_client, seen.container_id))
        ended = died_at(docker_client, seen.container_id, seen.started_at)

        async def metered_to_the_end():
            pieces = sink.of(instance.instance_id)
            return pieces if pieces and abs((pieces[-1].segment_end - ended).total_seconds()) < 1 else None

        pieces = await eventually(metered_to_the_end)
    assert_contiguous(pieces, seen.started_at)
    assert abs(seconds(pieces) - (ended - seen.started_at).total_seconds()) < 1
    assert seconds(pieces) >= 3
    assert all(p.memory_mb == 64 and p.environment_id == instance.environment_id and p.runner == runner_name
               for p in pieces)


async def test_a_run_is_cut_at_each_metering_periods_end(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    sink = await metered(region)
    instance = region.instance(app_image)
    async with start_agent(runner_name, meter_period_seconds=2):
        await region.put_desired(runner_name, 1, [instance])
        seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        # While it runs, each period's piece comes once the period is over.
        running = await eventually(lambda: len(sink.of(instance.instance_id)) >= 2 and sink.of(instance.instance_id))
        assert running[1].segment_end <= datetime.now(UTC)
        await region.put_desired(runner_name, 2, [])
        await eventually(lambda: container_gone(docker_client, seen.container_id))
        ended = died_at(docker_client, seen.container_id, seen.started_at)
        pieces = await eventually(
            lambda: (p := sink.of(instance.instance_id)) and abs((p[-1].segment_end - ended).total_seconds()) < 1
            and p)
    assert_contiguous(pieces, seen.started_at)
    # Every cut but the run's own end is on a period boundary (periods aligned to the epoch).
    assert all(p.segment_end.timestamp() % 2 == 0 for p in pieces[:-1])
    assert all((p.segment_end - p.segment_start).total_seconds() <= 2 for p in pieces)
    assert abs(seconds(pieces) - (ended - seen.started_at).total_seconds()) < 1


async def test_an_agent_restarted_in_the_middle_of_a_run_neither_skips_nor_repeats_a_piece(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    sink = await metered(region)
    instance = region.instance(app_image)
    async with start_agent(runner_name, meter_period_seconds=2):
        await region.put_desired(runner_name, 1, [instance])
        seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        await eventually(lambda: len(sink.of(instance.instance_id)) >= 2)
    before = len(sink.of(instance.instance_id))
    await asyncio.sleep(5)  # periods end while no agent meters: the next one sends them
    async with start_agent(runner_name, meter_period_seconds=2):
        await eventually(lambda: len(sink.of(instance.instance_id)) >= before + 3)
        await region.put_desired(runner_name, 2, [])
        await eventually(lambda: container_gone(docker_client, seen.container_id))
        ended = died_at(docker_client, seen.container_id, seen.started_at)
        pieces = await eventually(
            lambda: (p := sink.of(instance.instance_id)) and abs((p[-1].segment_end - ended).total_seconds()) < 1
            and p)
        await asyncio.sleep(1)  # anything sent twice would come now
    pieces = sink.of(instance.instance_id)
    assert_contiguous(pieces, seen.started_at)
    assert abs(seconds(pieces) - (ended - seen.started_at).total_seconds()) < 1


async def test_an_instance_restarted_after_an_exit_is_metered_run_by_run(
    region, start_agent, runner_name, app_image, eventually
):
    # It exits at once at every start: each run is metered from its own StartedAt to its own
    # FinishedAt, and the gaps between runs (the restart delays) are not.
    sink = await metered(region)
    instance = region.instance(app_image, EXIT_CODE="3")
    async with start_agent(runner_name):
        await region.put_desired(runner_name, 1, [instance])

        async def restarted_twice():
            seen = await reported(region, runner_name, instance.instance_id)
            return seen if seen is not None and seen.restarts >= 2 else None

        await eventually(restarted_twice)
        pieces = await eventually(lambda: len(sink.of(instance.instance_id)) >= 2 and sink.of(instance.instance_id))
    starts = [p.segment_start for p in pieces]
    assert len(set(starts)) == len(starts)
    # A second or more of restart delay lies between one run's end and the next one's start.
    for before, after in zip(pieces, pieces[1:]):
        assert (after.segment_start - before.segment_end).total_seconds() >= 0.9
    assert all((p.segment_end - p.segment_start).total_seconds() < 5 for p in pieces)


async def test_a_container_is_not_removed_before_its_runs_end_is_metered(
    region, start_agent, runner_name, app_image, docker_client, eventually
):
    # While the meter cannot write (its database away), the stopped container stays, with
    # Docker's FinishedAt; once it can, the run is metered to that end and the container removed.
    sink = await metered(region)
    instance = region.instance(app_image)
    async with start_agent(runner_name) as running:
        meter = running.app.state.agent.meter
        write, refused = meter._meter, []

        async def database_away(*args) -> None:
            refused.append(args)
            raise ConnectionError("the database is away")

        await region.put_desired(runner_name, 1, [instance])
        seen = await eventually(lambda: _running(region, runner_name, instance.instance_id))
        await eventually(lambda: sink.of(instance.instance_id) == [] and meter._runs)  # its run recorded
        meter._meter = database_away
        await region.put_desired(runner_name, 2, [])
        await eventually(lambda: docker_client.api.inspect_container(seen.container_id)["State"]["Status"] == "exited")
        refused.clear()
        await eventually(lambda: len(refused) >= 3)  # several passes and removals tried
        assert not container_gone(docker_client, seen.container_id)
        ended = datetime.fromisoformat(docker_client.api.inspect_container(seen.container_id)["State"]["FinishedAt"])
        meter._meter = write
        await eventually(lambda: container_gone(docker_client, seen.container_id))
        pieces = await eventually(lambda: (p := sink.of(instance.instance_id)) and p[-1].segment_end == ended and p)
        await asyncio.sleep(1)
    assert sink.of(instance.instance_id) == pieces
    assert_contiguous(pieces, seen.started_at)
    assert seconds(pieces) == (ended - seen.started_at).total_seconds()
