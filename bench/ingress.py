"""What the ingress costs a request: wrk against one application instance directly (the
port its runner publishes on 127.0.0.1) and through the ingress (Caddy on the region's
HTTP port, with the application's Host header), back to back in the same run.

Two responses: a small page (13 bytes) and 1 MB; each under two loads: "load", wrk's
-t2 -c32 by default (throughput, and latency with queueing), and "one", one connection
(the latency the proxy adds to a request that waits behind no other). Measured: requests
per second and latency at p50 and p99; reported as the ratio ingress/direct of throughput
and the milliseconds the ingress adds at p50 and p99. Goal: a throughput ratio of at least
0.9 under load and under 1 ms added at p50.

Client, proxy and application share this machine's CPUs, so under load the ratio also
says how much CPU the proxy takes from the other two: on a small machine it measures the
proxy's CPU per request more than anything the proxy waits for.

The application is deployed through the API for the run and deleted at the end (also on
Ctrl-C or SIGTERM), unless --keep. It is one asyncio loop that writes precomputed responses
and logs nothing, on one instance of the largest size the plan groups allow (the most CPU),
so the application is cheap next to the proxy; both paths reach that same instance, so the
comparison is fair either way. Its address is the controller's own view of the route
(/internal/v1/routes), the one the ingress resolves too.

    .venv/bin/python3 bench/ingress.py                # needs ./regio up and wrk (apt-get install wrk)
    .venv/bin/python3 bench/ingress.py --duration 20 --connections 64 --rounds 3
    .venv/bin/python3 bench/ingress.py --bare-caddy  # and a Caddy that only proxies, for comparison
"""
import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx

from regio_common.layout import Layout, default_state_dir
from regio_common.processes import cpu_seconds, free_port, wait_for_port
from regio_common.servers import caddy_admin_socket, caddy_child_pidfile, venv_bin
from regio_common.service_auth import SERVICE_TOKEN_HEADER

STATE = default_state_dir(Path(__file__).parent)
GOAL_RATIO, GOAL_ADDED_P50_MS = 0.9, 1.0
SMALL_BODY = b"hello, world\n"
LARGE_BYTES = 1024 * 1024
PATHS = {"small": "/", "1 MB": "/large"}

APP_DOCKERFILE = """\
FROM regio/python:3.11
WORKDIR /app
COPY app.py /app/app.py
EXPOSE 8000
CMD ["python3", "/app/app.py"]
"""

APP_SOURCE = f'''\
"""GET /large answers 1 MB, anything else a 13-byte page, over HTTP/1.1 keep-alive: one
asyncio loop writing precomputed responses, no per-request log, so the proxy in front of
it is what a benchmark sees. GET only (request bodies are not read)."""
import asyncio
import os


def response(body):
    return (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/octet-stream\\r\\n"
            b"Content-Length: %d\\r\\n\\r\\n" % len(body)) + body


SMALL = response({SMALL_BODY!r})
BY_PATH = {{b"/large": response(b"x" * {LARGE_BYTES})}}


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\\r\\n\\r\\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            line, _, headers = head.partition(b"\\r\\n")
            parts = line.split(b" ")
            path = parts[1].split(b"?", 1)[0] if len(parts) > 2 else b"/"
            self.transport.write(BY_PATH.get(path, SMALL))
            headers = headers.lower()
            if b"connection: close" in headers or (parts[-1] == b"HTTP/1.0" and b"keep-alive" not in headers):
                self.transport.close()
                return


async def main():
    server = await asyncio.get_running_loop().create_server(Http, "0.0.0.0", int(os.environ.get("PORT", "8000")))
    await server.serve_forever()


asyncio.run(main())
'''

