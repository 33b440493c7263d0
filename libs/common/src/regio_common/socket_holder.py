"""Holds a server's listening sockets across the server's restarts: socket activation, as
systemd does it, for a region without systemd.

    python -m regio_common.socket_holder --child-pidfile PATH HOST:PORT [HOST:PORT ...] -- ARGV...

binds and listens on each address, then runs ARGV with the sockets as file descriptors 3, 4, …
in that order (Caddy serves them with "listen": ["fd/3"]), and runs it again whenever it
exits. A connection that arrives while the server restarts waits in the socket's queue and
is accepted by the next one, where an unheld port would refuse it. SIGTERM or SIGINT stop
the server (forwarded) and then the holder; the sockets close with it."""
import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

FIRST_FD = 3
PR_SET_PDEATHSIG = 1  # linux/prctl.h
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
# A server that keeps exiting is started again after a pause that doubles, up to the last;
# one that ran this long starts over at the first.
RESTART_DELAYS = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)
STEADY_SECONDS = 10.0


def listening_socket(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), int(port)))
    sock.listen(BACKLOG)
    return sock


class Holder:
    def __init__(self, sockets: list[socket.socket], argv: list[str], child_pidfile: Path):
        self.sockets = sockets
        self.argv = argv
        self.child_pidfile = child_pidfile
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def _before_exec(self) -> None:
        """In the child: the sockets at 3, 4, … whatever numbers they had here; and its end with
        the holder's, so a holder killed outright leaves no server behind on its sockets."""
        for offset, sock in enumerate(self.sockets):
            os.dup2(sock.fileno(), FIRST_FD + offset)  # dup2 clears close-on-exec on the copy
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def stop(self, signum, frame) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        fds = tuple(range(FIRST_FD, FIRST_FD + len(self.sockets)))
        self.child_pidfile.parent.mkdir(parents=True, exist_ok=True)
        streak = 0
        while not self.stopping:
            started = time.monotonic()
            self.child = subprocess.Popen(self.argv, preexec_fn=self._before_exec, pass_fds=fds)
            self.child_pidfile.write_text(str(self.child.pid))
            code = self.child.wait()
            if self.stopping:
                break
            streak = 0 if time.monotonic() - started >= STEADY_SECONDS else streak + 1
            delay = RESTART_DELAYS[min(streak, len(RESTART_DELAYS) - 1)]
            print(f"socket holder: {self.argv[0]} exited with {code}; starting it again in {delay:g}s",
                  file=sys.stderr, flush=True)
            time.sleep(delay)
        self.child_pidfile.unlink(missing_ok=True)
        return 0


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s --child-pidfile PATH HOST:PORT [HOST:PORT ...] -- ARGV...")
    parser.add_argument("--child-pidfile", type=Path, required=True, help="where the server's own pid is written")
    parser.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    if "--" not in args or args.index("--") == len(args) - 1:
        parser.error("the server's command line goes after --")
    split = args.index("--")
    own = parser.parse_args(args[:split])
    sockets = [listening_socket(address) for address in own.addresses]
    return Holder(sockets, args[split + 1:], own.child_pidfile).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
