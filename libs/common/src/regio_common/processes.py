"""Background processes that outlive the command that started them, tracked by pid files.

`regio up` starts the region's servers and services this way, and the test plugin
reuses the same code, so what the tests run is what an operator runs."""
import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class PortTaken(Exception):
    def __init__(self, name: str, port: int):
        super().__init__(f"port {port} (for {name}) is already taken by another program")
        self.name = name
        self.port = port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def socket_open(path: Path) -> bool:
    """Something accepts connections on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(0.2)
        return s.connect_ex(str(path)) == 0


def wait_for_socket(path: Path, timeout: float, process: "ManagedProcess | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if socket_open(path):
            return
        if process is not None and not process.running():
            raise RuntimeError(f"{process.name} exited while starting; see {process.log_path}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing answered on {path} after {timeout:.0f}s")


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (user and system), for benchmarks' breakdowns."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1", process: "ManagedProcess | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, host):
            return
        if process is not None and not process.running():
            raise RuntimeError(f"{process.name} exited while starting; see {process.log_path}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing answered on {host}:{port} after {timeout:.0f}s")


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    state_dir: Path
    port: int | None = None  # the port it listens on, checked before start
    unix_socket: Path | None = None  # the Unix socket it listens on instead, when it has no port
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None  # run as this system user (PostgreSQL refuses to run as root)
    # How to ask it to stop. PostgreSQL wants SIGINT ("fast shutdown") sent to the
    # postmaster alone: signalling its whole group kills backends under it mid-shutdown.
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        # A pid can be reused after a reboot: check it is still our program.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except FileNotFoundError:
            return None
        if not cmdline:
            # Empty while the kernel is still exec'ing the program we just started (and
            # for a zombie): the first is ours and running, the second is gone.
            return None if not self._alive(pid) else pid
        return pid if _same_program(cmdline, self.argv[0]) else None

    def running(self) -> bool:
        return self.pid() is not None

    def wait_listening(self, timeout: float) -> None:
        """Until it accepts connections on its port or, without one, its Unix socket."""
        if self.port is not None:
            wait_for_port(self.port, timeout, process=self)
        elif self.unix_socket is not None:
            wait_for_socket(self.unix_socket, timeout, process=self)

    def start(self) -> bool:
        """Start unless running; True when it was started now."""
        if self.running():
            return False
        if self.port is not None and port_open(self.port):
            raise PortTaken(self.name, self.port)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.write_text(f"{self._spawn()}\n")
        return True

    def _spawn(self) -> int:
        """Starts the process, logging to its log; its pid."""
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,  # survives the CLI; `regio down` stops it
                user=self.user,
                group=self.user,
            ).pid

    def exec(self) -> None:
        """Become this process, in the foreground, logging to stdout: how a container runs it
        (docker-compose.yml), where the container is the supervisor and pid files have no use."""
        env = {**os.environ, **self.env}
        if self.cwd is not None:
            os.chdir(self.cwd)
        if self.user is not None and os.getuid() == 0:
            entry = pwd.getpwnam(self.user)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        os.execvpe(self.argv[0], self.argv, env)

    def stop(self, timeout: float = 15.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        try:
            if self.signal_group:
                os.killpg(pid, self.stop_signal)
            else:
                os.kill(pid, self.stop_signal)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.05)
        if self._alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)
        return True

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie child of ours counts as gone.
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except FileNotFoundError:
            return False


def _same_program(running: str, ours: str) -> bool:
    """By name, or by the file both resolve to: a region started with a virtualenv's ``python3``
    is still running when asked from its ``python``."""
    if Path(running).name == Path(ours).name:
        return True
    try:
        return Path(running).resolve() == Path(ours).resolve()
    except OSError:
        return False
