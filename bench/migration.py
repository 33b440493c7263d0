"""How long an application with a database and media is unavailable when it moves to another
region: Regio's online migration against dump-and-restore with the application stopped,
measured in the same run on the same data.

The application is tests/apps/notes (a database and a bucket), deployed through the API in
the region `local`, on a plan group that also allows `local-2`. Its database gets --rows rows
(default 100k, about 300 bytes each, a primary key and a second index) in a table of its own,
and its bucket --media-mb of media (default 200 MB) in objects of about --object-kb (default
256 KB, sizes spread from half to one and a half times that: pictures a site's editors
upload). Both are filled directly on the region's servers with its admin credentials
(.regio/secrets/region-servers.json), as the application's role, not through the application
(far too slow).

Baseline, "stopped": what an operator does with the application down: pg_dump of the source
database restored into a fresh database on the target region's server (the platform's own
dump and restore: pg_dump -Fc, pg_restore), and the media copied into a fresh bucket of the
target's storage (the same copier the migration uses, so the method is compared, not the
tool), the two at once. Their wall time is the downtime. Both copies are dropped right after.

Regio: POST /apps/v3/application-migrations/ to local-2 while a steady light load (--rate,
20 requests a second, sent on time whether or not the earlier ones answered; one in four a
POST /notes that writes a row and an object, the rest GET /) goes to the application's old
address through local's ingress, from 3 s before until 3 s after the migration ends (the
source forwards the old host). Printed: the total migration time (created .. ended, and its
steps), the write pause (the migration's write_pause_ms: the time requests were held), how
many requests waited (took longer than --slow, 0.5 s) and how many failed, and the ratio of
the baseline's downtime to the write pause. The pause as the clients saw it too: from the
first waiting request's sending to the last one's answer, and the requests around the
cut-over by half second (sent, waited, of which writes, longest), since the recorded pause
ends when the source confirms its forward, not when the last held request is answered. Then
checked, directly on the target's servers: every row, every object and every acknowledged
write is there.

The application is deleted through the API at the end (also on Ctrl-C or SIGTERM); what
that leaves on the source's servers (a migrated application's detached database and bucket,
kept for the grace period) is removed by the bench, and said.

The baseline is a lower bound of a stopped move's downtime: it leaves out stopping the
application and starting it in the target. Both regions share this machine's disk, CPUs and
Docker (the target's build finds the source's layers cached).

    .venv/bin/python bench/migration.py               # needs ./regio up --regions 2 (local and local-2)
    .venv/bin/python bench/migration.py --rows 1000000 --media-mb 1000 --object-kb 1024
    .venv/bin/python bench/migration.py --baseline-only   # fill and baseline, no migration
"""
import argparse
import asyncio
import json
import math
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from regio_common.layout import default_state_dir
from regio_controlpanel.region_services import bucket_copy, database
from regio_controlpanel.region_services.storage import StorageError
from regio_controlpanel.services.provisioning import DatabaseServer, StorageServer

STATE = default_state_dir(Path(__file__).parent)
APP = Path(__file__).resolve().parents[1] / "tests" / "apps" / "notes"
SOURCE, TARGET = "local", "local-2"
DEPLOY_TIMEOUT = 600.0
UPLOADS_AT_ONCE = 8
# 256 characters that compress about as well as text does (a repeated string would shrink the
# dump to nothing): with the title and the rest, ~300 bytes a row.
ROW_BODY = "(SELECT string_agg(md5(g || '-' || i), ' ') FROM generate_series(1, 8) AS i)"


@dataclass
class RegionSide:
    slug: str
    ingress_url: str
    domain: str
    database: DatabaseServer
    storage: StorageServer

    @classmethod
    def load(cls, slug: str) -> "RegionSide":
        state = STATE if slug == SOURCE else STATE / "regions" / slug
        if not (state / "env").exists():
            raise SystemExit(f"region {slug} has no state at {state}: start it with `./regio up --regions 2`")
        env = dict(line.removeprefix("export ").split("=", 1)
                   for line in (state / "env").read_text().splitlines() if line.startswith("export "))
        servers = json.loads((state / "secrets" / "region-servers.json").read_text())
        return cls(slug, env["REGIO_INGRESS_URL"], env["REGIO_REGION_DOMAIN"],
                   DatabaseServer(**servers["postgres-18"]), StorageServer(**servers["s3"]))


