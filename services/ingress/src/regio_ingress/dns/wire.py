"""The little of the DNS wire format (RFC 1035, SRV: RFC 2782) the responder speaks: one
question in, SRV and address records out. Pure functions over bytes."""
import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_AAAA = 28
TYPE_SRV = 33
CLASS_IN = 1
RCODE_OK = 0
RCODE_FORMAT_ERROR = 1
RCODE_SERVER_FAILURE = 2
RCODE_NAME_ERROR = 3  # NXDOMAIN
RCODE_NOT_IMPLEMENTED = 4
_QUERY_FLAG = 0x8000
_AUTHORITATIVE = 0x0400
_OPCODE_MASK = 0x7800
_RECURSION_DESIRED = 0x0100
_QUESTION_POINTER = b"\xc0\x0c"  # the question's name, which always starts right after the header


class MalformedQuery(Exception):
    pass


@dataclass(frozen=True)
class Question:
    id: int
    flags: int
    name: str  # lowercase, no trailing dot
    type: int
    klass: int
    raw: bytes  # the question section as sent, echoed in the answer


def parse_query(data: bytes) -> Question:
    if len(data) < 12:
        raise MalformedQuery("shorter than a header")
    id_, flags, questions = struct.unpack("!HHH", data[:6])
    if flags & _QUERY_FLAG or questions != 1:
        raise MalformedQuery("not a query with one question")
    labels, offset = [], 12
    while True:
        if offset >= len(data):
            raise MalformedQuery("name runs past the message")
        length = data[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:  # a compression pointer has no place in a lone question
            raise MalformedQuery("compressed question name")
        labels.append(data[offset:offset + length].decode("ascii", "replace").lower())
        offset += length
    if offset + 4 > len(data):
        raise MalformedQuery("question without type and class")
    type_, klass = struct.unpack("!HH", data[offset:offset + 4])
    return Question(id_, flags, ".".join(labels), type_, klass, data[12:offset + 4])


def build_answer(question: Question, rcode: int, records: list[bytes] = ()) -> bytes:
    """The answer to ``question`` with ``records`` (from srv_record, address_record) in its answer section."""
    flags = _QUERY_FLAG | _AUTHORITATIVE | (question.flags & (_OPCODE_MASK | _RECURSION_DESIRED)) | rcode
    header = struct.pack("!HHHHHH", question.id, flags, 1, len(records), 0, 0)
    return header + question.raw + b"".join(records)


def build_error(data: bytes, rcode: int) -> bytes | None:
    """A header-only answer with ``rcode`` to a message that could not be read as a question."""
    if len(data) < 12:
        return None
    id_, flags = struct.unpack("!HH", data[:4])
    return struct.pack("!HHHHHH", id_, _QUERY_FLAG | (flags & _OPCODE_MASK) | rcode, 0, 0, 0, 0)


def srv_record(target: str, port: int, priority: int, ttl: int = 0) -> bytes:
    """An SRV record for the question's name."""
    return _record(TYPE_SRV, struct.pack("!HHH", priority, 10, port) + _encode_name(target), ttl)


def address_record(address: ipaddress.IPv4Address | ipaddress.IPv6Address, ttl: int = 0) -> bytes:
    """An A or AAAA record for the question's name."""
    return _record(TYPE_A if address.version == 4 else TYPE_AAAA, address.packed, ttl)


def _record(type_: int, rdata: bytes, ttl: int) -> bytes:
    return _QUESTION_POINTER + struct.pack("!HHIH", type_, CLASS_IN, ttl, len(rdata)) + rdata


def _encode_name(name: str) -> bytes:
    encoded = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"{name!r} is not a DNS name")
        encoded += bytes([len(raw)]) + raw
    return encoded + b"\x00"
