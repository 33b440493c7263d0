"""A fleet of hollow runner agents in one process, for scale tests and benchmarks only:

    python -m regio_runner.hollow_fleet --count 1000 --name-prefix hollow- --memory-mb 16384 --heartbeat-seconds 5

Each agent is a whole runner agent (its own name, capacity, heartbeat, plans, records and
jobs) with a hollow engine (see hollow.py). The settings come from the agent's environment
(REGIO_RUNNER_*: DATABASE_URL, NATS_URL, REGION, REGION_KEY, ADDRESS, LABELS, ...); the flags
set what differs from one agent.

What a thousand agents share, so that each costs little more than its heartbeat:
- one NATS connection, and one watch of the whole desired bucket that wakes the agent whose
  key changed and keeps every agent's desired state in memory (a thousand watches would be a
  thousand consumers on the server, and each pass of each agent a read of the bucket);
- one database engine and outbox relay. The agents do write the runner schema, like real
  ones (their containers only when they change, their jobs): that is part of what a scale test
  should load, and the rows are scoped by runner name as with several real agents per host;
- one HTTP server that every hollow instance "publishes";
- a few threads for the agents' engine calls (a real agent keeps up to 64 of its own);
- no log shipping: hollow containers print nothing.
Heartbeats are staggered over the interval, so they do not all come at once, and passes take
turns (PASSES_AT_ONCE)."""
import argparse
import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from regio_common import bus
from regio_common.logging import configure_logging
from regio_common.runners import RunnerDesired
from regio_common.runtime import Runtime

from .agent import Agent
from .db.models import inbox, outbox
from .hollow import HollowEngine, HollowServer, HollowShipper
from .settings import Settings

log = logging.getLogger(__name__)

SERVICE = "hollow-fleet"
ACTION_THREADS = 8  # hollow engine calls return at once
LOADING_AT_ONCE = 10  # agents reading their records at start, within the engine's pool
# Passes under way at once. When a thousand agents start (or all their instances change at
# once), each has several passes to make, each with a write to the database and a heartbeat:
# all at once, they would wait out the database pool's and NATS' timeouts and try again, for
# minutes. Taking turns, they queue without a timeout and are through in seconds.
PASSES_AT_ONCE = 10


