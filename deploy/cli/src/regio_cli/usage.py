"""`regio status --usage`: what each process of a region costs, memory (PSS, so shared pages
are split between their sharers, not counted in full by each) and CPU, and a total per region.

A process is counted with its whole tree (PostgreSQL's backends, Caddy under its socket
holder). The first region's PostgreSQL also serves every further region's services: its
backends connected to a further region's database are counted in that region."""
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from regio_common.processes import ManagedProcess, cpu_seconds

SAMPLE_SECONDS = 3.0


@dataclass
class Row:
    region: str
    name: str
    pids: set[int]
    pss_mb: float = 0.0
    cpu_percent: float = 0.0


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc (one read of every process's stat)."""
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree[ppid].append(int(entry.name))
    return tree


def descendants(pid: int, tree: dict[int, list[int]]) -> set[int]:
    found, todo = {pid}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def pss_kb(pid: int) -> int:
    """Its proportional set size; 0 when it is gone or not ours to read."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _cpu(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None


def postgres_database(pid: int) -> str | None:
    """The database a PostgreSQL backend serves, from its title ("postgres: USER DATABASE HOST ...")."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
    except OSError:
        return None
    return title[2] if len(title) >= 4 and title[0] == "postgres:" else None


def measure(regions: dict[str, list[ManagedProcess]], databases: dict[str, str],
            seconds: float = SAMPLE_SECONDS) -> list[Row]:
    """One row per running process of each region (``regions``: slug → its processes), measured
    over ``seconds``; ``databases``: a further region's database → its slug, whose backends in
    another region's PostgreSQL are moved to a row of that region's."""
    tree = children()
    roots = {(region, process.name): process.pid() for region, processes in regions.items() for process in processes}
    roots = {key: pid for key, pid in roots.items() if pid is not None}
    rows: list[Row] = []
    for (region, name), pid in roots.items():
        # A process started by another of the rows (a service its region's launcher forked) is its own row.
        others = [descendants(other, tree) for other in roots.values() if other != pid]
        below = descendants(pid, tree)
        rows.append(Row(region, name, below - set().union(*(o for o in others if pid not in o))))
    moved: dict[str, Row] = {}
    for row in rows:
        for pid in list(row.pids):
            owner = databases.get(postgres_database(pid) or "")
            if owner is not None and owner != row.region:
                row.pids.discard(pid)
                moved.setdefault(owner, Row(owner, f"{row.name} (its backends)", set())).pids.add(pid)
    rows += moved.values()
    before = {pid: _cpu(pid) for row in rows for pid in row.pids}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    for row in rows:
        used = 0.0
        for pid in row.pids:
            after = _cpu(pid)
            if after is not None and before.get(pid) is not None:
                used += after - before[pid]
        row.cpu_percent = 100 * used / elapsed
        row.pss_mb = sum(pss_kb(pid) for pid in row.pids) / 1024
    return rows


def table(rows: list[Row]) -> list[str]:
    lines = []
    by_region: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_region[row.region].append(row)
    for region, region_rows in by_region.items():
        lines.append(f"{'REGION ' + region:34} {'PROCESSES':>9} {'PSS MB':>8} {'CPU %':>7}")
        for row in region_rows:
            lines.append(f"  {row.name:32} {len(row.pids):>9} {row.pss_mb:>8.1f} {row.cpu_percent:>7.1f}")
        lines.append(f"  {'total':32} {sum(len(r.pids) for r in region_rows):>9} "
                     f"{sum(r.pss_mb for r in region_rows):>8.1f} {sum(r.cpu_percent for r in region_rows):>7.1f}")
    if os.geteuid() != 0:
        lines.append("(processes of other accounts, such as PostgreSQL's, count 0 MB unless run as root)")
    return lines
