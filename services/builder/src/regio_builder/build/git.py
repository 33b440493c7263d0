"""Fetch the head of one branch with git: a shallow clone, nothing else of the history; or
one commit of the branch, when a build asks for one, with as much history as finding it takes.

The URL and branch come from a tenant. Before git runs, the source is checked against this
builder's own settings (a command may come from elsewhere than the control panel), the host
is resolved and every address checked, and git is made to connect to exactly those
addresses. Git runs with no system or user configuration, only the one transport the URL
names, no redirects, and credentials read from private files, never from its command line."""
import asyncio
import contextlib
import os
import re
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from regio_common import repository_sources as sources
from regio_common.repository_sources import RepositorySource, SourceRefused

from ..domain.errors import CommitNotOnBranch, InvalidCommit, RepositoryUnavailable

# Variables of the builder's own environment that would change what git runs or whom it asks.
_INHERITED_OUT = ("GIT_", "SSH_ASKPASS", "SSH_AUTH_SOCK")
_INHERITED_KEPT = ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH")  # the operator's choice of trusted CAs

# A full object id: SHA-1, or SHA-256 for a repository in that format. Never an abbreviation,
# which may name another object by the time the build runs, nor a ref name.
COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SHOWN = 80  # characters of a refused commit value the error quotes (it may be of any size)
# History fetched first when the commit asked for is not the branch's head: a migration asks
# for a commit a few deployments old at most. All of it when that is not enough.
FIRST_DEEPEN = 100


@dataclass(frozen=True)
class SourcePolicy:
    """What this builder may clone from (its settings; the region's in the control panel)."""

    allow_local: bool = False
    allow_private_hosts: bool = False


@dataclass(frozen=True)
class Access:
    """A repository's credentials, opened by the builder: HTTP basic or an SSH deploy key."""

    username: str | None = None
    password: str | None = None
    ssh_private_key: str | None = None


def display_url(url: str) -> str:
    """The URL without credentials, fit for a log line."""
    try:
        return sources.parse(url).url
    except SourceRefused:
        return "the repository"