# Printed by wrk when a run is done: exact percentiles in microseconds, not --latency's rounded text.
WRK_REPORT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'REGIO {"requests": %d, "duration_us": %d, "bytes": %d, "errors": %d, "non_2xx": %d, "p50_us": %.1f, "p99_us": %.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    megabytes_per_second: float
    errors: int
    # CPU microseconds per request of each process on the path: what the ratio depends on when
    # they share the machine's cores, and what a machine with cores to spare would not show.
    cpu_us: dict[str, float] = field(default_factory=dict)


def port_proxy_pid(port: int) -> int | None:
    """Docker's userland port proxy for a published port, if the engine uses one."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"docker-proxy") and b"-host-port" in argv and \
                    argv[argv.index(b"-host-port") + 1] == str(port).encode():
                return int(entry.name)
    return None


class CpuMeter:
    """CPU time so far of wrk (this process's children), Caddy, the ingress service, the
    instance's container and the engine's port proxy in front of it (if it has one)."""

    def __init__(self, container_id: str, caddy_pid: int, ingress_pid: int, published_port: int,
                 bare_caddy_pid: int | None):
        self.engine = docker.from_env()
        self.container_id = container_id
        # The ingress service reads every request's access log entry: its share of the cost.
        self.pids = {"caddy": caddy_pid, "ingress": ingress_pid} | (
            {"bare caddy": bare_caddy_pid} if bare_caddy_pid else {})
        if (proxy := port_proxy_pid(published_port)) is not None:
            self.pids["port proxy"] = proxy

    def read(self) -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        stats = self.engine.api.stats(self.container_id, stream=False, one_shot=True)
        return {"wrk": children.ru_utime + children.ru_stime,
                "app": stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9,
                **{name: cpu_seconds(pid) for name, pid in self.pids.items()}}


def env_of_region() -> dict[str, str]:
    try:
        lines = (STATE / "env").read_text().splitlines()
    except FileNotFoundError:
        sys.exit("no running region: start one with ./regio up")
    return dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.test", *args],
                   check=True, capture_output=True)


class BenchApp:
    """The application this run deploys, on one instance, and how to reach it both ways."""

    def __init__(self, env: dict[str, str]):
        self.api = httpx.Client(base_url=env["REGIO_API_URL"], timeout=30,
                                headers={"Authorization": f"Token {env['REGIO_TOKEN']}"})
        layout = Layout.load(STATE)
        secrets = json.loads((STATE / "secrets" / "region.json").read_text())
        self.controller = httpx.Client(base_url=f"http://127.0.0.1:{layout.ports.controller}", timeout=10,
                                       headers={SERVICE_TOKEN_HEADER: secrets["service_token"]})
        self.env = env
        self.ingress_url = env["REGIO_INGRESS_URL"]
        self.app_url: str | None = None

    def create(self, repo: Path) -> None:
        env = self.env
        org = self.api.get("/iam/v3/organisations/").json()["results"][0]["uuid"]
        # The plan group with the most memory per instance: the most CPU, so the app is not what limits.
        plans = self.api.get("/billing/v3/application-plan-groups/").json()["results"]
        plan = max(plans, key=lambda p: p["memory_mb"], default=None)
        repository = self.api.post("/apps/v3/repositories/", json={"organisation": org, "url": f"file://{repo}"})
        repository.raise_for_status()
        app = self.api.post("/apps/v3/applications/", json={
            "name": "ingress bench", "slug": f"bench-ingress-{uuid.uuid4().hex[:6]}", "organisation": org,
            "repository": repository.json()["uuid"], "branch": "main", "plan_group": plan and plan["uuid"]})
        app.raise_for_status()
        app = app.json()
        self.app_url = f"/apps/v3/applications/{app['uuid']}/"
        self.environment = app["test_status"]["uuid"]
        self.host = f"{app['slug']}-stage.{env['REGIO_REGION_DOMAIN']}"
        size = {"instances": 1} | ({"memory_mb": plan["memory_mb"]} if plan else {})
        self.api.patch(f"/apps/v3/environments/{self.environment}/", json=size).raise_for_status()
        environment = self.api.get(f"/apps/v3/environments/{self.environment}/").json()
        self.size = f"{environment['instances']} instance, {environment['memory_mb']} MB, {environment['cpus']} CPU"

    def deploy(self, timeout: float = 600) -> None:
        response = self.api.post("/apps/v3/deployments/", json={"environment": self.environment})
        response.raise_for_status()
        url = f"/apps/v3/deployments/{response.json()['uuid']}/"
        deadline = time.monotonic() + timeout
        while (deployment := self.api.get(url).json())["ended_at"] is None:
            if time.monotonic() > deadline:
                sys.exit(f"the deployment did not end in {timeout:.0f} s")
            time.sleep(0.5)
        if not deployment["success"]:
            log = self.api.get(f"{url}logs").json()
            sys.exit(f"the deployment failed: {json.dumps(log)[-2000:]}")

    def direct_address(self, timeout: float = 60) -> str:
        """The instance's published host:port, as the controller routes it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for route in self.controller.get("/internal/v1/routes").json():
                if route["environment_id"] == self.environment and route["upstreams"]:
                    if len(route["upstreams"]) != 1:  # both paths must reach the same single instance
                        sys.exit(f"expected one instance, the route has {len(route['upstreams'])}")
                    return route["upstreams"][0]["address"]
            time.sleep(0.2)
        sys.exit("the controller never routed the environment")

    def container_id(self) -> str:
        engine = docker.from_env()
        try:
            [container] = engine.api.containers(filters={"label": f"regio.environment={self.environment}",
                                                         "status": "running"})
        finally:
            engine.close()
        return container["Id"]

    def wait_until_served(self, direct: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for url, headers in ((f"http://{direct}/", {}), (f"{self.ingress_url}/", {"Host": self.host})):
            while True:
                try:
                    if httpx.get(url, headers=headers, timeout=2).content == SMALL_BODY:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit(f"{url} (Host {headers.get('Host', '-')}) never served the app")
                time.sleep(0.1)

    def delete(self) -> None:
        if self.app_url:
            self.api.delete(self.app_url).raise_for_status()


def ingress_logging(admin_socket: Path) -> str:
    """Whether the region's Caddy writes access logs now (its config is changed by others meanwhile)."""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin_socket)), timeout=5) as admin:
            server = admin.get("http://caddy/config/apps/http/servers/ingress").json()
    except (httpx.HTTPError, ValueError):
        return "unknown"
    return "on" if server and server.get("logs") is not None else "off"


