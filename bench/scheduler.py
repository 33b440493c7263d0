"""How fast the controller places instances, on simulated (hollow) runners.

A real controller process, with its own database in the running region's Postgres and a
NATS server of its own, is given 1,000 hollow runners (runner agents that do everything
but start containers: regio_runner.hollow_fleet, for scale tests and benchmarks only) and
1,000 environments of 10 instances each, rolled out through the normal rollout pipeline.
Measured:

- placement: from the rollout requests until every instance is placed, until every one is
  reported running by its runner, and until every rollout has succeeded (health-checked
  and routed); placements per second;
- scaling: every environment doubled by EnvironmentScaled, so the healer places, starts,
  health-checks and routes the added instances without the rollout pipeline;
- re-placement: 100 runners killed at once (one fleet process of their own, SIGKILL), the
  time until their instances are replaced elsewhere and healthy again (this includes the
  lost-runner timeout, 10 s by default, which is reported apart).

Baseline, measured in the same run: the least any controller must write for the same
placements, done directly: the 10,000 instance rows in one INSERT and the 1,000 runners'
desired states into the KV bucket. The ratio says how far above that floor the pipeline is.

Stands in for the ingress: a small subscriber here acknowledges each route change at once
(RoutesApplied), since the proxy is not what is measured (bench/ingress.py measures it).

    .venv/bin/python bench/scheduler.py                       # needs ./regio up (for Postgres)
    .venv/bin/python bench/scheduler.py --runners 50 --environments 50 --lose 5   # quick
"""
import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from regio_common import bus, nats_auth
from regio_common.layout import Layout, default_state_dir
from regio_common.messages import (
    EnvironmentScaled,
    RolloutFinished,
    RolloutRequested,
    RoutesApplied,
    RoutesChanged,
    decode,
)
from regio_common.processes import cpu_seconds, wait_for_port
from regio_common.runners import RunnerDesired
from regio_common.sealing import new_key, seal
from regio_common.servers import PostgresCluster, nats_process
from regio_common.testing.plugin import free_port

