"""Several runner agents on one host share the runner schema (``regio up --runners N``): each
keeps its own containers' records, and never touches another's."""
from uuid import uuid4

from sqlalchemy import select

from regio_common import db
from regio_runner.db.models import ManagedContainer

from .test_agent import _running


async def records(database_url) -> dict[str, set]:
    """Runner -> the instances the containers table holds for it."""
    engine = db.make_engine(database_url)
    try:
        async with db.make_sessionmaker(engine)() as session:
            rows = (await session.scalars(select(ManagedContainer))).all()
    finally:
        await engine.dispose()
    held: dict[str, set] = {}
    for row in rows:
        held.setdefault(row.runner, set()).add(row.instance_id)
    return held


async def test_two_agents_on_one_schema_keep_each_others_records(
    region, start_agent, runner_name, runners, app_image, database_url, eventually
):
    other_name = f"test-runner-{uuid4().hex[:8]}"
    runners.append(other_name)
    mine, theirs = region.instance(app_image), region.instance(app_image)
    async with start_agent(runner_name), start_agent(other_name):
        await region.put_desired(runner_name, 1, [mine])
        await region.put_desired(other_name, 1, [theirs])
        await eventually(lambda: _running(region, runner_name, mine.instance_id))
        await eventually(lambda: _running(region, other_name, theirs.instance_id))

        async def both_recorded():
            held = await records(database_url)
            return held if held == {runner_name: {mine.instance_id}, other_name: {theirs.instance_id}} else None

        await eventually(both_recorded)
        # Several passes of each agent later, both rows are still there.
        for runner in (runner_name, other_name):
            sent = (await region.heartbeat(runner)).sent_at
            for _ in range(3):
                sent = (await eventually(lambda r=runner, s=sent: _newer_heartbeat(region, r, s))).sent_at
        assert await both_recorded()

        # One runner's instance goes: only its row goes with it.
        await region.put_desired(runner_name, 2, [])

        async def mine_forgotten():
            heartbeat = await region.heartbeat(runner_name)
            held = await records(database_url)
            return heartbeat.desired_revision == 2 and not heartbeat.instances and held

        assert await eventually(mine_forgotten) == {other_name: {theirs.instance_id}}



async def _newer_heartbeat(region, runner, sent_at):
    heartbeat = await region.heartbeat(runner)
    return heartbeat if heartbeat and heartbeat.sent_at > sent_at else None
