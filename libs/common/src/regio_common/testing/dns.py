"""A DNS server on loopback for the tests: the authority that custom domains' owners would
run, serving the TXT records a test publishes (dnslib's server, UDP and TCP on one port).
A region whose resolver is pointed at it verifies domains as it would through real DNS."""
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from ..processes import free_port

TXT_STRING = 255  # the most one character-string of a TXT record holds


class Zone(BaseResolver):
    """TXT records by name; every other name is NXDOMAIN."""

    def __init__(self):
        self._records: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.address = ""  # "127.0.0.1:<port>", a region's dns_resolver, once served
        self.queries: list[str] = []

    def publish(self, name: str, *values: str) -> None:
        with self._lock:
            self._records.setdefault(name.lower().rstrip("."), []).extend(values)

    def withdraw(self, name: str) -> None:
        with self._lock:
            self._records.pop(name.lower().rstrip("."), None)

    def resolve(self, request, handler):
        name = str(request.q.qname).lower().rstrip(".")
        reply = request.reply()
        with self._lock:
            self.queries.append(name)
            values = list(self._records.get(name, ())) if name in self._records else None
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                strings = [value[i:i + TXT_STRING] for i in range(0, len(value), TXT_STRING)] or [""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(strings), ttl=0))
        return reply


class _Handler(DNSHandler):
    """As a real server does: an answer larger than 512 bytes over UDP is sent truncated (the
    question kept, so the client takes it as the answer) and asked again over TCP."""

    def get_reply(self, data):
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed = reply.pack()
        if self.protocol == "udp" and len(packed) > 512:
            truncated = request.reply()
            truncated.header.rcode = reply.header.rcode
            truncated.header.tc = 1
            packed = truncated.pack()
        return packed


@contextmanager
def dns_server(zone: Zone | None = None) -> Iterator[Zone]:
    zone = zone or Zone()
    logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    for _ in range(20):
        port = free_port()
        servers = []
        try:
            for tcp in (False, True):
                servers.append(DNSServer(zone, address="127.0.0.1", port=port, tcp=tcp, logger=logger,
                                         handler=_Handler))
            break
        except OSError:  # the port was free for TCP, not for UDP (or taken since)
            for server in servers:
                server.server.server_close()
    else:
        raise RuntimeError("no free port for a DNS server")
    for server in servers:
        server.start_thread()
    zone.address = f"127.0.0.1:{port}"
    try:
        yield zone
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()


@contextmanager
def silent_resolver() -> Iterator[str]:
    """A resolver that takes every question and never answers: ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
