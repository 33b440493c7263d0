"""The traffic meter: the requests and response bytes Caddy served each environment, per
metering period, for billing (issue 17; the control panel records them as usage events).

The access log receiver counts every entry of a host an environment serves (``TrafficMeter.count``,
in memory, on the hot path); every ``flush_seconds`` the meter adds those counts to
``ingress.traffic_counts`` (a row per environment and period), and once a period has ended (and
``close_delay_seconds`` more, for entries still on their way) sends one ``TrafficMetered`` per
environment through the outbox, in the transaction that marks the row sent.

What is counted: every request Caddy logged for a host of an environment, whoever answered it
(its instances, or the ingress's edge on its behalf: a redirect domain's 301, HTTP→HTTPS's 308,
a 503 while it has no instance); the bytes are the response bodies' (Caddy's ``size``), without
headers. A host no environment serves (the 404 page) counts against none, and an environment
migrated away (its hosts forwarded to its new region's ingress, Route.forwarded) is metered
there, not here too.

What can be lost, never counted twice: what was counted in memory and not yet added when the
process dies (at most ``flush_seconds`` of traffic; a stopping ingress adds it), and entries the
kernel dropped before the receiver read them (see access_log/receiver.py)."""
from .meter import TrafficMeter

__all__ = ["TrafficMeter"]
