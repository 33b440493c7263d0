"""A process limit on the builds' containers, through the cgroup they are placed under.

The Engine's build API limits each step's memory and CPU, but not its processes; it does
take a cgroup parent for the steps' containers. A limit on that parent bounds a fork bomb in
a build. The builder runs one build at a time, so the parent's limit is the build's.
Only for the Engine's cgroupfs driver (its cgroup parents are paths, not systemd slices)."""
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def limit_pids(parent: str, pids_max: int, root: Path = ROOT) -> Path:
    """Make the cgroup ``parent`` ("/regio-builds") if missing and set its process limit;
    returns the file written. Raises OSError where the hierarchy cannot be written."""
    relative = parent.strip("/")
    if (root / "cgroup.controllers").exists():  # cgroup v2: one hierarchy
        if "pids" not in (root / "cgroup.subtree_control").read_text().split():
            (root / "cgroup.subtree_control").write_text("+pids")
        directory = root / relative
    else:  # cgroup v1: the pids controller's own hierarchy
        directory = root / "pids" / relative
    directory.mkdir(parents=True, exist_ok=True)
    limit = directory / "pids.max"
    limit.write_text(str(pids_max))
    return limit


def remove(parent: str, root: Path = ROOT) -> None:
    """Remove an empty cgroup parent (a test's own), from every hierarchy the Engine made it in."""
    relative = parent.strip("/")
    for directory in (root / relative, *(hierarchy / relative for hierarchy in root.iterdir())):
        try:
            directory.rmdir()
        except OSError:
            pass
