"""A region's state as its services' heartbeats make it (services/region_health.py), on a
clock the test moves. The same from real heartbeats over NATS: test_region_links.py."""
from datetime import UTC, datetime, timedelta

from regio_common.region_status import ComponentStatus
from regio_controlpanel.services import region_health
from regio_controlpanel.services.region_health import RegionHealth

START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
RUNNERS = {"runners": 3, "runners_ready": 2, "memory_mb": 6144, "memory_mb_free": 4000}


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def heard(health: RegionHealth, region: str, component: str, ready: bool = True, subject_region: str | None = None,
          **details) -> bool:
    status = ComponentStatus(region=region, component=component, ready=ready, details=details)
    return health.record(f"region.{subject_region or region}.status.{component}", status.encode())


def all_heard(health: RegionHealth, region: str = "eu") -> None:
    heard(health, region, "builder")
    heard(health, region, "controller", **RUNNERS)
    heard(health, region, "ingress")


def test_a_region_is_online_when_its_services_are_ready_and_a_runner_is():
    health = RegionHealth(status_seconds=5, clock=Clock())
    all_heard(health)

    state = health.state_of("eu")

    assert state.state == "online"
    assert (state.runners, state.runners_ready, state.memory_mb_free) == (3, 2, 4000)
    assert state.components == {"builder": START, "controller": START, "ingress": START}


def test_a_region_missing_a_service_a_ready_one_or_a_ready_runner_is_degraded():
    clock = Clock()
    health = RegionHealth(status_seconds=5, clock=clock)
    heard(health, "eu", "builder")
    heard(health, "eu", "controller", **RUNNERS)
    assert health.state_of("eu").state == "degraded"  # no ingress heard

    heard(health, "eu", "ingress", ready=False)
    assert health.state_of("eu").state == "degraded"

    clock.now += timedelta(seconds=5)  # the next heartbeats
    heard(health, "eu", "ingress")
    heard(health, "eu", "controller", **{**RUNNERS, "runners_ready": 0})
    assert health.state_of("eu").state == "degraded"


def test_a_region_not_heard_for_three_intervals_is_offline():
    clock = Clock()
    health = RegionHealth(status_seconds=5, clock=clock)
    assert health.state_of("eu").state == "offline"  # never heard
    all_heard(health)

    clock.now = START + timedelta(seconds=15)
    assert health.state_of("eu").state == "online"
    clock.now = START + timedelta(seconds=14)
    heard(health, "eu", "builder")
    clock.now = START + timedelta(seconds=16)
    state = health.state_of("eu")
    assert state.state == "degraded" and state.runners == 0  # the controller's figures are old
    clock.now = START + timedelta(seconds=30)
    state = health.state_of("eu")
    assert state.state == "offline" and state.components["builder"] == START + timedelta(seconds=14)


def test_a_status_naming_another_region_or_component_than_its_subject_counts_for_none():
    health = RegionHealth(status_seconds=5, clock=Clock())
    # A service of "rogue" may publish only on rogue's subjects, but writes "eu" in the body.
    assert not heard(health, "eu", "builder", subject_region="rogue")
    assert not heard(health, "eu", "controller", subject_region="rogue", **RUNNERS)
    status = ComponentStatus(region="eu", component="controller", ready=True, details=RUNNERS)
    assert not health.record("region.eu.status.builder", status.encode())
    assert health.state_of("eu").state == "offline" and health.state_of("rogue").state == "offline"


def test_what_is_not_a_status_is_ignored_without_raising():
    clock = Clock()
    health = RegionHealth(status_seconds=5, clock=clock)
    for subject, data in [
        ("region.eu.status.builder", b"not json"),
        ("region.eu.status.builder", b'{"region": "eu"}'),
        ("region.eu.status.builder", b'{"region": "eu", "component": "builder", "ready": true, "details": {"x": "'
         + b"a" * 5000 + b'"}}'),
        ("region.eu.status.builder", b"{" * 100_000),
        ("region.eu.status.runner-1", ComponentStatus(region="eu", component="runner-1", ready=True).encode()),
        ("region.eu.status", b"{}"),
    ]:
        clock.now += timedelta(seconds=5)  # each read, not dropped as too soon after the last
        assert not health.record(subject, data)
    # The controller's figures are trusted only as counts.
    heard(health, "eu", "controller", runners="many", runners_ready=-4, memory_mb_free=True)
    state = health.state_of("eu")
    assert (state.runners, state.runners_ready, state.memory_mb_free) == (0, 0, 0)


def test_a_flood_of_statuses_is_dropped_unread_and_the_next_heartbeat_counts(monkeypatch):
    """A region's own server may publish its status subjects as fast as it likes: what comes
    sooner than a component sends its heartbeats is dropped before it is parsed, so a flood
    costs the control panel a dictionary look-up a message, and nothing of another region."""
    clock = Clock()
    health = RegionHealth(status_seconds=5, clock=clock)
    all_heard(health, "eu")
    all_heard(health, "rogue")
    parsed = []
    monkeypatch.setattr(region_health, "received",
                        lambda subject, data, read=region_health.received: parsed.append(subject) or read(subject, data))
    for _ in range(10_000):
        assert not heard(health, "rogue", "controller", ready=False)
    assert parsed == []
    assert health.state_of("rogue").state == "online" and health.state_of("eu").state == "online"
    clock.now += timedelta(seconds=5)
    assert heard(health, "rogue", "controller", ready=False)  # its next heartbeat counts
    assert health.state_of("rogue").state == "degraded"
    for n in range(100):  # made-up components cost nothing either
        assert not health.record(f"region.rogue.status.made-up-{n}", b"{}")
    assert parsed == ["region.rogue.status.controller"]
