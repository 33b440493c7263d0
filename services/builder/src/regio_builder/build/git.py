"""Fetch the head of one branch with git: a shallow clone, nothing else of the history."""
import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..domain.errors import RepositoryUnavailable

# Local paths, scp-like addresses and git's command transports (ext::) are refused:
# a repository URL comes from a user and must not make the builder run or read anything else.
SCHEMES = frozenset({"file", "http", "https", "git"})


def display_url(url: str) -> str:
    """The URL without credentials, fit for a log line."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # a private repository fails instead of waiting for a password
    env["LC_ALL"] = "C"  # git's messages in English, the words users search for
    return env


async def _git(args: list[str], cwd: Path | None, timeout: float, on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run git; every line it prints goes to ``on_line``; its exit code and lines come back."""
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=_environment(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        # A group of its own: git runs helpers (git-remote-http) that must die with it.
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                lines.append(line)
                on_line(line)
            await process.wait()
    except BaseException:  # a timeout, or the build being cancelled: leave no git behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return process.returncode, lines


def _reason(lines: list[str], fallback: str) -> str:
    """git's own explanation: its fatal line, else its last line."""
    for line in reversed(lines):
        if line.startswith("fatal:"):
            return line.removeprefix("fatal:").strip()
    return next((line.strip() for line in reversed(lines) if line.strip()), fallback)


async def clone(url: str, branch: str, into: Path, timeout: float, on_line: Callable[[str], None]) -> str:
    """Clone the head of ``branch`` into ``into`` (which must not exist); its commit id."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise RepositoryUnavailable(
            f"cannot clone {display_url(url)!r}: the repository URL must start with "
            + ", ".join(f"{s}://" for s in sorted(SCHEMES))
        )
    try:
        code, lines = await _git(
            ["clone", "--depth", "1", "--branch", branch, "--single-branch", "--no-tags", "--", url, str(into)],
            None, timeout, on_line,
        )
    except TimeoutError:
        raise RepositoryUnavailable(f"git clone did not finish within {timeout:g} seconds") from None
    if code != 0:
        raise RepositoryUnavailable(f"git clone failed: {_reason(lines, f'exit code {code}')}")
    code, lines = await _git(["rev-parse", "HEAD"], into, timeout, lambda _line: None)
    if code != 0 or not lines:
        raise RepositoryUnavailable(f"cannot read the cloned commit: {_reason(lines, f'exit code {code}')}")
    return lines[-1].strip()
