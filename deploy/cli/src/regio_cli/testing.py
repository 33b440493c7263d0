"""`regio test`: the whole suite in two phases. Each service's own tests need only
Postgres, a NATS server of their own and Docker, so those suites run side by side, and
beside them the API tests (fuzzing and a generated client), which use the running region
but neither restart it nor measure it. The other tests that cross services share the one
running region (and some restart its services or measure it under load), so they run
after, alone.

The containerised region's test (tests/compose) is not in the whole suite: it builds an
image and starts a second region, which slowed every suite beside it by about half (that
phase took 525 s instead of about 330 s) and the whole run to about 20 minutes.
`regio test tests/compose` runs it."""
import subprocess
import sys
import time
from pathlib import Path

SIDE_BY_SIDE = ("libs/common/tests", "services/controlpanel/tests", "services/builder/tests",
                "services/controller/tests", "services/runner-agent/tests", "services/ingress/tests", "tests/api")
CROSS_SERVICE = ["tests", "--ignore=tests/api", "--ignore=tests/compose"]


def names_paths(args: list[str]) -> bool:
    """Arguments naming tests (paths, node ids) mean: run just those, the plain pytest way."""
    return any(not a.startswith("-") for a in args)


def pytest(checkout: Path, args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=checkout, **kwargs)


def run_suites(checkout: Path, args: list[str], say) -> int:
    output = checkout / "test-output"
    output.mkdir(exist_ok=True)
    started = time.monotonic()
    running = {}
    for suite in SIDE_BY_SIDE:
        log = (output / f"{suite.replace('/', '_')}.log").open("w")
        running[suite] = (pytest(checkout, [suite, *args], stdout=log, stderr=subprocess.STDOUT), log)
    failed = []
    for suite, (process, log) in running.items():
        code = process.wait()
        log.close()
        # Each suite's output in full, one after the other, so the run reads like a sequential one.
        sys.stdout.write(f"\n===== {suite} (exit {code}) =====\n{Path(log.name).read_text()}")
        if code != 0:
            failed.append(suite)
    say(f"side-by-side suites took {time.monotonic() - started:.0f}s")
    started = time.monotonic()
    sys.stdout.write(f"\n===== {' '.join(CROSS_SERVICE)} =====\n")
    sys.stdout.flush()
    # This phase is most of the run's time: its slowest tests are named at the end of its output.
    if pytest(checkout, [*CROSS_SERVICE, "--durations=12", *args]).wait() != 0:
        failed.append(CROSS_SERVICE[0])
    say(f"cross-service tests took {time.monotonic() - started:.0f}s")
    if failed:
        say(f"failed: {', '.join(failed)}")
        return 1
    return 0
