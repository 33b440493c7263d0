"""A build's log on its way to the deployment log: however long the lines a build prints,
each batch is a message the bus takes (issue 14, point 8)."""
import uuid

from regio_builder.build.log import BuildLog
from regio_common.messages import DeploymentLogAppended


async def test_long_lines_go_out_in_batches_the_bus_takes_all_of_them_in_order():
    published: list[list[str]] = []

    async def publish(lines: list[str]) -> None:
        # What the builder's outbox does with a batch: refuses one the bus would not carry.
        DeploymentLogAppended(deployment_id=uuid.uuid4(), lines=lines).encode()
        published.append(lines)

    # 300 lines of 16 KB (two bytes a character) within one flush: 4.8 MB.
    written = [f"{n} " + "é" * 7990 for n in range(300)]
    async with BuildLog(publish, interval=60) as log:
        for line in written:
            log.write(line)

    assert [line for batch in published for line in batch] == written
    assert len(published) > 1
