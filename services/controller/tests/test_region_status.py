"""The controller's heartbeat tells the control panel what the region's runners offer: how many
it knows and hears, the memory the ready ones that take new instances offer, and how much of it
is not yet held."""
from uuid import uuid4

from regio_common import bus
from regio_common.region_status import ComponentStatus

from .conftest import eventually


async def test_the_controllers_heartbeat_sums_its_ready_schedulable_runners(region):
    heard: list[ComponentStatus] = []

    async def on_status(msg) -> None:
        heard.append(ComponentStatus.model_validate_json(msg.data))

    await region.nc.subscribe(bus.status_subject(region.name, "controller"), cb=on_status)
    r1 = await region.runner("r1", memory_mb=4096)
    await region.runner("r2", memory_mb=2048)
    await region.ingress()
    app = await region.app_server(200)
    r1.addresses["app:v1"] = app.address

    def latest(**expected) -> bool:
        return bool(heard) and heard[-1].ready and all(heard[-1].details.get(k) == v for k, v in expected.items())

    async with region.controller(region.settings(status_seconds=0.2, runner_lost_seconds=2)) as api:
        await eventually(lambda: latest(runners=2, runners_ready=2, memory_mb=6144, memory_mb_free=6144),
                         what="both runners' memory, all free")

        assert (await api.post("/internal/v1/runners/r2/cordon")).status_code == 200
        finished = await region.events.finished((await region.request(region.rollout(uuid4(), "app:v1"))).deployment_id)
        assert finished.success, finished.error
        # r2 takes nothing new: its memory is not offered; r1 holds the 512 MB instance
        await eventually(lambda: latest(runners=2, runners_ready=2, memory_mb=4096, memory_mb_free=3584),
                         what="the cordoned runner left out and the instance's memory held")

        await r1.stop()  # lost: heard no more
        await eventually(lambda: latest(runners_ready=1, memory_mb=0, memory_mb_free=0), what="r1 lost")
    assert heard[-1].region == region.name and heard[-1].component == "controller"
