"""The access log receiver: Caddy's access log entries in over UDP, metrics and runtime log
lines out. Everything a datagram causes happens in its callback without waiting: parse, find
the environment, count, queue the line (shipper.py publishes it)."""
import asyncio
import logging
import socket
import time
from collections.abc import Callable
from uuid import UUID

from nats.aio.client import Client

from regio_common import runtime_logs
from regio_common.runtime_logs import ACCESS, LogLine

from . import metrics
from .entry import AccessEntry, message
from .shipper import MAX_BUFFERED, LineShipper

log = logging.getLogger(__name__)

# Room in the kernel for a burst of entries while the event loop is busy elsewhere: a datagram
# that does not fit is dropped unseen. The kernel caps it at net.core.rmem_max.
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
MAX_DATAGRAM = 65536  # the most UDP carries
DRAIN_AT_ONCE = 256
WARN_INVALID_EVERY = 60.0  # seconds: a misconfigured writer would otherwise log every request

EnvironmentOf = Callable[[str], UUID | None]
# (environment, Caddy's timestamp, response bytes): the traffic meter's count, on the hot path.
CountTraffic = Callable[[UUID, float, int], None]


class AccessLog:
    """Receives Caddy's access log on ``listen`` (UDP "host:port"). ``environment_of`` maps a
    host name (lowercase, no port) to the environment serving it, or None; it is called for
    every request, so it must be a cheap lookup in memory; so must ``count_traffic`` (the
    traffic meter), called for every request of an environment."""

    def __init__(self, nc: Client, region: str, environment_of: EnvironmentOf, listen: str,
                 max_buffered: int = MAX_BUFFERED, count_traffic: CountTraffic | None = None):
        self.region = region
        self.environment_of = environment_of
        self.count_traffic = count_traffic
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.shipper = LineShipper(nc, max_buffered)
        self._socket: socket.socket | None = None
        self.metrics = metrics.Recorder()
        self._environments: dict[UUID, tuple[str, str]] = {}
        self._invalid_since_warning = 0
        self._warned_at = -WARN_INVALID_EVERY

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        # Read by a reader of our own, not a datagram transport: that reads one datagram per
        # turn of the event loop; this drains what has arrived (16 µs of CPU a datagram
        # against 6, measured with a sender on loopback).
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)
        self.shipper.start()
        log.info("receiving Caddy's access log on udp/%s:%d (receive buffer %d bytes)", self.host, self.port,
                 sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    async def stop(self) -> None:
        """Stop receiving, then publish the lines still buffered. Before the NATS connection closes."""
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        await self.shipper.stop()

    def _drain(self) -> None:
        """Everything a datagram causes happens here without waiting; at most DRAIN_AT_ONCE per
        turn, so the rest of the service (the shipper, the API) keeps its turns under load."""
        for _ in range(DRAIN_AT_ONCE):
            try:
                data = self._socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("access log socket: %s", e)
                return
            try:
                self.receive(data)
            except Exception:  # a bug here must cost one line, not the receiver
                log.exception("could not handle an access log entry")

    def receive(self, data: bytes) -> None:
        try:
            entry = AccessEntry.model_validate_json(data)
            timestamp = entry.timestamp
        except (ValueError, OverflowError, OSError):  # not an entry (ValidationError), or a time out of range
            self._invalid(data)
            return
        environment_id = self.environment_of(entry.host_name)
        if environment_id is None:
            self.metrics.observe(metrics.UNKNOWN, entry)  # the 404 page: in no environment's logs
            return
        label, subject = self._names(environment_id)
        self.metrics.observe(label, entry)
        if self.count_traffic is not None:
            self.count_traffic(environment_id, entry.ts, entry.size)
        line = LogLine(timestamp=timestamp, service=ACCESS, message=message(entry))
        self.shipper.add(subject, line.model_dump_json().encode())

    def _names(self, environment_id: UUID) -> tuple[str, str]:
        """The environment's metrics label and log subject, spelled once per environment."""
        names = self._environments.get(environment_id)
        if names is None:
            if len(self._environments) >= 10_000:  # environments come and go over a long run
                self._environments.clear()
            names = self._environments[environment_id] = (
                str(environment_id), runtime_logs.access_subject(self.region, environment_id))
        return names

    def _invalid(self, data: bytes) -> None:
        metrics.INVALID.inc()
        self._invalid_since_warning += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_INVALID_EVERY:
            log.warning("%d datagram(s) on the access log port were no access log entry; the last began %r",
                        self._invalid_since_warning, data[:80])
            self._invalid_since_warning = 0
            self._warned_at = now