def api_env() -> dict[str, str]:
    lines = (STATE / "env").read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.test", *args],
                   check=True, capture_output=True)


# --- the application ---------------------------------------------------------------------

class Application:
    """The notes application in `local` with a database and a bucket, its test environment deployed."""

    def __init__(self, api: httpx.Client):
        self.api = api
        self.url: str | None = None  # once created: deleted at the end whatever happens after

    def create(self, repo: Path, source_id: str, target_id: str) -> None:
        api = self.api
        org = api.get("/iam/v3/organisations/", params={"name": "Default organisation"}).json()["results"][0]["uuid"]
        groups = api.get("/billing/v3/application-plan-groups/").json()["results"]
        group = next((g["uuid"] for g in groups if {source_id, target_id} <= set(g["regions"])), None)
        if group is None:
            raise SystemExit(f"no plan group allows both {SOURCE} and {TARGET}")
        repository = api.post("/apps/v3/repositories/", json={"organisation": org, "url": f"file://{repo}"})
        repository.raise_for_status()
        created = api.post("/apps/v3/applications/", json={
            "name": "Migration bench", "slug": f"migbench-{uuid.uuid4().hex[:6]}", "organisation": org,
            "region": source_id, "plan_group": group, "repository": repository.json()["uuid"], "branch": "main"})
        if created.status_code != 201:
            raise SystemExit(f"creating the application failed: {created.text}")
        self.app = created.json()
        self.url = f"/apps/v3/applications/{self.app['uuid']}/"
        self.environment = self.app["test_status"]["uuid"]
        offered = api.get("/apps/v3/services/", params={"region": source_id}).json()["results"]
        for service in (s for s in offered if s["identifier"] in ("postgres-18", "s3")):
            api.post("/apps/v3/service-instances/", json={"environment": self.environment,
                                                           "service": service["uuid"]}).raise_for_status()

    def host(self, side: RegionSide) -> str:
        return f"{self.app['slug']}-stage.{side.domain}"

    def deploy(self) -> None:
        started = self.api.post("/apps/v3/deployments/", json={"environment": self.environment})
        started.raise_for_status()
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        while (deployment := self.api.get(f"/apps/v3/deployments/{started.json()['uuid']}/").json())["ended_at"] is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"the deployment did not end in {DEPLOY_TIMEOUT:g} s")
            time.sleep(0.5)
        if not deployment["success"]:
            log = self.api.get(f"/apps/v3/deployments/{deployment['uuid']}/logs").json()["logs"]
            raise SystemExit(f"the deployment failed:\n{log[-3000:]}")

    def names(self) -> tuple[str, str]:
        """The database (and its role) and the bucket on the servers: named after the instances' ids."""
        instances = self.api.get("/apps/v3/service-instances/", params={"environment": self.environment}).json()
        ids = {i["type"]: uuid.UUID(i["uuid"]).hex for i in instances["results"]}
        return f"si_{ids['DATABASE']}", f"si-{ids['STORAGE']}"

    def delete(self) -> None:
        if self.url is None:
            return
        try:
            answer = self.api.delete(self.url)
        except httpx.HTTPError as e:
            print(f"could not delete application {self.app['slug']} ({type(e).__name__}): delete it by hand")
            return
        if answer.status_code not in (204, 404):
            print(f"deleting application {self.app['slug']} answered {answer.status_code}: {answer.text[:300]}")


# --- filling, directly on the servers ------------------------------------------------------

async def connect(server: DatabaseServer, name: str) -> asyncpg.Connection:
    url = make_url(server.admin_url)
    return await asyncpg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                 database=name, timeout=30)