ROOT = Path(__file__).resolve().parents[1]
REGION = "bench"
TOKEN = "bench-service-token"
MEMORY_MB = 256
REGION_KEY = new_key()  # hollow runners open each release's sealed environment, as real ones do


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, args, state: Path):
        self.args = args
        self.state = state
        self.processes: dict[str, subprocess.Popen] = {}  # by name, as in their log files
        self.database_name = ""
        # Its NATS's users, as a region's: the controller's, the hollow fleets' one, the bench's admin.
        self.nats_passwords: dict[str, str] = {}
        self.nats_config = state / "secrets" / "nats.conf"
        nats_auth.write_config(self.nats_config, nats_auth.hub_config(nats_auth.users(REGION, [], self.nats_password, hollow_fleet=True)))

    def nats_password(self, user: str) -> str:
        return self.nats_passwords.setdefault(user, secrets.token_urlsafe(18))

    # --- servers and services -------------------------------------------------------

    def database(self) -> str:
        layout = Layout.load(default_state_dir(ROOT))
        if layout is None:
            sys.exit("no running region: start one with ./regio up (the bench uses its Postgres)")
        cluster = PostgresCluster("postgres", layout.state_dir, layout.ports.postgres)
        name = self.database_name = f"bench_{uuid.uuid4().hex[:8]}"
        cluster.psql(f'CREATE DATABASE "{name}"')
        self.drop = lambda: cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)
        url = cluster.url(name, driver="postgresql+asyncpg")
        for service, prefix in (("controller", "REGIO_CONTROLLER_"), ("runner-agent", "REGIO_RUNNER_")):
            subprocess.run([sys.executable, "-m", "alembic", "-c", str(ROOT / "services" / service / "alembic.ini"),
                            "upgrade", "head"], check=True, env={**os.environ, f"{prefix}DATABASE_URL": url},
                           capture_output=True)
        return url

    def start(self, argv: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        out = open(self.state / f"{name}.log", "wb")
        process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def cpu(self, nats_pid: int) -> dict[str, float]:
        """CPU seconds used so far by the controller, the fleets, NATS and the Postgres
        backends serving the bench's database (those still connected)."""
        used = {"controller": cpu_seconds(self.processes["controller"].pid),
                "hollow runners": sum(cpu_seconds(p.pid) for n, p in self.processes.items() if n.startswith("fleet")),
                "nats": cpu_seconds(nats_pid), "postgres": 0.0}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    title = (entry / "cmdline").read_bytes()  # "postgres: <user> <database> <client> ..."
                    if title.startswith(b"postgres: ") and f" {self.database_name} ".encode() in title:
                        used["postgres"] += cpu_seconds(int(entry.name))
                except OSError:
                    continue  # a backend that ended meanwhile
        return used

    def controller(self, database_url: str, nats_url: str) -> None:
        port = free_port()
        self.start([sys.executable, "-m", "regio_controller"], {
            "REGIO_CONTROLLER_DATABASE_URL": database_url, "REGIO_CONTROLLER_NATS_URL": nats_url,
            "REGIO_CONTROLLER_NATS_USER": nats_auth.CONTROLLER,
            "REGIO_CONTROLLER_NATS_PASSWORD": self.nats_password(nats_auth.CONTROLLER),
            "REGIO_CONTROLLER_REGION": REGION, "REGIO_CONTROLLER_SERVICE_TOKEN": TOKEN,
            "REGIO_CONTROLLER_PORT": str(port), "REGIO_CONTROLLER_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "REGIO_CONTROLLER_RUNNER_LOST_SECONDS": str(self.args.lost_seconds),
            # No ingress to ask what is in flight: old instances drain for the minimum only.
            "REGIO_CONTROLLER_INGRESS_URLS": "[]",
        }, "controller")
        wait_for_port(port, 60)

    def fleet(self, database_url: str, nats_url: str, count: int, prefix: str) -> subprocess.Popen:
        return self.start([sys.executable, "-m", "regio_runner.hollow_fleet", "--count", str(count),
                           "--name-prefix", prefix, "--memory-mb", str(self.args.runner_memory_mb),
                           "--heartbeat-seconds", str(self.args.heartbeat_seconds)], {
            "REGIO_RUNNER_DATABASE_URL": database_url, "REGIO_RUNNER_NATS_URL": nats_url,
            "REGIO_RUNNER_NATS_USER": nats_auth.HOLLOW_FLEET,  # one user for every hollow runner of a fleet
            "REGIO_RUNNER_NATS_PASSWORD": self.nats_password(nats_auth.HOLLOW_FLEET),
            "REGIO_RUNNER_REGION": REGION, "REGIO_RUNNER_SERVICE_TOKEN": TOKEN, "REGIO_RUNNER_HOLLOW": "true",
            "REGIO_RUNNER_LOG_LEVEL": "WARNING", "REGIO_RUNNER_REGION_KEY": REGION_KEY,
        }, f"fleet-{prefix.rstrip('-')}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


async def ingress_stand_in(nc, js) -> object:
    """Acknowledges every route change at once: what a real ingress answers once Caddy carries it."""
    async def applied(msg):
        change = decode(msg.headers, msg.data)
        ack = RoutesApplied(environment_id=change.environment_id, revision=change.revision)
        await js.publish(ack.subject(REGION), ack.model_dump_json().encode(), headers=ack.headers())

    return await nc.subscribe(f"region.{REGION}.{RoutesChanged.topic}", cb=applied)


async def counts(engine) -> dict[str, int]:
    async with engine.connect() as c:
        rows = await c.execute(text("SELECT state, count(*) FROM controller.instances GROUP BY state"))
        return {state: n for state, n in rows}


async def healthy_on_live(engine, lost_prefix: str) -> tuple[int, int]:
    """Healthy instances of what each environment serves, off and on the lost runners."""
    async with engine.connect() as c:
        rows = await c.execute(text(
            "SELECT i.runner LIKE :lost, count(*) FROM controller.instances i "
            "JOIN controller.workloads w ON w.current_deployment_id = i.deployment_id "
            "WHERE i.state = 'healthy' GROUP BY 1"), {"lost": f"{lost_prefix}%"})
        found = {on_lost: n for on_lost, n in rows}
    return found.get(False, 0), found.get(True, 0)


async def wait_for(check, what: str, timeout: float, engine=None) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            states = f"; instance states: {await counts(engine)}" if engine is not None else ""
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}{states}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def floor(js, engine, runners: list[str], instances: int) -> float:
    """The baseline: the writes any controller must make for these placements, done directly."""
    kv = await js.key_value(bus.runner_desired_bucket(REGION + "-floor"))
    started = time.monotonic()
    async with engine.begin() as c:
        await c.execute(text("CREATE TEMP TABLE floor (id uuid, environment uuid, runner text, state text)"))
        await c.execute(text("INSERT INTO floor SELECT gen_random_uuid(), gen_random_uuid(), 'r' || (g % :r), "
                             "'pending' FROM generate_series(1, :n) g"), {"r": len(runners), "n": instances})
    per_runner = instances // len(runners)
    for name in runners:
        await kv.put(name, RunnerDesired(runner=name, revision=1, instances=[]).model_dump_json().encode()
                     + b" " * (per_runner * 400))  # about the size of that many desired instances
    return time.monotonic() - started


async def main(args) -> None:
    # Not named by pid alone: a pid comes round again, and an earlier run's logs are kept.
    state = Path(tempfile.mkdtemp(prefix="regio-bench-scheduler-"))
    bench = Bench(args, state)
    nats_server = nats_process(state, free_port(), bench.nats_config)
    nats_server.start()
    try:
        wait_for_port(nats_server.port, 30, process=nats_server)
        nats_url = f"nats://127.0.0.1:{nats_server.port}"
        database_url = bench.database()
        nc = await nats.connect(nats_url, user=nats_auth.ADMIN, password=bench.nats_password(nats_auth.ADMIN))
        js = nc.jetstream()
        await bus.ensure_streams(js)
        await bus.ensure_buckets(js, REGION)
        await bus.ensure_buckets(js, REGION + "-floor")
        engine = create_async_engine(database_url)
        stand_in = await ingress_stand_in(nc, js)
        finished: dict[uuid.UUID, bool] = {}

        async def on_finished(msg):
            message = decode(msg.headers, msg.data)
            finished[message.deployment_id] = message.success

        finished_sub = await nc.subscribe(f"region.{REGION}.{RolloutFinished.topic}", cb=on_finished)

        total = args.environments * args.instances
        kept = args.runners - args.lose
        log(f"starting {kept} + {args.lose} hollow runners and the controller")
        bench.fleet(database_url, nats_url, kept, "hollow-")
        doomed = bench.fleet(database_url, nats_url, args.lose, "doomed-")
        bench.controller(database_url, nats_url)

        async def runners_known():
            async with engine.connect() as c:
                return await c.scalar(text("SELECT count(*) FROM controller.runners WHERE state = 'ready'")) \
                    == args.runners
        log(f"{args.runners} runners registered after {await wait_for(runners_known, 'runners', 300):.1f}s")

        log(f"baseline: writing {total} instance rows and {args.runners} desired states directly")
        baseline = await floor(js, engine, [f"hollow-{i}" for i in range(args.runners)], total)

        log(f"rolling out {args.environments} environments x {args.instances} instances of {MEMORY_MB} MB")
        sealed = seal(REGION_KEY, {"SECRET_KEY": "bench"})
        cpu_before = bench.cpu(nats_server.pid())
        started = time.monotonic()
        for _ in range(args.environments):
            request = RolloutRequested(
                deployment_id=uuid.uuid4(), application_id=uuid.uuid4(), environment_id=uuid.uuid4(),
                release_id=uuid.uuid4(), image="hollow:1", port=80, sealed_env=sealed, instances=args.instances,
                memory_mb=MEMORY_MB, hosts=[], sanity_timeout_seconds=120)
            await js.publish(request.subject(REGION), request.model_dump_json().encode(), headers=request.headers())
        sent = time.monotonic() - started

        async def placed():
            return sum((await counts(engine)).values()) >= total

        async def running():
            c = await counts(engine)
            return c.get("running", 0) + c.get("healthy", 0) >= total

        async def rolled_out():
            return len(finished) >= args.environments

        # Each from the first request sent.
        await wait_for(placed, "every instance placed", args.timeout)
        t_placed = time.monotonic() - started
        await wait_for(running, "every instance running", args.timeout, engine)
        t_running = time.monotonic() - started
        await wait_for(rolled_out, "every rollout finished", args.timeout, engine)
        t_done = time.monotonic() - started
        cpu_used = {name: used - cpu_before[name] for name, used in bench.cpu(nats_server.pid()).items()}
        failed = sum(1 for ok in finished.values() if not ok)
        c = await counts(engine)

        s_placed = s_healthy = None
        if args.scale:
            # The scheduler without the rollout pipeline: the healer places what a scale adds.
            doubled = 2 * args.instances
            log(f"scaling every environment from {args.instances} to {doubled} instances (no deployment)")
            async with engine.connect() as conn:
                environments = list(await conn.scalars(text("SELECT environment_id FROM controller.workloads")))
            started = time.monotonic()
            for environment_id in environments:
                scaled = EnvironmentScaled(environment_id=environment_id, instances=doubled)
                await js.publish(scaled.subject(REGION), scaled.model_dump_json().encode(), headers=scaled.headers())

            async def scaled_placed():
                return sum((await counts(engine)).values()) >= 2 * total

            async def scaled_healthy():
                return (await counts(engine)).get("healthy", 0) >= 2 * total

            await wait_for(scaled_placed, "the added instances placed", args.timeout, engine)
            s_placed = time.monotonic() - started
            await wait_for(scaled_healthy, "the added instances healthy", args.timeout, engine)
            s_healthy = time.monotonic() - started

        log(f"killing the {args.lose} runners of the doomed fleet (SIGKILL)")
        _, to_replace = await healthy_on_live(engine, "doomed-")
        doomed.send_signal(signal.SIGKILL)

        async def replaced():
            live, lost = await healthy_on_live(engine, "doomed-")
            return lost == 0 and live >= (2 if args.scale else 1) * total

        t_replaced = await wait_for(replaced, "the lost runners' instances replaced", args.timeout)

        print()
        print(f"hollow runners: {args.runners}, environments: {args.environments}, instances: {total} "
              f"(rollout requests sent in {sent:.2f}s)")
        print(f"baseline (the bare writes, done directly): {baseline:.2f}s "
              f"= {total / baseline:.0f} placements/s")
        print(f"all placed:            {t_placed:7.2f}s  {total / t_placed:7.0f} placements/s")
        print(f"all reported running:  {t_running:7.2f}s  {total / t_running:7.0f} placements/s "
              f"(ratio to baseline: {baseline / t_running:.3f})")
        print(f"all rollouts finished: {t_done:7.2f}s  ({failed} failed; instance states {c})")
        print("CPU until then, ms per placement: " + ", ".join(
            f"{name} {1000 * used / total:.1f}" for name, used in cpu_used.items())
            + f" (wall time {1000 * t_done / total:.1f} ms per placement, on {os.cpu_count()} cores)")
        if args.scale:
            print(f"scale-up by {total} more (the healer, no rollout): placed in {s_placed:.2f}s "
                  f"= {total / s_placed:.0f} placements/s, healthy and routed in {s_healthy:.2f}s "
                  f"= {total / s_healthy:.0f}/s")
        print(f"re-placement of {to_replace} instances of {args.lose} lost runners: {t_replaced:.2f}s "
              f"after the kill, of which {args.lost_seconds:g}s is the lost-runner timeout "
              f"({to_replace / max(t_replaced - args.lost_seconds, 0.001):.0f} placements/s after it)")
        print("reference: Kubernetes' scheduler CI expects about 810 pods/s with simulated nodes")
        await finished_sub.unsubscribe()
        await stand_in.unsubscribe()
        await engine.dispose()
        await nc.drain()
    finally:
        bench.stop()
        nats_server.stop()
        if hasattr(bench, "drop"):
            bench.drop()
        print(f"logs: {state}")


if __name__ == "__main__":
    # Stopped by a signal, the bench still stops the controller, the fleets and NATS it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runners", type=int, default=1000)
    parser.add_argument("--environments", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10, help="per environment")
    parser.add_argument("--lose", type=int, default=100, help="runners killed at once for re-placement")
    parser.add_argument("--runner-memory-mb", type=int, default=16384)
    parser.add_argument("--heartbeat-seconds", type=float, default=5.0)
    parser.add_argument("--lost-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--no-scale", dest="scale", action="store_false",
                        help="skip doubling every environment through the healer")
    asyncio.run(main(parser.parse_args()))
