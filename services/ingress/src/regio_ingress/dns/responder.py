"""An authoritative DNS responder over UDP for the upstreams zone: SRV records from the upstream
table, address records for the targets they name."""
import asyncio
import logging

from . import wire
from .names import address_of_name, in_zone
from .table import UpstreamTable

log = logging.getLogger(__name__)


def answer(table: UpstreamTable, data: bytes) -> bytes | None:
    try:
        question = wire.parse_query(data)
    except wire.MalformedQuery:
        return wire.build_error(data, wire.RCODE_FORMAT_ERROR)
    if not in_zone(question.name):
        return wire.build_answer(question, wire.RCODE_NOT_IMPLEMENTED)  # not a recursive resolver
    if not table.loaded:
        # A starting ingress has not read its table yet: "every host is unknown" would send live
        # sites to the edge's 404. A failure makes Caddy keep the answers it has (its grace period).
        return wire.build_answer(question, wire.RCODE_SERVER_FAILURE)
    services = table.lookup(question.name)
    if services is not None:
        if question.type != wire.TYPE_SRV:
            return wire.build_answer(question, wire.RCODE_OK)
        # A priority each, in table order: equal ones would be shuffled by weight on every lookup
        # (RFC 2782), and Caddy's round robin would not take turns over a list reordered each time.
        records = [wire.srv_record(target, port, priority) for priority, (target, port) in enumerate(services)]
        return wire.build_answer(question, wire.RCODE_OK, records)
    address = address_of_name(question.name)
    if address is not None:
        wanted = wire.TYPE_A if address.version == 4 else wire.TYPE_AAAA
        records = [wire.address_record(address)] if question.type == wanted else []
        return wire.build_answer(question, wire.RCODE_OK, records)
    return wire.build_answer(question, wire.RCODE_NAME_ERROR)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, table: UpstreamTable):
        self.table = table
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = answer(self.table, data)
        if reply is not None:
            self.transport.sendto(reply, addr)


class DnsResponder:
    def __init__(self, table: UpstreamTable, listen: str):
        self.table = table
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self.table),
                                                                 local_addr=(self.host, self.port))
        log.info("answering upstream lookups on udp/%s:%d", self.host, self.port)

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
