"""The runner agent's loops: watch the desired state, reconcile the host's containers
against it, and heartbeat the full observed state. Instances are reconciled here; one-off
jobs (release commands) by the job runner (jobs.py), in the same pass.

Level-triggered: every pass reads the whole desired state and observes every
container, whether woken by a desired-state update, a finished action, or the
heartbeat interval. A missed update is healed by the next pass. Actions run as
their own tasks (one at a time per instance) on threads of their own, so a slow start
or a graceful stop never holds up the heartbeat or the other instances."""
import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

from cryptography.fernet import InvalidToken
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common import bus
from regio_common.outbox import Outbox
from regio_common.runners import (
    ContainerState,
    DesiredInstance,
    ObservedInstance,
    RunnerDesired,
    RunnerHeartbeat,
)
from regio_common.sealing import open_sealed

from .db import repository
from .db.repository import ContainerRecord
from .docker_engine import Container, DockerEngine
from .jobs import JobRunner
from .log_shipper import LogShipper
from .metering import Meter
from .reconcile import Action, Backoff, Pacing, Remove, Run, Start, plan
from .settings import Settings

log = logging.getLogger(__name__)

# A graceful stop holds its thread for up to the grace period, a start for a second or so: on
# the few threads asyncio lends by default, a handful of stops would hold up every pass (and
# with it the heartbeat and every start) until they end.
ACTION_THREADS = 64