@dataclass(frozen=True)
class Load:
    """The wrk settings of one kind of run: every case is run under each, direct and through the ingress."""
    name: str
    threads: int
    connections: int


def wrk(url: str, host: str | None, load: Load, script: Path, seconds: int, cpu: CpuMeter | None = None) -> Run:
    before = cpu.read() if cpu else {}
    command = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(script), url]
    if host:
        command[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    report = json.loads(next(line for line in out.splitlines() if line.startswith("REGIO ")).removeprefix("REGIO "))
    seconds = report["duration_us"] / 1e6
    used = {name: (spent - before[name]) * 1e6 / max(1, report["requests"])
            for name, spent in cpu.read().items()} if cpu else {}
    return Run(requests_per_second=report["requests"] / seconds, p50_ms=report["p50_us"] / 1000,
               p99_ms=report["p99_us"] / 1000, megabytes_per_second=report["bytes"] / seconds / 1e6,
               errors=report["errors"] + report["non_2xx"], cpu_us=used)


def median_run(runs: list[Run]) -> Run:
    medians = {f: statistics.median(getattr(r, f) for r in runs) for f in Run.__dataclass_fields__ if f != "cpu_us"}
    return Run(**medians, cpu_us={name: statistics.median(r.cpu_us.get(name, 0.0) for r in runs)
                                  for name in runs[0].cpu_us})


Results = dict[tuple[str, str], dict[str, Run]]  # (case, load) -> {"direct": run, "ingress": run}


class BareCaddy:
    """A second Caddy, of the same binary, with nothing but a reverse proxy to the instance: no
    host lookup, retries, headers, body limit or access log. Between direct and the ingress,
    it tells what Caddy itself costs here from what the ingress's configuration adds."""

    def __init__(self, direct: str, workdir: Path):
        self.port = free_port()
        self.config = workdir / "bare-caddy.json"
        self.config.write_text(json.dumps({"admin": {"disabled": True}, "apps": {"http": {"servers": {"bare": {
            "listen": [f"127.0.0.1:{self.port}"], "automatic_https": {"disable": True},
            "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": direct}]}]}]}}}}}))
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "BareCaddy":
        self.process = subprocess.Popen([venv_bin("caddy"), "run", "--config", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**os.environ, "HOME": str(self.config.parent)})
        try:
            wait_for_port(self.port, 20)
        except TimeoutError:
            self.__exit__()
            sys.exit("the bare Caddy did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def measure(app: BenchApp, direct: str, loads: list[Load], args, script: Path, cpu: CpuMeter,
            bare: BareCaddy | None) -> Results:
    targets = {"direct": (f"http://{direct}", None), "ingress": (app.ingress_url, app.host)}
    if bare is not None:
        targets["bare"] = (bare.url, None)
    runs: dict[tuple[str, str], dict[str, list[Run]]] = {
        (case, load.name): {name: [] for name in targets} for case in PATHS for load in loads}
    for path in PATHS.values():
        for url, host in targets.values():  # warm-up: connections, Caddy's upstream lookups, page cache
            wrk(url + path, host, loads[0], script, min(3, args.duration))
    for round_ in range(args.rounds):
        for case, path in PATHS.items():
            for load in loads:
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))  # drift hits all alike
                for name in order:
                    url, host = targets[name]
                    runs[case, load.name][name].append(run := wrk(url + path, host, load, script, args.duration, cpu))
                    print(f"  round {round_ + 1} {case:<5} {load.name:<4} {name:<7} {run.requests_per_second:9.0f} "
                          f"req/s  p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms", flush=True)
    return {key: {name: median_run(r) for name, r in by_target.items()} for key, by_target in runs.items()}


