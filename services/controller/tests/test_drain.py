"""Draining the old instances after the routes moved: they are stopped once no ingress of the
region has a request in flight to them, or at the drain grace. The ingresses' answers are
played by IngressApiDouble (conftest.py), a test double of the ingress's internal API."""
from uuid import uuid4

import pytest

from regio_common.messages import DeploymentLogAppended, RolloutFinished
from regio_common.testing.plugin import free_port

from .conftest import eventually


def log_of(region, deployment_id) -> list[str]:
    return [line for m in region.events.of(DeploymentLogAppended, deployment_id) for line in m.lines]


def logged(region, deployment_id, start: str) -> bool:
    return any(line.startswith(start) for line in log_of(region, deployment_id))


async def serve_first_release(region, environment):
    """v1 serving the environment; returns the runner and the address of v1's instance."""
    runner = await region.runner("r1", memory_mb=4096)
    await region.ingress()
    old, new = await region.app_server(200), await region.app_server(200)
    runner.addresses.update({"app:v1": old.address, "app:v2": new.address})
    first = await region.request(region.rollout(environment, "app:v1"))
    finished = await region.events.finished(first.deployment_id)
    assert finished.success, finished.error
    return runner, old.address, new.address


async def test_old_instances_are_stopped_once_no_ingress_has_a_request_in_flight_to_them(region):
    environment = uuid4()
    second_ingress = await region.ingress_api_double()
    settings = region.settings(ingress_urls=[region.ingress_api.url, second_ingress.url], drain_grace_seconds=60)

    async with region.controller(settings):
        runner, old_address, new_address = await serve_first_release(region, environment)
        [old_instance] = runner.desired_instance_ids()
        second_ingress.in_flight[old_address] = 1  # a slow request it proxied before the switch
        region.ingress_api.in_flight[new_address] = 3  # the new release's own traffic holds nothing up

        deployment = (await region.request(region.rollout(environment, "app:v2"))).deployment_id
        await eventually(lambda: logged(region, deployment, "Finalizing: waiting for 1 request(s) in flight"),
                         what="the drain waiting for the slow request")
        assert not region.events.of(RolloutFinished, deployment)
        assert old_instance in runner.desired_instance_ids()

        second_ingress.in_flight[old_address] = 0  # answered
        finished = await region.events.finished(deployment)
        assert finished.success, finished.error
        await eventually(lambda: old_instance not in runner.desired_instance_ids(),
                         what="the drained instance removed from its runner")

    log = log_of(region, deployment)
    assert "Finalizing: draining 1 old instance(s) until no request is in flight to them, at most 60s" in log
    [ended] = [line for line in log if line.startswith("Finalizing: old instance(s) drained in")]
    assert ended.endswith("s, no request left in flight")
    assert "Finalizing: stopped 1 old instance(s)" in log


async def test_requests_still_in_flight_at_the_grace_do_not_keep_the_old_instances(region):
    environment = uuid4()

    async with region.controller(region.settings(drain_grace_seconds=1)):
        runner, old_address, _ = await serve_first_release(region, environment)
        [old_instance] = runner.desired_instance_ids()
        region.ingress_api.in_flight[old_address] = 2  # never answered

        deployment = (await region.request(region.rollout(environment, "app:v2"))).deployment_id
        finished = await region.events.finished(deployment)
        assert finished.success, finished.error
        await eventually(lambda: old_instance not in runner.desired_instance_ids(),
                         what="the old instance removed from its runner")

    log = log_of(region, deployment)
    assert "Finalizing: waiting for 2 request(s) in flight to the old instance(s), at most 1s" in log
    assert ("Finalizing: drain ended at the 1s grace with 2 request(s) still in flight, which stopping "
            "the old instance(s) cuts off") in log
    assert "Finalizing: stopped 1 old instance(s)" in log


@pytest.mark.parametrize("failure", ["refuses connections", "answers 503"])
async def test_an_ingress_that_cannot_be_asked_makes_the_drain_last_the_whole_grace(region, failure):
    environment = uuid4()
    if failure == "refuses connections":
        unanswering = f"http://127.0.0.1:{free_port()}"
    else:
        broken = await region.ingress_api_double()
        broken.answering = False
        unanswering = broken.url
    settings = region.settings(ingress_urls=[region.ingress_api.url, unanswering], drain_grace_seconds=1)

    async with region.controller(settings):
        runner, _, _ = await serve_first_release(region, environment)
        [old_instance] = runner.desired_instance_ids()

        deployment = (await region.request(region.rollout(environment, "app:v2"))).deployment_id
        finished = await region.events.finished(deployment)
        assert finished.success, finished.error
        await eventually(lambda: old_instance not in runner.desired_instance_ids(),
                         what="the old instance removed from its runner")

    log = log_of(region, deployment)
    [unasked] = [line for line in log if line.startswith(f"Finalizing: ingress {unanswering} could not be asked")]
    assert ("(HTTP 503)" if failure == "answers 503" else "(ConnectError") in unasked
    # The answering ingress is asked too, with the grace's last half second at the least: on a
    # loaded machine (this test's process runs the controller and both ingresses' doubles on one
    # event loop) that ask can time out as well, and then both are counted, as they should be.
    [ended] = [line for line in log if line.startswith("Finalizing: drain ended at the 1s grace; ")]
    assert ended in (f"Finalizing: drain ended at the 1s grace; {n} ingress(es) could not say what was in flight"
                     for n in (1, 2))
    assert "Finalizing: stopped 1 old instance(s)" in log


async def test_an_ingress_that_answers_again_ends_the_drain_before_the_grace(region):
    environment = uuid4()
    region.ingress_api.answering = False

    async with region.controller(region.settings(drain_grace_seconds=60)):
        runner, _, _ = await serve_first_release(region, environment)
        deployment = (await region.request(region.rollout(environment, "app:v2"))).deployment_id
        await eventually(lambda: logged(region, deployment, f"Finalizing: ingress {region.ingress_api.url} "
                                                            "could not be asked what is in flight (HTTP 503)"),
                         what="the unanswered ingress logged")
        assert not region.events.of(RolloutFinished, deployment)

        region.ingress_api.answering = True
        finished = await region.events.finished(deployment)
        assert finished.success, finished.error

    assert logged(region, deployment, "Finalizing: old instance(s) drained in")
