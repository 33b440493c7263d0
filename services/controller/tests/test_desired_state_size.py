"""A runner's desired state is one key-value entry carrying the sealed environment of every
instance it runs, and the bus refuses an entry over its message limit (issue 14, point 8).
One tenant's big environments must not freeze a runner for everyone: an instance whose
environment no runner has room for is not placed, and others still deploy there."""
from uuid import uuid4

BIG_ENV = "s" * (350 * 1024)  # a release at the API's 256 KiB of variables, once sealed


async def test_environments_no_runner_has_room_for_go_unplaced_and_others_still_deploy(region):
    good = await region.app_server(200)
    runner = await region.runner("r1", memory_mb=8192)
    runner.addresses.update({"app:big": good.address, "app:small": good.address})
    await region.ingress()

    async with region.controller():
        for _ in range(2):
            big = await region.request(region.rollout(uuid4(), "app:big", sealed_env=BIG_ENV,
                                                      sanity_timeout_seconds=10))
            finished = await region.events.finished(big.deployment_id)
            assert finished.success, finished.error

        # A third would make the runner's entry over 1 MiB; another tenant deploys at the same time.
        third = await region.request(region.rollout(uuid4(), "app:big", sealed_env=BIG_ENV,
                                                    sanity_timeout_seconds=10))
        small = await region.request(region.rollout(uuid4(), "app:small", sanity_timeout_seconds=10))

        # The other tenant's lands on the same runner and serves: the runner's entry is still written.
        finished = await region.events.finished(small.deployment_id)
        assert finished.success, finished.error
        assert any(i.release_id == small.release_id for i in runner.latest.instances)
        # The third is refused, naming why.
        refused = await region.events.finished(third.deployment_id)
        assert not refused.success
        assert refused.error.startswith(f"no runner of region {region.name} has room for this release's "
                                        f"environment ({len(BIG_ENV)} bytes sealed)")