def report(results: Results, loads: list[Load], args, app: BenchApp, direct: str, logging: str) -> None:
    of = f"median of {args.rounds} rounds" if args.rounds > 1 else "one round"
    print(f"\ningress overhead: wrk -d{args.duration}s on loopback, {of}; "
          + ", ".join(f"{load.name} = -t{load.threads} -c{load.connections}" for load in loads))
    print(f"  direct:  http://{direct} (the instance's published port; {app.size})")
    print(f"  ingress: {app.ingress_url} Host: {app.host} (Caddy access logs: {logging})")
    print(f"\n  {'case':<6}{'load':<6}{'via':<9}{'req/s':>9}{'MB/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for (case, load), by_target in results.items():
        for name, r in by_target.items():
            print(f"  {case:<6}{load:<6}{name:<9}{r.requests_per_second:9.0f}{r.megabytes_per_second:9.1f}"
                  f"{r.p50_ms:9.2f}{r.p99_ms:9.2f}{r.errors:8.0f}")
    print(f"\n  ingress/direct (goal: throughput >= {GOAL_RATIO} loaded, p50 added < {GOAL_ADDED_P50_MS:.0f} ms):")
    for (case, load), by_target in results.items():
        direct_run, ingress_run = by_target["direct"], by_target["ingress"]
        ratio = ingress_run.requests_per_second / direct_run.requests_per_second
        if "bare" in by_target:
            bare_ratio = by_target["bare"].requests_per_second / direct_run.requests_per_second
            print(f"  {case:<6}{load:<6}bare Caddy throughput {bare_ratio:5.2f}   "
                  f"p50 {by_target['bare'].p50_ms - direct_run.p50_ms:+7.2f} ms")
        added_p50 = ingress_run.p50_ms - direct_run.p50_ms
        added_p99 = ingress_run.p99_ms - direct_run.p99_ms
        verdicts = [f"p50 goal {'met' if added_p50 < GOAL_ADDED_P50_MS else 'missed'}"]
        if load == loads[0].name:
            verdicts.insert(0, f"throughput goal {'met' if ratio >= GOAL_RATIO else 'missed'}")
        print(f"  {case:<6}{load:<6}throughput {ratio:5.2f}   p50 {added_p50:+7.2f} ms   p99 {added_p99:+7.2f} ms   "
              + ", ".join(verdicts))
    names = list(next(iter(next(iter(results.values())).values())).cpu_us)
    print(f"\n  CPU per request, µs (the machine's {os.cpu_count()} cores are shared by all of them):")
    print(f"  {'case':<6}{'load':<6}{'via':<9}" + "".join(f"{n:>12}" for n in names))
    for (case, load), by_target in results.items():
        for name, r in by_target.items():
            print(f"  {case:<6}{load:<6}{name:<9}" + "".join(f"{r.cpu_us.get(n, 0.0):12.1f}" for n in names))
    if errors := sum(r.errors for by_target in results.values() for r in by_target.values()):
        print(f"  {errors:.0f} requests failed or did not answer 2xx: the numbers above are not trustworthy")


def interrupted(signum, frame):
    raise KeyboardInterrupt  # so a `kill` cleans up as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=1, help="repeat direct/ingress pairs, report medians")
    parser.add_argument("--keep", action="store_true", help="do not delete the deployed application")
    parser.add_argument("--loaded-only", action="store_true", help="skip the one-connection latency runs")
    parser.add_argument("--bare-caddy", action="store_true",
                        help="also measure a Caddy that only proxies to the instance (what Caddy itself costs)")
    args = parser.parse_args()
    loads = [Load("load", args.threads, args.connections)]
    if not args.loaded_only:  # the latency the proxy adds to one request, without queueing behind others
        loads.append(Load("one", 1, 1))
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    env = env_of_region()
    layout = Layout.load(STATE)
    try:
        httpx.get(f"{env['REGIO_API_URL']}/openapi.json", timeout=5).raise_for_status()
    except httpx.HTTPError:
        sys.exit("no running region: start one with ./regio up")
    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory() as tmp:
        repo, script = Path(tmp) / "app", Path(tmp) / "report.lua"
        repo.mkdir()
        (repo / "Dockerfile").write_text(APP_DOCKERFILE)
        (repo / "app.py").write_text(APP_SOURCE)
        script.write_text(WRK_REPORT)
        git(repo, "init", "-qb", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "bench app")
        app = BenchApp(env)
        try:
            app.create(repo)
            print(f"deploying {app.host} ({app.size}) ...", flush=True)
            app.deploy()
            direct = app.direct_address()
            app.wait_until_served(direct)
            logging = ingress_logging(caddy_admin_socket(layout.state_dir))
            with contextlib.ExitStack() as stack:
                bare = stack.enter_context(BareCaddy(direct, Path(tmp))) if args.bare_caddy else None
                cpu = CpuMeter(app.container_id(), int(caddy_child_pidfile(STATE).read_text()),
                               int((STATE / "run" / "ingress.pid").read_text()), int(direct.rpartition(":")[2]),
                               bare and bare.process.pid)
                results = measure(app, direct, loads, args, script, cpu, bare)
            report(results, loads, args, app, direct, logging)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
        finally:
            if args.keep and app.app_url:
                print(f"kept the application: {env['REGIO_API_URL']}{app.app_url} (Host {app.host})")
            else:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave it behind
                app.delete()


if __name__ == "__main__":
    main()
