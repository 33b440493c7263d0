"""One Python process that has imported the region's services once and forks each of them.

An idle service is almost all imported code (FastAPI, SQLAlchemy, pydantic, nats-py: about
65 MB each); forked from one process that imported it, its pages are shared until written,
so a further region's four services cost about half as much memory as four interpreters
that each import the same. The launcher listens on a Unix socket in the region's private
run directory (0600, its owner alone may connect) and starts only the region's services'
packages; the environment, secrets included, travels on the socket, never on a command line.

A launched service is a process of its own, in a session of its own, as if `regio up` had
started it: its pid file, its log, and `regio down` stop it the same way. The launcher only
forks: a service keeps running when the launcher stops."""
import gc
import importlib
import json
import os
import runpy
import signal
import socket
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from regio_common.processes import ManagedProcess

# The packages it may start, and the modules each imports (imported here, before any fork).
PACKAGES = {"regio_builder": "regio_builder.main", "regio_controller": "regio_controller.main",
            "regio_ingress": "regio_ingress.main", "regio_runner": "regio_runner.main"}
# What they import later, at start (the database driver, uvicorn's server): imported here too.
ALSO_IMPORTED = ("asyncpg", "sqlalchemy.dialects.postgresql.asyncpg", "uvicorn.config", "uvicorn.server",
                 "uvicorn.lifespan.on", "uvicorn.protocols.http.auto", "uvicorn.protocols.http.h11_impl",
                 "uvicorn.protocols.http.httptools_impl", "uvicorn.protocols.websockets.auto",
                 "uvicorn.loops.auto", "uvicorn.loops.asyncio", "uvicorn.loops.uvloop", "termios")
MAX_REQUEST = 256 * 1024


def socket_path(state_dir: Path) -> Path:
    return state_dir / "run" / "launcher.sock"


def launcher_process(state_dir: Path, cwd: Path) -> ManagedProcess:
    sock = socket_path(state_dir)
    return ManagedProcess(name="launcher", argv=[sys.executable, "-m", "regio_cli.launcher", str(sock)],
                          state_dir=state_dir, unix_socket=sock, cwd=cwd)


@dataclass
class LaunchedProcess(ManagedProcess):
    """A service the region's launcher forks (ManagedProcess's argv stays what `regio run` execs)."""

    launcher_socket: Path | None = None

    def _spawn(self) -> int:
        """Asks the region's launcher to fork it (ManagedProcess.start checks and records it)."""
        package = self.argv[self.argv.index("-m") + 1]
        request = {"package": package, "env": {**os.environ, **self.env}, "log": str(self.log_path),
                   "cwd": str(self.cwd or Path.cwd())}
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(self.launcher_socket))
            s.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(s.makefile("rb").readline() or b"{}")
        if "pid" not in reply:
            raise RuntimeError(f"the launcher did not start {self.name}: {reply.get('error', 'no answer')}")
        return reply["pid"]


def _child(request: dict, listener: socket.socket, conn: socket.socket) -> None:
    """In the forked process: become the service, as `python -m PACKAGE` with its environment."""
    code = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()  # its own process group: `regio down` signals it and its children alone
        listener.close()
        conn.close()
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [request["package"]]
        gc.enable()
        runpy.run_module(request["package"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                line = conn.makefile("rb").readline(MAX_REQUEST)
                request = json.loads(line)
                if request.get("package") not in PACKAGES:
                    raise ValueError(f"not a service it starts: {request.get('package')!r}")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(request, listener, conn)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except (ValueError, KeyError, TypeError, OSError) as e:
                try:
                    conn.sendall(json.dumps({"error": str(e)}).encode() + b"\n")
                except OSError:
                    pass


def main(path: str) -> None:
    for module in PACKAGES.values():
        importlib.import_module(module)
    for module in ALSO_IMPORTED:
        try:
            importlib.import_module(module)
        except ImportError:  # optional (uvloop, httptools): a service imports what it has
            pass
    from sqlalchemy.orm import configure_mappers
    configure_mappers()  # every service's models, configured once rather than in each
    # Objects imported so far are left alone by the collector, so a child's collections do
    # not write to (and so copy) the pages they share with the launcher.
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    sock = Path(path)
    sock.unlink(missing_ok=True)
    old_umask = os.umask(0o177)  # the socket is its owner's alone from the start
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    os.umask(old_umask)
    listener.listen(16)
    print(f"launcher: ready on {sock}", flush=True)
    _serve(listener)


if __name__ == "__main__":
    main(sys.argv[1])
