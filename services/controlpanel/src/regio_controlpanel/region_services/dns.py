"""TXT look-ups through a region's resolver, for custom domains' ownership challenges.

The name looked up is chosen by whoever adds a domain, so its answers are hostile input: a
resolver (or an authority behind it) that never answers, huge or many records. Every
look-up is bounded in time (dnspython's lifetime, and a hard deadline around it), and only
the start of each record is kept (a whole answer is at most 64 KB: DNS over TCP).

Its callers hold a database connection and transaction while they wait (a request's, or a
periodic re-check's), so how many look-ups are under way at once is bounded too, in the whole
process: a tenant whose nameserver never answers would otherwise hold every pooled connection
(15) with concurrent checks and stall every other tenant's requests. A look-up that finds no
free slot fails at once rather than queue while its caller holds a connection."""
import asyncio
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

LOOKUP_SECONDS = 3.0
MAX_TEXT = 512  # of one record's text, kept: far more than a challenge's value
MAX_UNDER_WAY = 4  # look-ups at once, in this process: well under the database pool's 15
BUSY = "Too many DNS look-ups are under way; check again in a few seconds."

_under_way = 0  # the event loop runs one task at a time: no lock needed between test and count


class LookupFailed(Exception):
    """The resolver gave no usable answer; the message is for a person and names no secret."""


class LookupBusy(LookupFailed):
    """No look-up slot was free: says nothing about the name, so its domain's state stands."""


def parse_resolver(value: str) -> tuple[str, int]:
    """``host[:port]``, or ``[v6]:port``: an IP address (a name would need a resolver itself)."""
    value = value.strip()
    host, port = value, "53"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError("Write an IPv6 resolver as [address]:port.")
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address; a resolver is given as address[:port].") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{port!r} is not a port number.")
    return host, int(port)


def _resolver(address: str | None) -> dns.asyncresolver.Resolver:
    if address is None:
        try:
            resolver = dns.asyncresolver.Resolver()  # the system's (/etc/resolv.conf)
        except dns.resolver.NoResolverConfiguration as e:
            raise LookupFailed("This region has no DNS resolver configured.") from e
    else:
        try:
            host, port = parse_resolver(address)
        except ValueError as e:
            raise LookupFailed("This region's DNS resolver setting is not valid.") from e
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.timeout = LOOKUP_SECONDS / 2  # one server's turn, so a silent one is retried once
    resolver.lifetime = LOOKUP_SECONDS
    return resolver


@contextmanager
def _slot() -> Iterator[None]:
    global _under_way
    if _under_way >= MAX_UNDER_WAY:
        raise LookupBusy(BUSY)
    _under_way += 1
    try:
        yield
    finally:
        _under_way -= 1


async def txt_records(resolver_address: str | None, name: str) -> list[str]:
    """The TXT texts at ``name`` (each record's strings joined), none if the name or the record
    does not exist. Raises LookupFailed when the resolver does not answer usably in time, or
    at once LookupBusy when MAX_UNDER_WAY look-ups are already under way."""
    resolver = _resolver(resolver_address)
    with _slot():
        return await _txt_records(resolver, name)


async def _txt_records(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    try:
        async with asyncio.timeout(LOOKUP_SECONDS + 1):
            answer = await resolver.resolve(dns.name.from_text(name), "TXT", raise_on_no_answer=False,
                                            search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, TimeoutError) as e:
        raise LookupFailed(f"The DNS resolver did not answer within {LOOKUP_SECONDS:g} seconds.") from e
    except dns.resolver.NoNameservers as e:
        raise LookupFailed("The DNS resolver could not answer (SERVFAIL or refused).") from e
    except dns.exception.DNSException as e:
        raise LookupFailed(f"The DNS look-up failed: {type(e).__name__}.") from e
    return [b"".join(record.strings)[:MAX_TEXT].decode("ascii", errors="replace") for record in answer.rrset or ()]
