"""Watches the region's runner-state bucket: every heartbeat feeds the registry at once, and
refreshes the runner's row and moves the instances it reports forward in the database with
the other heartbeats of the moment, in one transaction."""
import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from regio_common.bus import runner_state_bucket
from regio_common.messages import EnvironmentEvent, utcnow
from regio_common.outbox import Outbox
from regio_common.runners import ContainerState, ObservedInstance, RunnerHeartbeat

from ..db import repository
from ..domain.states import InstanceState, RunnerState
from .registry import RunnerRegistry

log = logging.getLogger(__name__)

_DELETED = ("DEL", "PURGE")
WRITE_ATTEMPTS = 3
MAX_BATCH = 2000  # runners' heartbeats held for one flush before the watch waits for it


def observed_state(instance: ObservedInstance) -> InstanceState | None:
    """What a reported container means for its instance; None: nothing the heartbeat decides."""
    if instance.state == ContainerState.STARTING:
        return InstanceState.STARTING
    if instance.state == ContainerState.RUNNING and instance.address:
        return InstanceState.RUNNING
    return None  # exits and stops are judged by the rollout that waits on the instance


def restart_event(runner: str, instance: ObservedInstance) -> EnvironmentEvent:
    why = f" after {instance.last_exit}" if instance.last_exit else ""
    return EnvironmentEvent(environment_id=instance.environment_id, instance_id=instance.instance_id,
                            reason="restarted",
                            message=f"instance {instance.instance_id} restarted on runner {runner}{why} "
                                    f"(restart {instance.restarts})")


class HeartbeatWatcher:
    def __init__(self, js: JetStreamContext, sessions: async_sessionmaker[AsyncSession], registry: RunnerRegistry,
                 region: str, outbox: Outbox,
                 on_back: Callable[[list[ObservedInstance]], None] | None = None):
        self.js = js
        # Told of instances running again after a restart, which may be at a new address.
        self.on_back = on_back
        self.outbox = outbox
        self.sessions = sessions
        self.registry = registry
        self.region = region
        self._batch = HeartbeatBatch()
        self._flusher: asyncio.Task | None = None

    async def run(self) -> None:
        bucket = await self.js.key_value(runner_state_bucket(self.region))
        watcher = await bucket.watchall()
        # Runners heartbeat every few seconds: a watch silent for this long while runners
        # are known has broken, and is restarted (by raising to the supervisor).
        stall_seconds = max(10.0, 3 * self.registry.lost_after.total_seconds())
        try:
            while True:
                try:
                    async with asyncio.timeout(stall_seconds):
                        entry = await anext(watcher)
                except TimeoutError:
                    if self.registry.known():
                        raise RuntimeError(f"no heartbeat for {stall_seconds:g}s: restarting the watch")
                    continue
                except StopAsyncIteration:
                    raise RuntimeError("heartbeat watch stopped")
                if entry is None:  # end of the values already stored
                    self.registry.caught_up = True
                    continue
                if entry.operation in _DELETED:
                    self.registry.forget(entry.key)
                    continue
                try:
                    heartbeat = RunnerHeartbeat.model_validate_json(entry.value)
                except ValidationError as e:
                    log.warning("runner %s: unreadable heartbeat: %s", entry.key, e)
                    continue
                # The server's time of the write, not ours: a heartbeat replayed after a
                # controller restart must not make a dead runner look alive.
                seen_at = entry.created if isinstance(entry.created, datetime) else utcnow()
                await self.observe(heartbeat, seen_at)
        finally:
            if self._flusher is not None:
                self._flusher.cancel()
            await watcher.stop()

    async def observe(self, heartbeat: RunnerHeartbeat, seen_at: datetime) -> None:
        """Takes a heartbeat into the registry at once; its database writes join the next batch."""
        # Restarts the registry saw counted lower: after a controller restart it knows none,
        # so restarts from before are never told twice.
        restarted = [i for i in heartbeat.instances
                     if (before := self.registry.observed(i.instance_id)) is not None and i.restarts > before.restarts]
        changed = self.registry.record(heartbeat, seen_at)
        self._batch.add(heartbeat, seen_at, changed, restarted, self.registry.lost_after)
        back = [i for i in changed if i.restarts and i.state == ContainerState.RUNNING and i.address]
        if back and self.on_back is not None:
            self.on_back(back)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="heartbeat writes")
        if len(self._batch) >= MAX_BATCH:
            await self._flusher  # back-pressure: the watch waits rather than piling up

    async def _flush(self) -> None:
        """Writes what the heartbeats since the last flush changed, in one transaction, until
        none are left. At a thousand runners that is a few transactions a second, not a
        thousand; a heartbeat waits at most one flush before its runner's row shows it."""
        while self._batch:
            batch, self._batch = self._batch, HeartbeatBatch()
            try:
                for attempt in range(WRITE_ATTEMPTS):
                    try:
                        async with self.sessions() as session, session.begin():
                            await batch.write(session, self.outbox)
                        break
                    except DBAPIError as e:
                        # A rollout moving the same instances may deadlock with the batch; the
                        # batch is idempotent, so it is simply written again.
                        if "deadlock" not in str(e) or attempt == WRITE_ATTEMPTS - 1:
                            raise
                        log.info("heartbeat batch deadlocked with another transaction; writing it again")
            except asyncio.CancelledError:
                raise
            except Exception:
                # Not stored: forgetting the runners makes their next heartbeats count as all new.
                log.exception("heartbeats of %d runner(s) not stored; their next ones are taken whole", len(batch))
                for runner in batch.runners:
                    self.registry.forget(runner)


class HeartbeatBatch:
    """What heartbeats since the last flush change in the database: each runner's row (its
    latest heartbeat), instances seen starting or running, and restarts to tell."""

    def __init__(self):
        self.runners: dict[str, tuple[RunnerHeartbeat, datetime, RunnerState]] = {}
        self.instances: dict[UUID, tuple[InstanceState, str | None]] = {}
        self.events: list[EnvironmentEvent] = []

    def __len__(self) -> int:
        return len(self.runners)

    def add(self, heartbeat: RunnerHeartbeat, seen_at: datetime, changed: list[ObservedInstance],
            restarted: list[ObservedInstance], lost_after: timedelta) -> None:
        fresh = utcnow() - seen_at <= lost_after
        self.runners[heartbeat.runner] = (heartbeat, seen_at, RunnerState.READY if fresh else RunnerState.LOST)
        for instance in changed:
            target = observed_state(instance)
            if target is not None:
                self.instances[instance.instance_id] = (target, instance.address)
        self.events += [restart_event(heartbeat.runner, i) for i in restarted]

    async def write(self, session: AsyncSession, outbox: Outbox) -> None:
        await repository.upsert_runners(session, list(self.runners.values()))
        await repository.observe_instances(session, self.instances)
        for event in self.events:
            await outbox.add(session, event)