async def fill_database(server: DatabaseServer, name: str, rows: int) -> float:
    """--rows rows in a table of the application's own (created as its role, as a migration
    of the application would), its size in MB."""
    conn = await connect(server, name)
    try:
        await conn.execute(f'SET ROLE "{name}"')
        await conn.execute("CREATE TABLE articles (id bigserial PRIMARY KEY, title text NOT NULL, "
                           "body text NOT NULL, published_at timestamptz NOT NULL DEFAULT now())")
        await conn.execute(f"INSERT INTO articles (title, body, published_at) SELECT 'article ' || md5(g::text), "
                           f"{ROW_BODY}, now() - g * interval '1 minute' FROM generate_series(1, $1) AS g", rows)
        await conn.execute("CREATE INDEX articles_published_at ON articles (published_at)")
        await conn.execute("ANALYZE articles")
        return await conn.fetchval("SELECT pg_database_size(current_database())") / 1e6
    finally:
        await conn.close()


def media_sizes(media_mb: int, object_kb: int) -> list[int]:
    rng = random.Random(16)
    sizes, left = [], media_mb * 1024 * 1024
    while left > 0:
        size = min(left, rng.randint(object_kb * 512, object_kb * 1536))
        sizes.append(size)
        left -= size
    return sizes


async def fill_bucket(server: StorageServer, bucket: str, sizes: list[int]) -> None:
    """Incompressible bytes (like pictures), a few uploads at a time."""
    slots = asyncio.Semaphore(UPLOADS_AT_ONCE)
    async with server.client() as storage:
        async def upload(n: int, size: int) -> None:
            async with slots:
                await storage.put_object(bucket, f"media/{n:06d}.jpg", random.randbytes(size), "image/jpeg")
        await asyncio.gather(*(upload(n, size) for n, size in enumerate(sizes)))


async def left_behind(source: RegionSide, db: str, bucket: str, wait: float = 30) -> None:
    """The application's database and bucket on the source's servers once it is deleted: gone,
    or removed here and said (a migrated application's detached copies, kept for the grace
    period, are known only to its migration, which its deletion takes with it)."""
    deadline = time.monotonic() + wait
    while True:
        conn = await connect(source.database, "postgres")
        try:
            has_db = bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db))
        finally:
            await conn.close()
        async with source.storage.client() as storage:
            try:
                await storage.list_objects(bucket)
                has_bucket = True
            except StorageError as e:
                if e.code != "NoSuchBucket":
                    raise
                has_bucket = False
        if not (has_db or has_bucket) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    if has_db:
        await forget(f"database {db} on {source.slug}", database.drop_database(source.database.admin_url, db, db))
    if has_bucket:
        async with source.storage.client() as storage:
            await forget(f"bucket {bucket} on {source.slug}", storage.delete_bucket_and_key(bucket, ""))
    if has_db or has_bucket:
        print(f"the application's deletion left its {' and '.join(w for w, h in (('database', has_db), ('bucket', has_bucket)) if h)} "
              f"on {source.slug} ({wait:g} s later): removed by the bench")


# --- the baseline: dump and restore with the application stopped ---------------------------

@dataclass
class Baseline:
    downtime: float = 0.0
    dump: float = 0.0
    restore: float = 0.0
    media: float = 0.0
    dump_mb: float = 0.0
    rows: int = 0
    objects: int = 0


async def baseline(source: RegionSide, target: RegionSide, db: str, bucket: str, tmp: Path) -> Baseline:
    """The database dumped and restored into a fresh one on the target's server while the media
    is copied into a fresh bucket of the target's storage; both dropped afterwards."""
    result = Baseline()
    copy_db, copy_bucket = f"bench_{uuid.uuid4().hex[:12]}", f"bench-{uuid.uuid4().hex[:12]}"

    async def database_part() -> None:
        started = time.monotonic()
        dumped = await database.dump(source.database.admin_url, db, tmp / "source.dump")
        result.dump, result.dump_mb = time.monotonic() - started, dumped.stat().st_size / 1e6
        started = time.monotonic()
        role, _ = await database.create_database(target.database.admin_url, copy_db)
        await database.restore(target.database.admin_url, copy_db, role, dumped)
        result.restore = time.monotonic() - started

    async def media_part() -> None:
        started = time.monotonic()
        async with target.storage.client() as storage:
            await storage.ensure_bucket(copy_bucket)
        synced = await bucket_copy.sync_bucket(source.storage, bucket, target.storage, copy_bucket)
        result.media, result.objects = time.monotonic() - started, synced.objects

    started = time.monotonic()
    try:
        async with asyncio.TaskGroup() as both:  # one failing stops the other before the cleanup
            both.create_task(database_part())
            both.create_task(media_part())
        result.downtime = time.monotonic() - started
        conn = await connect(target.database, copy_db)
        try:
            result.rows = await conn.fetchval("SELECT count(*) FROM articles")
        finally:
            await conn.close()
    finally:
        await forget(f"database {copy_db} on {target.slug}",
                     database.drop_database(target.database.admin_url, copy_db, copy_db))
        async with target.storage.client() as storage:
            await forget(f"bucket {copy_bucket} on {target.slug}", storage.delete_bucket(copy_bucket))
    return result


