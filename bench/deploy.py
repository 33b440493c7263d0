"""How long from a deploy request to the new version's first page, against doing the
same by hand with docker in the same run, and where Regio's time goes.

Baseline: `docker build` + `docker run -p` + poll the container until it answers.
Regio: POST /apps/v3/deployments/ + poll the ingress until the new version answers.
Each round changes the app's source so both really build (with a warm layer cache).

Regio's time is split with the deployment's step timings: build, release commands,
start until healthy (scaling + sanity tests: the runner starts the container and it
answers), and the platform's own overhead: everything else (queueing, provisioning,
making the release, messaging between steps, moving the route, the first page).

    .venv/bin/python bench/deploy.py [--rounds 3]     # needs a running region (./regio up)
"""
import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

from regio_common.layout import default_state_dir

APP = Path(__file__).resolve().parents[1] / "tests" / "apps" / "hello"


def env_of_region() -> dict[str, str]:
    lines = (default_state_dir(Path(__file__).parent) / "env").read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))


def set_version(src: Path, version: str) -> None:
    app = src / "app.py"
    app.write_text("\n".join(
        f'VERSION = "{version}"' if line.startswith("VERSION = ") else line for line in app.read_text().splitlines()) + "\n")


def wait_for(url: str, needle: str, headers: dict | None = None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if needle in httpx.get(url, headers=headers, timeout=2).text:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{needle!r} never appeared at {url}")


def by_hand(src: Path, version: str) -> float:
    set_version(src, version)
    tag = f"regio-bench/hand:{version}"
    started = time.monotonic()
    subprocess.run(["docker", "build", "-q", "-t", tag, str(src)], check=True, capture_output=True)
    cid = subprocess.run(["docker", "run", "-d", "-p", "127.0.0.1::8000", tag], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        port = subprocess.run(["docker", "port", cid, "8000/tcp"], check=True, capture_output=True,
                              text=True).stdout.split(":")[-1].strip()
        wait_for(f"http://127.0.0.1:{port}/", f"version {version}")
        return time.monotonic() - started
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        subprocess.run(["docker", "rmi", tag], capture_output=True)


class RegioApp:
    def __init__(self, env: dict[str, str], repo: Path):
        self.env = env
        self.repo = repo
        self.api = httpx.Client(base_url=env["REGIO_API_URL"], headers={"Authorization": f"Token {env['REGIO_TOKEN']}"})
        org = self.api.get("/iam/v3/organisations/").json()["results"][0]["uuid"]
        repository = self.api.post("/apps/v3/repositories/", json={"organisation": org, "url": f"file://{repo}"}).json()
        app = self.api.post("/apps/v3/applications/", json={
            "name": "bench", "slug": f"bench-{uuid.uuid4().hex[:6]}", "organisation": org,
            "repository": repository["uuid"], "branch": "main"}).json()
        self.environment = app["test_status"]["uuid"]
        self.app_url = f"/apps/v3/applications/{app['uuid']}/"
        self.host = f"{app['slug']}-stage.{env['REGIO_REGION_DOMAIN']}"

    def deploy(self, version: str) -> tuple[float, dict[str, float]]:
        """Seconds to the first page, and the seconds of each part."""
        set_version(self.repo, version)
        git(self.repo, "commit", "-qam", version)
        started = time.monotonic()
        response = self.api.post("/apps/v3/deployments/", json={"environment": self.environment})
        response.raise_for_status()
        wait_for(f"{self.env['REGIO_INGRESS_URL']}/", f"version {version}", headers={"Host": self.host})
        total = time.monotonic() - started
        steps = self.steps(response.json()["uuid"])
        parts = {"build": steps.get("build", 0.0), "release commands": steps.get("release commands", 0.0),
                 "start until healthy": steps.get("scaling", 0.0) + steps.get("sanity tests", 0.0)}
        parts["overhead"] = total - sum(parts.values())
        return total, parts

    def steps(self, deployment_id: str) -> dict[str, float]:
        deadline = time.monotonic() + 60
        while (deployment := self.api.get(f"/apps/v3/deployments/{deployment_id}/").json())["ended_at"] is None:
            assert time.monotonic() < deadline, "the deployment served but never ended"
            time.sleep(0.05)
        return {s["name"]: (datetime.fromisoformat(s["ended_at"]) - datetime.fromisoformat(s["started_at"])).total_seconds()
                for s in deployment["steps"]}

    def delete(self) -> None:
        self.api.delete(self.app_url)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.test", *args],
                   check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        hand_src, repo = Path(tmp) / "hand", Path(tmp) / "repo"
        shutil.copytree(APP, hand_src)
        shutil.copytree(APP, repo)
        git(repo, "init", "-qb", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "start")
        regio = RegioApp(env_of_region(), repo)
        try:
            regio.deploy("warmup")
            hand, platform, parts = [], [], []
            for i in range(rounds):  # interleaved, so drift on a noisy machine hits both alike
                hand.append(by_hand(hand_src, f"h{i}-{uuid.uuid4().hex[:4]}"))
                total, split = regio.deploy(f"r{i}-{uuid.uuid4().hex[:4]}")
                platform.append(total)
                parts.append(split)
        finally:
            regio.delete()
    h, p = statistics.median(hand), statistics.median(platform)
    print(f"deploy → first page of the new version, median of {rounds} (warm layer cache, real build):")
    print(f"  by hand (docker build + run + poll): {h:6.2f} s   {[round(x, 2) for x in hand]}")
    print(f"  regio (API → ingress serves it):     {p:6.2f} s   {[round(x, 2) for x in platform]}")
    print(f"  ratio regio / by hand: {p / h:.2f}  (difference {p - h:+.2f} s)")
    print("  where regio's time goes (median of each part):")
    for name in parts[0]:
        median = statistics.median(split[name] for split in parts)
        print(f"    {name:<20} {median:6.2f} s  {median / p:5.1%}   {[round(split[name], 2) for split in parts]}")


if __name__ == "__main__":
    main()