class Agent:
    def __init__(self, settings: Settings, engine: DockerEngine, js: JetStreamContext,
                 sessions: async_sessionmaker[AsyncSession], shipper: LogShipper, outbox: Outbox,
                 actions: ThreadPoolExecutor | None = None):
        """``actions``: the threads engine calls of actions run on; by default the agent's own.
        (A fleet of hollow agents shares one.)"""
        self.settings = settings
        self.engine = engine
        self.shipper = shipper
        self.jobs = JobRunner(settings, engine, sessions, outbox, self.poke)
        # A hollow runner runs nothing, so there is nothing to meter (and nothing to sell).
        self.meter = None if settings.hollow else Meter(settings.name, settings.meter_period_seconds, sessions,
                                                        outbox)
        self.js = js
        self.sessions = sessions
        self.heartbeat: RunnerHeartbeat | None = None  # the last one sent: what /internal/v1/instances serves
        self.labels = heartbeat_labels(settings)
        self._desired_kv: KeyValue | None = None
        self._state_kv: KeyValue | None = None
        self._wake = asyncio.Event()
        self._busy: dict[str, asyncio.Task] = {}  # key -> the action running for it
        self._own_actions = actions is None
        self._actions = actions or ThreadPoolExecutor(ACTION_THREADS, thread_name_prefix="action")
        self._removing: set[str] = set()
        self._last_started: dict[str, float] = {}  # key -> its last start (or run), to pace failing first starts
        self._pacing: dict[str, Pacing] = {}  # key -> its crash loop, to pace restarts
        self._restarts: dict[str, int] = {}
        self._last_exit: dict[str, str] = {}  # key -> how its last run ended
        self._saved: dict[UUID, ContainerRecord] = {}  # what the containers table holds of this runner
        self._network_ready = False

    @property
    def name(self) -> str:
        return self.settings.name

    async def prepare(self) -> None:
        """Before the loops start: buckets, the app network, and what the last agent recorded."""
        await bus.ensure_buckets(self.js, self.settings.region)
        self.use_buckets(await self.js.key_value(bus.runner_desired_bucket(self.settings.region)),
                         await self.js.key_value(bus.runner_state_bucket(self.settings.region)))
        await self.load_records()
        if self.meter is not None:
            await self.meter.load()
        last = await self._last_heartbeat()
        if last is not None:
            self.shipper.recall(last.shipped)
        await self.jobs.prepare()
        if not self.settings.region_key:
            log.warning("REGIO_RUNNER_REGION_KEY is not set: instances cannot be started")

    def use_buckets(self, desired: KeyValue, state: KeyValue) -> None:
        self._desired_kv = desired
        self._state_kv = state

    async def load_records(self) -> None:
        """What the last agent of this runner recorded: restart counts and last exits go on."""
        async with self.sessions() as session:
            records = await repository.load(session, self.name)
        self._saved = {r.instance_id: r for r in records}
        self._restarts = {str(r.instance_id): r.restarts for r in records}
        self._last_exit = {str(r.instance_id): r.last_exit for r in records if r.last_exit}

    def poke(self) -> None:
        """Run a pass now rather than at the next interval."""
        self._wake.set()

    # --- loops ------------------------------------------------------------------

    async def watch_desired(self) -> None:
        """Wake a pass on every write to this runner's desired state. The pass reads the
        value itself, so a wake-up missed or repeated does no harm.

        A plain subscription to its key's subject, which every write (put, delete) of the key
        is published on: a KV watch needs a consumer on the bucket, whose filter a runner's
        NATS user may not choose (nats_auth). The client renews it after a reconnect."""
        subject = f"$KV.{bus.runner_desired_bucket(self.settings.region)}.{self.name}"
        sub = await self.js._nc.subscribe(subject)  # the JetStream context's own connection
        try:
            self.poke()  # for what was written before
            async for _msg in sub.messages:
                self.poke()
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may already be gone at shutdown
                pass

    async def run(self) -> None:
        """Reconcile and heartbeat every interval, or sooner when poked."""
        try:
            while True:
                self._wake.clear()
                try:
                    await self.sync()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reconcile pass failed; retrying at the next interval")
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.heartbeat_seconds)
                except TimeoutError:
                    pass
        finally:
            # Running actions are left to finish in their threads; their containers are
            # adopted by the next agent. Containers are never stopped because the agent stops.
            for task in self._busy.values():
                task.cancel()
            if self._own_actions:
                self._actions.shutdown(wait=False)
            self.jobs.stop()

    async def sync(self) -> None:
        """One pass: read desired, observe, act, record, heartbeat."""
        if not self._network_ready:
            # Here rather than at startup, so an engine that is down at first only delays this.
            await asyncio.to_thread(self.engine.ensure_network)
            self._network_ready = True
        desired = await self._read_desired()
        starting = set(self._busy) - self._removing  # being started: their inspect would wait for it
        seen_at = datetime.now(UTC)  # a container listed running ran at least until then
        containers = await asyncio.to_thread(self.engine.list, starting)
        observed = [c for c in containers if not c.is_job]
        jobs = self.jobs.sync(desired.jobs if desired is not None else None, [c for c in containers if c.is_job])
        for container in observed:
            if container.exit_summary is not None:
                self._last_exit[container.key] = container.exit_summary
        if self.meter is not None:
            try:
                await self.meter.observe(observed, seen_at)
            except Exception:
                # The runs stay where they were metered until; the next pass meters them on.
                log.exception("could not meter the instances; retrying at the next pass")
        now = time.monotonic()
        actions = plan(
            desired.instances if desired is not None else None,
            observed,
            busy=self._busy.keys(),
            last_started=self._last_started,
            pacing=self._pacing,
            now=now,
        )
        # The shipper first: it follows an exit to its line in the log before a restart is announced.
        self.shipper.observe(observed)
        for action in actions:
            self._dispatch(action, now)
        self._forget_gone(desired, observed)
        instances = [self._observed(c) for c in observed]
        instances = [i for i in instances if i is not None]
        try:
            # Before the heartbeat, so a restart count once reported survives an agent restart.
            await self._record(instances)
        except Exception:
            # The controller must hear from this runner even while Postgres is away.
            log.exception("could not record the containers; retrying at the next pass")
        heartbeat = RunnerHeartbeat(
            runner=self.name,
            address=self.settings.address,
            memory_mb=self.settings.memory_mb,
            cpus=self.settings.cpus,
            labels=self.labels,
            desired_revision=desired.revision if desired is not None else 0,
            instances=instances,
            jobs=jobs,
            shipped=self.shipper.shipped(),
        )
        await self._state_kv.put(self.name, heartbeat.model_dump_json().encode())
        self.heartbeat = heartbeat

    async def say_shipped(self) -> None:
        """After the shipper stopped: the last heartbeat again, with how far each instance's
        lines were shipped, for the next agent of this runner to go on from."""
        if self.heartbeat is None:
            return
        last = self.heartbeat.model_copy(update={"shipped": self.shipper.shipped()})
        await self._state_kv.put(self.name, last.model_dump_json().encode())

    # --- reading and reporting --------------------------------------------------

    async def _last_heartbeat(self) -> RunnerHeartbeat | None:
        """This runner's last heartbeat, as its previous agent left it."""
        try:
            entry = await self._state_kv.get(self.name)
        except KeyNotFoundError:
            return None
        try:
            return RunnerHeartbeat.model_validate_json(entry.value)
        except ValueError:
            return None

    async def _read_desired(self) -> RunnerDesired | None:
        """The controller's desired state for this runner; None if it has never written one.
        A deleted key means the controller wants nothing here."""
        try:
            entry = await self._desired_kv.get(self.name)
        except KeyNotFoundError as e:
            if e.op in (KV_DEL, KV_PURGE):
                revision = e.entry.revision if e.entry is not None else 0
                return RunnerDesired(runner=self.name, revision=revision or 0)
            return None
        return RunnerDesired.model_validate_json(entry.value)

    def _observed(self, container: Container) -> ObservedInstance | None:
        if not (container.instance_id and container.environment_id and container.release_id):
            return None  # labelled for this runner by hand; removed, never reported
        key = container.key
        state = container.state
        if key in self._removing:
            state = ContainerState.STOPPING
        elif key in self._busy and state != ContainerState.RUNNING:
            state = ContainerState.STARTING
        elif state == ContainerState.RUNNING and container.started_at is None:
            # Described from the engine's list because its start was under way when the pass
            # began (see DockerEngine.list): the start may have just ended, but the run is not
            # known (nor when it began) until the next pass inspects it, which the start's end pokes.
            state = ContainerState.STARTING
        running = state == ContainerState.RUNNING and container.host_port
        # Built from the engine's typed description, so not validated again: that was most of
        # the cost of a pass (see regio_runner.hollow_fleet, which runs a thousand agents).
        return ObservedInstance.model_construct(
            instance_id=container.instance_id,
            environment_id=container.environment_id,
            release_id=container.release_id,
            container_id=container.container_id,
            state=state,
            address=f"{self.settings.address}:{container.host_port}" if running else None,
            restarts=self._restarts.get(key, 0),
            exit_code=container.exit_code if state == ContainerState.EXITED else None,
            started_at=container.started_at,
            last_exit=self._last_exit.get(key),
        )

    def _forget_gone(self, desired: RunnerDesired | None, observed: list[Container]) -> None:
        """Drop restart counts, pacing and last exits of instances that are neither wanted nor here."""
        keep = {c.key for c in observed} | set(self._busy)
        if desired is not None:
            keep |= {str(i.instance_id) for i in desired.instances}
        else:
            keep |= set(self._restarts) | set(self._last_exit)  # nothing is known to be unwanted yet
        for table in (self._restarts, self._last_started, self._pacing, self._last_exit):
            for key in [k for k in table if k not in keep]:
                del table[key]

    async def _record(self, instances: list[ObservedInstance]) -> None:
        """Keep the containers table equal to what this pass observed; write only changes."""
        current = {
            i.instance_id: ContainerRecord(i.instance_id, i.container_id, i.environment_id, i.release_id,
                                           i.state.value, i.restarts, i.last_exit)
            for i in instances
        }
        changed = [r for k, r in current.items() if self._saved.get(k) != r]
        gone = [k for k in self._saved if k not in current]
        if not changed and not gone:
            return
        async with self.sessions() as session, session.begin():
            await repository.save(session, self.name, changed)
            await repository.forget(session, self.name, gone)
        self._saved = current

    # --- acting -----------------------------------------------------------------

    def _dispatch(self, action: Action, now: float) -> None:
        key = action.key
        if isinstance(action, Backoff):
            # Nothing to run yet: the Start is planned once the delay is over.
            self._pacing[key] = action.pacing
            restart = self._restarts.get(key, 0) + 1
            log.info("instance %s exited (%s); restarting it in %gs (restart %d)", key,
                     action.container.exit_summary or "exited", action.delay, restart)
            self.shipper.restarting(action.container, action.delay, restart)
            return
        if isinstance(action, (Run, Start)):
            self._last_started[key] = now
            if isinstance(action, Start) and action.restart:
                self._pacing[key] = self._pacing.get(key, Pacing()).restarted()
        else:
            self._removing.add(key)
        task = asyncio.create_task(self._execute(action), name=f"{type(action).__name__.lower()} {key}")
        self._busy[key] = task

        def done(t: asyncio.Task) -> None:
            if self._busy.get(key) is t:
                del self._busy[key]
            self._removing.discard(key)
            self.poke()  # observe and heartbeat the change right away

        task.add_done_callback(done)

    async def _execute(self, action: Action) -> None:
        try:
            if isinstance(action, Run):
                await self._run(action.instance)
            elif isinstance(action, Start):
                if action.restart:
                    await self._end_run(action.container_id)
                await self._in_thread(self.engine.start, action.container_id)
                if action.restart:
                    self._restarts[action.key] = self._restarts.get(action.key, 0) + 1
                log.info("%s instance %s (container %s)", "restarted" if action.restart else "started",
                         action.key, action.container_id[:12])
            elif isinstance(action, Remove):
                self.shipper.stopping(action.container_id)
                if self.meter is None:
                    await self._in_thread(self.engine.stop_and_remove, action.container_id,
                                          self.settings.stop_grace_seconds)
                else:
                    await self._in_thread(self.engine.stop, action.container_id, self.settings.stop_grace_seconds)
                    await self._end_run(action.container_id)
                    await self._in_thread(self.engine.remove, action.container_id)
                log.info("stopped and removed container %s (instance %s)", action.container_id[:12],
                         action.instance_id)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # The next pass plans the action again (after the backoff for starts).
            log.warning("%s of %s failed: %s", type(action).__name__, action.key, e)

    async def _end_run(self, container_id: str) -> None:
        """Before an exited container is started again or removed: its run's end, from Docker's
        FinishedAt, is metered. Raises if that could not be written, so the action waits for the next pass."""
        if self.meter is None:
            return
        container = await self._in_thread(self.engine.inspect, container_id)
        if container is not None:
            await self.meter.end_run(container)

    async def _run(self, instance: DesiredInstance) -> None:
        try:
            env = open_sealed(self.settings.region_key, instance.sealed_env)
        except (InvalidToken, ValueError):
            # Never log the sealed text or the key: only that this release cannot be opened here.
            log.error("cannot open the environment of release %s with this region's key", instance.release_id)
            return
        container_id = await self._in_thread(self.engine.run, instance, env)
        log.info("started instance %s of release %s (container %s)", instance.instance_id,
                 instance.release_id, container_id[:12])

    async def _in_thread(self, call: Callable, *args):
        """A blocking engine call of an action, on the actions' own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._actions, partial(call, *args))


def heartbeat_labels(settings: Settings) -> dict[str, str]:
    """The configured placement labels, and always the region this runner heartbeats in (the
    controller places only on runners of its own region); a hollow runner says it is one."""
    labels = {**settings.labels, "region": settings.region}
    if settings.hollow:
        labels["hollow"] = "true"
    return labels
