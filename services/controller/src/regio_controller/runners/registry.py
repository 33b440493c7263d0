"""In-memory table of the last heartbeat of every runner and the instances and jobs it reports.

Rebuilt from the state bucket within one heartbeat interval after a restart (the
bucket keeps each runner's last heartbeat), so it needs no persistence of its own."""
import asyncio
from datetime import datetime, timedelta
from uuid import UUID

from regio_common.messages import utcnow
from regio_common.runners import ObservedInstance, ObservedJob, RunnerHeartbeat


class RunnerRegistry:
    def __init__(self, lost_after: timedelta):
        self.lost_after = lost_after
        self._heartbeats: dict[str, tuple[RunnerHeartbeat, datetime]] = {}
        self._instances: dict[UUID, tuple[str, ObservedInstance]] = {}
        self._jobs: dict[UUID, tuple[str, ObservedJob]] = {}
        self._changed = asyncio.Event()
        self.caught_up = False  # has read the heartbeats stored before this controller started

    def record(self, heartbeat: RunnerHeartbeat, seen_at: datetime) -> list[ObservedInstance]:
        """Takes a heartbeat; returns the instances whose state or address it changed."""
        previous = self._heartbeats.get(heartbeat.runner)
        if previous is not None and previous[1] > seen_at:
            return []  # a replayed older heartbeat
        before = {i.instance_id: i for i in previous[0].instances} if previous else {}
        for instance_id in before:
            if self._instances.get(instance_id, ("",))[0] == heartbeat.runner:
                del self._instances[instance_id]
        for instance in heartbeat.instances:
            self._instances[instance.instance_id] = (heartbeat.runner, instance)
        if previous is not None:
            self._forget_jobs(heartbeat.runner, previous[0])
        for job in heartbeat.jobs:
            self._jobs[job.job_id] = (heartbeat.runner, job)
        self._heartbeats[heartbeat.runner] = (heartbeat, seen_at)
        self._notify()
        return [
            i for i in heartbeat.instances
            if (old := before.get(i.instance_id)) is None or (old.state, old.address) != (i.state, i.address)
        ]

    def forget(self, runner: str) -> None:
        previous = self._heartbeats.pop(runner, None)
        if previous is not None:
            for instance in previous[0].instances:
                if self._instances.get(instance.instance_id, ("",))[0] == runner:
                    del self._instances[instance.instance_id]
            self._forget_jobs(runner, previous[0])
        self._notify()

    def _forget_jobs(self, runner: str, heartbeat: RunnerHeartbeat) -> None:
        for job in heartbeat.jobs:
            if self._jobs.get(job.job_id, ("",))[0] == runner:
                del self._jobs[job.job_id]

    def acted_on(self, runner: str) -> int:
        """The desired revision the runner last said it acted on; 0 if it has not said."""
        found = self._heartbeats.get(runner)
        return found[0].desired_revision if found else 0

    def known(self) -> bool:
        return bool(self._heartbeats)

    def offered_memory(self) -> dict[str, int]:
        """Runner -> the memory its last heartbeat offers, for every runner known."""
        return {name: heartbeat.memory_mb for name, (heartbeat, _) in self._heartbeats.items()}

    def observed(self, instance_id: UUID) -> ObservedInstance | None:
        found = self._instances.get(instance_id)
        return found[1] if found else None

    def observed_job(self, job_id: UUID) -> ObservedJob | None:
        found = self._jobs.get(job_id)
        return found[1] if found else None

    def is_lost(self, runner: str, now: datetime | None = None) -> bool:
        found = self._heartbeats.get(runner)
        return found is None or (now or utcnow()) - found[1] > self.lost_after

    async def wait_for_change(self, timeout: float) -> None:
        """Returns at the next heartbeat, or after ``timeout`` seconds."""
        changed = self._changed
        try:
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            pass

    def _notify(self) -> None:
        # Every waiter holds the old event; a fresh one is armed for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