async def forget(what: str, removal) -> None:
    """A cleanup that fails is said (what is left behind), without hiding why the run ended."""
    try:
        await removal
    except Exception as e:
        print(f"could not remove {what} ({type(e).__name__}: {e}): remove it by hand")


# --- the load through the old address ----------------------------------------------------

@dataclass
class Load:
    """Requests to the application's old address at a steady rate, whether or not the earlier
    ones have answered (clients do not wait for each other): one in four a write (POST /notes),
    the others GET /. So every request that arrives during the pause shows up as one that
    waited, not only the one a closed loop of clients would have in flight."""
    ingress_url: str
    host: str
    slow: float
    rate: float  # requests per second
    seconds: list[float] = field(default_factory=list)  # of each request that answered
    answers: list[tuple[float, float, bool]] = field(default_factory=list)  # (sent at, epoch s; took; a write?)
    failures: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # texts whose POST answered 201
    started_at: float = 0.0
    stopped_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=90)
        self.stopped_at = time.monotonic()

    @property
    def requests(self) -> int:
        return len(self.seconds) + len(self.failures)

    @property
    def waited(self) -> int:
        return sum(1 for s in self.seconds if s > self.slow)

    @property
    def waits(self) -> list[tuple[float, float]]:
        return [(sent, took) for sent, took, _ in self.answers if took > self.slow]

    async def _run(self) -> None:
        # Enough connections for every request of a long pause at once (held ones keep theirs).
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=self.ingress_url, headers={"Host": self.host}, timeout=60,
                                     limits=limits) as client:
            running: set[asyncio.Task] = set()
            n, due = 0, time.monotonic()
            while not self._stop.is_set():
                n += 1
                task = asyncio.create_task(self._write(client, f"bench-{n:06d}") if n % 4 == 0 else
                                           self._send("GET /", client.get("/"), 200))
                running.add(task)
                task.add_done_callback(running.discard)
                due += 1 / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await asyncio.gather(*running)

    async def _send(self, what: str, request, expect: int) -> bool:
        sent_at, started = time.time(), time.monotonic()
        try:
            response = await request
        except httpx.HTTPError as e:
            self.failures.append(f"{what}: {type(e).__name__}: {e}")
            return False
        took = time.monotonic() - started
        if response.status_code != expect:
            self.failures.append(f"{what} answered {response.status_code} after {took:.2f} s: {response.text[:200]}")
            return False
        self.seconds.append(took)
        self.answers.append((sent_at, took, what.startswith("POST")))
        return True

    async def _write(self, client: httpx.AsyncClient, text: str) -> None:
        if await self._send("POST /notes", client.post("/notes", params={"text": text}), 201):
            self.acknowledged.append(text)


# --- the migration -----------------------------------------------------------------------

def migrate(api: httpx.Client, app: Application, target_id: str, timeout: float) -> dict:
    started = api.post("/apps/v3/application-migrations/", json={"application": app.app["uuid"], "region": target_id})
    if started.status_code != 201:
        raise SystemExit(f"starting the migration answered {started.status_code}: {started.text}")
    url = f"/apps/v3/application-migrations/{started.json()['uuid']}/"
    deadline = time.monotonic() + timeout
    while (migration := api.get(url).json())["ended_at"] is None:
        if time.monotonic() > deadline:
            api.post(f"{url}cancel/", json={"reason": f"the bench gave up after {timeout:g} s"})
            raise SystemExit(f"the migration was still {migration['status']} after {timeout:g} s: cancelled")
        time.sleep(0.5)
    migration["log"] = api.get(f"{url}logs").json()["logs"]
    return migration


