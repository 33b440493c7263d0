"""Each region's health, as its services' heartbeats tell it: builder, controller and ingress
publish a ``ComponentStatus`` every few seconds (core NATS, ``region.<r>.status.<service>``),
and the control panel keeps the newest of each in memory. Nothing is stored: after a restart
a region is offline until it is heard again, a few seconds later."""
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from regio_common.region_status import ComponentStatus, received

log = logging.getLogger(__name__)

BUILDER, CONTROLLER, INGRESS = "builder", "controller", "ingress"
COMPONENTS = (BUILDER, CONTROLLER, INGRESS)
ONLINE, DEGRADED, OFFLINE = "online", "degraded", "offline"
# Subjects are limited to the regions' own by NATS permissions; this only bounds what a
# misconfigured permission could make us hold.
MAX_REGIONS = 10_000


@dataclass(frozen=True)
class RegionState:
    state: str  # online | degraded | offline
    runners: int = 0
    runners_ready: int = 0
    memory_mb_free: int = 0
    components: dict[str, datetime] = field(default_factory=dict)  # component -> when last heard


@dataclass(frozen=True)
class _Heard:
    status: ComponentStatus
    at: datetime  # by our clock: a sender's sent_at could claim any time


def _count(details: dict, key: str) -> int:
    value = details.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class RegionHealth:
    def __init__(self, status_seconds: float = 5, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.window = timedelta(seconds=3 * status_seconds)
        # A component says how it is every status_seconds: more often is a region flooding the
        # control panel's connection, whose messages are dropped before they cost a parse.
        self.gap = timedelta(seconds=status_seconds / 2)
        self.clock = clock
        self._heard: dict[str, dict[str, _Heard]] = {}
        self._last_read: dict[tuple[str, str], datetime] = {}

    def record(self, subject: str, data: bytes) -> bool:
        """Keeps a status heard on ``subject``; False (and nothing kept) for one that is not a
        status of that subject's region and component (a forgery, or a mistake: each service
        may publish only its own region's subject, but says in the body which it is), and for
        one that came sooner after the last of its subject than a component sends them."""
        tokens = subject.split(".")
        if len(tokens) != 4 or tokens[3] not in COMPONENTS:
            return False
        now, key = self.clock(), (tokens[1], tokens[3])
        last = self._last_read.get(key)
        if last is not None and now - last < self.gap:
            return False
        if last is None and len(self._last_read) >= MAX_REGIONS * len(COMPONENTS):
            return False
        self._last_read[key] = now
        status = received(subject, data)
        if status is None or status.component not in COMPONENTS:
            return False
        if status.region not in self._heard and len(self._heard) >= MAX_REGIONS:
            return False
        self._heard.setdefault(status.region, {})[status.component] = _Heard(status, self.clock())
        return True

    async def on_message(self, msg) -> None:
        """The subscription's callback: never raises, whatever arrives."""
        try:
            if not self.record(msg.subject, msg.data):
                log.debug("status on %s ignored", msg.subject)
        except Exception:
            log.exception("status on %s could not be read", msg.subject)

    def state_of(self, slug: str) -> RegionState:
        heard = self._heard.get(slug, {})
        since = self.clock() - self.window
        fresh = {name: h for name, h in heard.items() if h.at >= since}
        components = {name: h.at for name, h in heard.items()}
        if not fresh:
            return RegionState(OFFLINE, components=components)
        controller = fresh.get(CONTROLLER)
        details = controller.status.details if controller is not None else {}
        runners, ready, free = _count(details, "runners"), _count(details, "runners_ready"), \
            _count(details, "memory_mb_free")
        all_ready = all(name in fresh and fresh[name].status.ready for name in COMPONENTS)
        state = ONLINE if all_ready and ready > 0 else DEGRADED
        return RegionState(state, runners, ready, free, components)