class FleetAgent(Agent):
    """A hollow agent of a fleet: its desired state comes from the fleet's one watch, and its
    passes take turns with the other agents'."""

    def __init__(self, fleet: "HollowFleet", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fleet = fleet

    async def sync(self) -> None:
        async with self._fleet.passes:
            await super().sync()

    async def _read_desired(self) -> RunnerDesired | None:
        return self._fleet.desired.get(self.name)


class HollowFleet:
    def __init__(self, settings: Settings, count: int, name_prefix: str = "hollow-"):
        self.settings = settings.model_copy(update={"hollow": True})
        self.names = [f"{name_prefix}{i}" for i in range(1, count + 1)]
        self.runtime = Runtime(SERVICE, self.settings, outbox, inbox)
        self.agents: dict[str, FleetAgent] = {}
        self.desired: dict[str, RunnerDesired] = {}  # runner -> its desired state, as the watch last saw it
        self.server: HollowServer | None = None
        self._actions = ThreadPoolExecutor(ACTION_THREADS, thread_name_prefix="hollow action")
        self._desired_kv: KeyValue | None = None
        self._watched = asyncio.Event()  # the watch has seen every value the bucket held
        self.passes = asyncio.Semaphore(PASSES_AT_ONCE)

    async def start(self) -> None:
        settings = self.settings
        await self.runtime.start()
        js = self.runtime.js
        await bus.ensure_buckets(js, settings.region)
        self._desired_kv = await js.key_value(bus.runner_desired_bucket(settings.region))
        state_kv = await js.key_value(bus.runner_state_bucket(settings.region))
        self.server = HollowServer(settings.address)
        shipper = HollowShipper()
        for name in self.names:
            agent_settings = settings.model_copy(update={"name": name})
            engine = HollowEngine(name, settings.address, settings.network, settings.scope, server=self.server)
            agent = FleetAgent(self, agent_settings, engine, js, self.runtime.sessions, shipper,
                               self.runtime.outbox, actions=self._actions)
            agent.use_buckets(self._desired_kv, state_kv)
            self.agents[name] = agent
        loading = asyncio.Semaphore(LOADING_AT_ONCE)

        async def load(agent: Agent) -> None:
            async with loading:
                await agent.load_records()

        await asyncio.gather(*(load(a) for a in self.agents.values()))
        if self.agents:
            await next(iter(self.agents.values())).jobs.prepare()  # prunes old jobs: once is enough
        self.runtime.spawn("desired-watch", self._watch_desired)
        await self._watched.wait()
        interval = settings.heartbeat_seconds
        for i, agent in enumerate(self.agents.values()):
            self.runtime.spawn(f"agent {agent.name}", self._staggered(agent, interval * i / len(self.agents)))
        log.warning("HOLLOW FLEET: %d hollow runners (%s … %s) of %d MB and %g CPUs each, heartbeat every %gs, "
                    "instances answering at http://%s:%d. For scale tests and benchmarks only.",
                    len(self.agents), self.names[0] if self.names else "-", self.names[-1] if self.names else "-",
                    settings.memory_mb, settings.cpus, interval, settings.address, self.server.port)

    async def stop(self) -> None:
        await self.runtime.stop()
        self._actions.shutdown(wait=False)
        if self.server is not None:
            self.server.close()

    @staticmethod
    def _staggered(agent: Agent, delay: float):
        async def run() -> None:
            await asyncio.sleep(delay)
            await agent.run()

        return run

    async def _watch_desired(self) -> None:
        """One watch over the whole desired bucket: keeps each runner's desired state, and wakes
        the agent of each key written."""
        while True:
            watcher = await self._desired_kv.watchall()
            try:
                async for entry in watcher:
                    if entry is None:  # the end of the values the bucket held
                        self._watched.set()
                        continue
                    self._take(entry)
            finally:
                try:
                    await watcher.stop()
                except Exception:  # the connection may already be gone at shutdown
                    pass
            await asyncio.sleep(1)

    def _take(self, entry: KeyValue.Entry) -> None:
        runner = entry.key
        if entry.operation in (KV_DEL, KV_PURGE):
            # A deleted key means the controller wants nothing on that runner.
            self.desired[runner] = RunnerDesired(runner=runner, revision=entry.revision or 0)
        else:
            try:
                self.desired[runner] = RunnerDesired.model_validate_json(entry.value)
            except ValidationError as e:
                log.error("the desired state of runner %s cannot be read: %s", runner, e)
                return
        agent = self.agents.get(runner)
        if agent is not None:
            agent.poke()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m regio_runner.hollow_fleet",
        description="Run N hollow runner agents in one process (scale tests and benchmarks only). "
                    "Other settings come from the runner agent's environment (REGIO_RUNNER_*).")
    parser.add_argument("--count", type=int, required=True, help="how many hollow runners")
    parser.add_argument("--name-prefix", default="hollow-", help="runner names are <prefix>1 … <prefix>N")
    parser.add_argument("--memory-mb", type=int, help="memory each runner offers (default: REGIO_RUNNER_MEMORY_MB)")
    parser.add_argument("--cpus", type=float, help="CPUs each runner offers (default: REGIO_RUNNER_CPUS)")
    parser.add_argument("--heartbeat-seconds", type=float,
                        help="each runner's pass and heartbeat interval (default: REGIO_RUNNER_HEARTBEAT_SECONDS)")
    args = parser.parse_args()
    overrides = {"memory_mb": args.memory_mb, "cpus": args.cpus, "heartbeat_seconds": args.heartbeat_seconds}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(_serve(HollowFleet(settings, args.count, args.name_prefix)))


async def _serve(fleet: HollowFleet) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await fleet.start()
        await stopping.wait()
        log.info("hollow fleet stopping")
    finally:
        await fleet.stop()


if __name__ == "__main__":
    main()