async def check_target(target: RegionSide, db: str, bucket: str, acknowledged: list[str]) -> tuple[int, int, int]:
    """Rows of the filled table, acknowledged writes missing, objects, in the target's copies."""
    conn = await connect(target.database, db)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM articles")
        written = set(await conn.fetchval("SELECT array_agg(text) FROM notes") or [])
    finally:
        await conn.close()
    async with target.storage.client() as storage:
        objects = len(await storage.list_objects(bucket, "media/"))
    return rows, len(set(acknowledged) - written), objects


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def report_migration(migration: dict, load: Load, base: Baseline | None) -> None:
    total = seconds_between(migration["created_at"], migration["ended_at"])
    print(f"\nregio, online migration {SOURCE} → {TARGET}: {migration['status']}")
    if migration["status"] != "success":
        print(f"  error: {migration['error']}")
    print("  its log:\n    " + migration["log"].strip().replace("\n", "\n    "))
    print(f"  total (requested → ended):  {total:7.1f} s")
    for step in migration["steps"]:
        if step["ended_at"]:
            print(f"    {step['name']:<14} {seconds_between(step['started_at'], step['ended_at']):7.2f} s")
    pause = migration["write_pause_ms"]
    print(f"  write pause (requests held): {'-' if pause is None else f'{pause / 1000:7.3f} s'}")
    duration = load.stopped_at - load.started_at
    print(f"  load through the old address ({load.requests} requests in {duration:.0f} s, "
          f"{load.requests / duration:.1f}/s): {load.waited} waited > {load.slow:g} s, "
          f"{len(load.failures)} failed, slowest {max(load.seconds, default=0):.2f} s, "
          f"median {statistics.median(load.seconds or [0]) * 1000:.0f} ms")
    for failure in load.failures[:5]:
        print(f"    {failure}")
    if load.waits and migration["cut_over_at"]:
        # As the clients saw it: from the first request that waited being sent to the last one
        # answering, against the cut-over's commit (the moment the target's copies took over).
        cut = datetime.fromisoformat(migration["cut_over_at"]).timestamp()
        first = min(sent for sent, _ in load.waits)
        last = max(sent + took for sent, took in load.waits)
        print(f"  as the clients saw it: requests waited from {first - cut:+.2f} s to {last - cut:+.2f} s of the "
              f"cut-over's commit ({last - first:.2f} s); waits p50 "
              f"{statistics.median(t for _, t in load.waits):.2f} s")
        print("    sent at (s from the commit)   requests  waited  (writes)  longest")
        start = math.floor((first - cut) * 2) / 2 - 0.5
        while start < max(sent for sent, _ in load.waits) - cut + 0.5:
            sent = [(took, write) for at, took, write in load.answers if start <= at - cut < start + 0.5]
            waited = [write for took, write in sent if took > load.slow]
            print(f"    {start:+5.1f} .. {start + 0.5:+5.1f}            {len(sent):8d}  {len(waited):6d}  ({sum(waited):5d})"
                  f"  {max((t for t, _ in sent), default=0):6.2f} s")
            start += 0.5
    if base is not None and pause:
        print(f"  downtime, stopped / regio: {base.downtime / (pause / 1000):.1f}×  "
              f"({base.downtime:.1f} s against {pause / 1000:.2f} s); at this load's rate "
              f"≈{round(base.downtime * load.requests / duration)} requests would have failed while stopped")
        if load.waits:
            seen = max(sent + took for sent, took in load.waits) - min(sent for sent, _ in load.waits)
            print(f"  downtime, stopped / the pause the clients saw: {base.downtime / seen:.1f}×  "
                  f"({base.downtime:.1f} s against {seen:.2f} s)")


