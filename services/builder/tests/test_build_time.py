"""How long the builder worked on a build, as BuildFinished tells the control panel (the build
minutes it meters): within what the test measures around the build, for failed builds too."""
import time

SLEEP = 2.0  # a step that sleeps this long: the build cannot take less


async def _build(publish, events, request) -> tuple[object, float]:
    """The build's BuildFinished and the most it can have taken (from its request to its end heard)."""
    sent = time.monotonic()
    await publish(request)
    finished = await events.finished(request.deployment_id)
    return finished, time.monotonic() - sent


async def test_a_build_reports_the_time_it_took(builder, publish, build_request, app_files, events, make_repository,
                                                base_image):
    repository = make_repository(app_files(f"FROM {base_image}\nRUN sleep {SLEEP}\nEXPOSE 8000\n"))

    built, at_most = await _build(publish, events, build_request(repository, "FORCE"))

    assert built.success, events.log(built.deployment_id)
    assert SLEEP <= built.build_seconds <= at_most

    # The same commit again: the image is reused, which takes a moment, not the build's time.
    reused, at_most = await _build(publish, events, build_request(repository, "AUTO"))
    assert reused.reused
    assert 0 <= reused.build_seconds <= min(at_most, SLEEP)


async def test_a_failed_build_reports_the_time_it_took_too(builder, publish, build_request, app_files, events,
                                                           make_repository, base_image):
    repository = make_repository(app_files(f"FROM {base_image}\nRUN sleep {SLEEP} && false\n"))

    failed, at_most = await _build(publish, events, build_request(repository))

    assert not failed.success
    assert SLEEP <= failed.build_seconds <= at_most
