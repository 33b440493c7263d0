"""Watches the region's runner-state bucket: every heartbeat refreshes the runner's row,
feeds the registry, and moves the instances it reports forward in the database."""
import asyncio
import logging
from datetime import datetime

from nats.js import JetStreamContext
from pydantic import ValidationError
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
                 region: str, outbox: Outbox):
        self.js = js
        self.outbox = outbox
        self.sessions = sessions
        self.registry = registry
        self.region = region

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
            await watcher.stop()

    async def observe(self, heartbeat: RunnerHeartbeat, seen_at: datetime) -> None:
        # Restarts the registry saw counted lower: after a controller restart it knows none,
        # so restarts from before are never told twice.
        restarted = [i for i in heartbeat.instances
                     if (before := self.registry.observed(i.instance_id)) is not None and i.restarts > before.restarts]
        changed = self.registry.record(heartbeat, seen_at)
        fresh = utcnow() - seen_at <= self.registry.lost_after
        try:
            async with self.sessions() as session, session.begin():
                await repository.upsert_runner(session, heartbeat, seen_at,
                                               RunnerState.READY if fresh else RunnerState.LOST)
                for instance in changed:
                    target = observed_state(instance)
                    if target is not None:
                        await repository.observe_instance(session, instance.instance_id, target,
                                                          instance.address)
                for instance in restarted:
                    await self.outbox.add(session, restart_event(heartbeat.runner, instance))
        except Exception:
            # Not stored: forgetting the runner makes its next heartbeat count as all new.
            self.registry.forget(heartbeat.runner)
            raise