def interrupted(*_) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--media-mb", type=int, default=200)
    parser.add_argument("--object-kb", type=int, default=256)
    parser.add_argument("--slow", type=float, default=0.5, help="a request that took longer waited (seconds)")
    parser.add_argument("--rate", type=float, default=20, help="requests per second of the load (a quarter writes)")
    parser.add_argument("--timeout", type=float, default=1800, help="for the migration (seconds)")
    parser.add_argument("--baseline-only", action="store_true", help="fill and measure the baseline, no migration")
    args = parser.parse_args()
    if args.rows < 1 or args.media_mb < 1 or args.object_kb < 1:
        parser.error("--rows, --media-mb and --object-kb must be at least 1")
    if not 0 < args.rate <= 200:
        parser.error("--rate must be above 0 and at most 200 (a light load)")
    signal.signal(signal.SIGTERM, interrupted)

    source, target = RegionSide.load(SOURCE), RegionSide.load(TARGET)
    env = api_env()
    with httpx.Client(base_url=env["REGIO_API_URL"], headers={"Authorization": f"Token {env['REGIO_TOKEN']}"},
                      timeout=30) as api, tempfile.TemporaryDirectory() as tmp:
        regions = {r["slug"]: r for r in api.get("/apps/v3/regions/").json()["results"]}
        for slug in (SOURCE, TARGET):
            if regions.get(slug, {}).get("state") != "online":
                raise SystemExit(f"region {slug} is not online ({regions.get(slug, {}).get('state', 'unknown')}): "
                                 "./regio up --regions 2")
        if not args.baseline_only and api.get("/apps/v3/application-migrations/").status_code != 200:
            raise SystemExit("this control panel has no /apps/v3/application-migrations/ (restart it on this code)")
        repo = Path(tmp) / "notes"
        shutil.copytree(APP, repo)
        git(repo, "init", "-qb", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "notes")
        app, names = Application(api), None
        try:
            app.create(repo, regions[SOURCE]["uuid"], regions[TARGET]["uuid"])
            started = time.monotonic()
            app.deploy()
            print(f"deployed {app.app['slug']} in {SOURCE} ({time.monotonic() - started:.0f} s)")
            written = httpx.post(f"{source.ingress_url}/notes", params={"text": "before"},
                                 headers={"Host": app.host(source)}, timeout=30)
            written.raise_for_status()  # the application's own table exists before the copy's schema is taken
            db, bucket = names = app.names()

            started = time.monotonic()
            size_mb = asyncio.run(fill_database(source.database, db, args.rows))
            filled_db = time.monotonic() - started
            sizes = media_sizes(args.media_mb, args.object_kb)
            started = time.monotonic()
            asyncio.run(fill_bucket(source.storage, bucket, sizes))
            print(f"filled: {args.rows} rows (database {size_mb:.0f} MB) in {filled_db:.1f} s, "
                  f"{len(sizes)} objects ({sum(sizes) / 2**20:.0f} MB, {args.object_kb} KB on average) "
                  f"in {time.monotonic() - started:.1f} s")

            base = asyncio.run(baseline(source, target, db, bucket, Path(tmp)))
            assert base.rows == args.rows and base.objects == len(sizes) + 1, base  # + the first write's
            print(f"\nbaseline, stopped: dump → restore into a fresh database on {TARGET}'s server, "
                  f"media → a fresh bucket, at once:")
            print(f"  downtime:           {base.downtime:7.1f} s")
            print(f"    pg_dump           {base.dump:7.1f} s  ({base.dump_mb:.0f} MB dump)")
            print(f"    restore           {base.restore:7.1f} s")
            print(f"    media copy        {base.media:7.1f} s  ({base.objects} objects)")
            if args.baseline_only:
                return

            load = Load(source.ingress_url, app.host(source), args.slow, args.rate)
            load.start()
            try:
                time.sleep(3)
                migration = migrate(api, app, regions[TARGET]["uuid"], args.timeout)
                time.sleep(3)  # and on, through the source's forwarding
            finally:
                load.stop()
            report_migration(migration, load, base)
            if migration["status"] == "success":
                rows, lost, objects = asyncio.run(check_target(target, db, bucket, load.acknowledged))
                print(f"  in {TARGET} afterwards: {rows}/{args.rows} rows, {objects}/{len(sizes)} media objects, "
                      f"{lost} of {len(load.acknowledged)} acknowledged writes missing")
        finally:
            app.delete()
            if names is not None:
                asyncio.run(left_behind(source, *names))


if __name__ == "__main__":
    main()