async def _git(args: list[str], cwd: Path | None, env: dict[str, str], timeout: float,
               on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run git; every line it prints goes to ``on_line``; its exit code and lines come back."""
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        # A group of its own: git runs helpers (git-remote-http, ssh) that must die with it.
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


def commit_id(value: str) -> str:
    """The commit id in git's spelling (lowercase); InvalidCommit for anything else."""
    spelled = value.lower()
    if COMMIT_ID.fullmatch(spelled):
        return spelled
    shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
    raise InvalidCommit(f"the commit to build must be a full commit id (40 or 64 hexadecimal digits), "
                        f"not {shown!r}")


def _reason(lines: list[str], fallback: str) -> str:
    """git's own explanation: its fatal line, else its last line."""
    for line in reversed(lines):
        if line.startswith("fatal:"):
            return line.removeprefix("fatal:").strip()
    return next((line.strip() for line in reversed(lines) if line.strip()), fallback)


async def checked_source(url: str, branch: str, policy: SourcePolicy) -> tuple[RepositorySource, list[str]]:
    """The source and the addresses git may connect to; RepositoryUnavailable when refused."""
    try:
        source = sources.parse(url)
        sources.check_branch(branch)
        sources.check(source, allow_local=policy.allow_local)
        if source.local:
            return source, []
        addresses = await sources.resolve(source.host, source.effective_port)
        if not policy.allow_private_hosts:
            sources.refuse_private(source.host, addresses)
    except SourceRefused as e:
        raise RepositoryUnavailable(f"refused to clone {display_url(url)}: {e}") from None
    return source, addresses


class _GitSetup:
    """The environment of one clone: configuration through GIT_CONFIG_* (not argv) and the
    secret files in a private directory outside the checkout (not in the image's context)."""

    def __init__(self, private: Path, known_hosts: Path):
        self.private = private
        self.known_hosts = known_hosts
        self.config: list[tuple[str, str]] = []
        self.env: dict[str, str] = {}

    def write_secret(self, name: str, content: str) -> Path:
        path = self.private / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        return path

    def for_source(self, source: RepositorySource, addresses: list[str], access: Access | None) -> str:
        """Configures git for ``source``; the URL git is given."""
        url = source.url
        self.config += [
            ("protocol.allow", "never"),
            (f"protocol.{source.scheme}.allow", "always"),
            ("http.followRedirects", "false"),  # a redirect would go to a host nobody checked
            ("submodule.recurse", "false"),
            ("core.askPass", ""),
            ("credential.helper", ""),
        ]
        # GIT_ALLOW_PROTOCOL also binds what submodules and remote helpers may use.
        self.env["GIT_ALLOW_PROTOCOL"] = source.scheme
        pin = addresses[0] if addresses and addresses[0] != source.host else None
        if source.scheme in ("http", "https") and pin:
            # curl connects to the addresses checked, whatever the name resolves to later
            # (DNS rebinding); TLS still verifies the certificate against the name.
            listed = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
            self.config.append(("http.curloptResolve", f"{source.host}:{source.effective_port}:{listed}"))
        if source.scheme == "git" and pin:
            host = f"[{pin}]" if ":" in pin else pin
            port = f":{source.port}" if source.port else ""
            url = f"git://{host}{port}{source.path}"
        if source.scheme == "ssh":
            self._ssh(source, pin, access)
        if access and access.password is not None and source.scheme in ("http", "https"):
            # git's own store helper reads the token from a private file (and forgets nothing into argv).
            userinfo = f"{quote(access.username or '', safe='')}:{quote(access.password, safe='')}"
            netloc = source.host if not source.port else f"{source.host}:{source.port}"
            store = self.write_secret("credentials", f"{source.scheme}://{userinfo}@{netloc}\n")
            self.config.append(("credential.helper", f"store --file={shlex.quote(str(store))}"))
        return url

    def _ssh(self, source: RepositorySource, pin: str | None, access: Access | None) -> None:
        alias = source.host if source.effective_port == 22 else f"[{source.host}]:{source.effective_port}"
        command = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                   "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=accept-new",
                   "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", f"HostKeyAlias={alias}"]
        if pin:
            command += ["-o", f"HostName={pin}"]
        if access and access.ssh_private_key:
            key = self.write_secret("deploy_key", access.ssh_private_key.rstrip("\n") + "\n")
            command += ["-i", str(key)]
        else:
            # Without -i ssh offers its default keys (~/.ssh/id_*, ~ from the passwd entry, so
            # neither -F /dev/null nor HOME stops it): the builder user's own keys must not get in.
            command += ["-o", "IdentityFile=none", "-o", "PubkeyAuthentication=no"]
        self.env["GIT_SSH_COMMAND"] = shlex.join(command)
        self.env["GIT_SSH_VARIANT"] = "ssh"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_OUT) or k in _INHERITED_KEPT}
        env.update({
            "GIT_TERMINAL_PROMPT": "0",  # a private repository fails instead of waiting for a password
            "LC_ALL": "C",  # git's messages in English, the words users search for
            "HOME": str(self.private),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_CONFIG_COUNT": str(len(self.config)),
        })
        for i, (key, value) in enumerate(self.config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        env.update(self.env)
        return env


async def _run(what: str, args: list[str], cwd: Path | None, env: dict[str, str], timeout: float,
               on_line: Callable[[str], None]) -> list[str]:
    """Run git; RepositoryUnavailable, with git's reason, when it fails or outlasts ``timeout``."""
    try:
        code, lines = await _git(args, cwd, env, timeout, on_line)
    except TimeoutError:
        raise RepositoryUnavailable(f"{what} did not finish within {timeout:g} seconds") from None
    if code != 0:
        raise RepositoryUnavailable(f"{what} failed: {_reason(lines, f'exit code {code}')}")
    return lines


def _quiet(_line: str) -> None:
    pass


async def _on_branch(commit: str, checkout: Path, env: dict[str, str], timeout: float) -> bool:
    """Whether the clone has ``commit`` in the history of its head (git exits 1 when not an
    ancestor, 128 when it has no such commit, or not yet: the clone may be shallow)."""
    code, _lines = await _git(["merge-base", "--is-ancestor", commit, "HEAD"], checkout, env, timeout, _quiet)
    return code == 0


async def _check_out_commit(commit: str, branch: str, checkout: Path, env: dict[str, str], timeout: float,
                            on_line: Callable[[str], None]) -> None:
    """Check out ``commit`` in the shallow clone of ``branch``, fetching the branch's history
    (some, then all) until it has the commit; CommitNotOnBranch when the branch has it nowhere.
    Only the branch's history is ever fetched, so a commit of another branch is not found."""
    deepen = [f"--deepen={FIRST_DEEPEN}", "--unshallow"]
    while not await _on_branch(commit, checkout, env, timeout):
        shallow = await _run("git rev-parse", ["rev-parse", "--is-shallow-repository"], checkout, env, timeout,
                             _quiet)
        if not deepen or shallow[-1:] != ["true"]:
            raise CommitNotOnBranch(f"branch {branch} does not contain commit {commit}")
        step = deepen.pop(0)
        fetched = "the whole history" if step == "--unshallow" else f"{FIRST_DEEPEN} more commits"
        on_line(f"Fetching {fetched} of branch {branch} to find commit {commit}")
        await _run("git fetch", ["fetch", "--no-tags", step, "origin"], checkout, env, timeout, on_line)
    await _run("git checkout", ["checkout", "--quiet", "--detach", commit], checkout, env, timeout, on_line)


async def clone(url: str, branch: str, into: Path, timeout: float, on_line: Callable[[str], None], *,
                policy: SourcePolicy, access: Access | None, known_hosts: Path, commit: str | None = None) -> str:
    """Clone the head of ``branch`` into ``into`` (which must not exist), or its ``commit`` when
    given (a full commit id, see ``commit_id``); the commit id checked out. ``timeout`` bounds
    each git command."""
    if commit is not None:
        commit = commit_id(commit)
    source, addresses = await checked_source(url, branch, policy)
    if access is None and source.credentials is not None:
        # A build requested before credentials were sealed apart: its token is in the URL. Git
        # still gets it from the private file, and the URL it is given has none.
        access = Access(username=source.credentials[0], password=source.credentials[1])
    private = into.parent / f".{into.name}-git"
    private.mkdir(mode=0o700)
    setup = _GitSetup(private, known_hosts)
    git_url = setup.for_source(source, addresses, access)
    env = setup.environment()
    try:
        await _run("git clone",
                   ["clone", "--depth", "1", "--branch", branch, "--single-branch", "--no-tags", "--", git_url,
                    str(into)],
                   None, env, timeout, on_line)
        if commit is not None:
            # The fetches reach the same addresses, with the same credentials, as the clone.
            await _check_out_commit(commit, branch, into, env, timeout, on_line)
    finally:
        for secret in ("credentials", "deploy_key"):
            (private / secret).unlink(missing_ok=True)
    code, lines = await _git(["rev-parse", "HEAD"], into, env, timeout, _quiet)
    if code != 0 or not lines:
        raise RepositoryUnavailable(f"cannot read the cloned commit: {_reason(lines, f'exit code {code}')}")
    return lines[-1].strip()
