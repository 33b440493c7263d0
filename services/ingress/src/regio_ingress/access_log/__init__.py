"""Caddy's access log, received by the ingress: per-environment request metrics, and one line
per request in the environment's runtime logs (service "ingress", see regio_common.runtime_logs).

Caddy writes each access log entry as one JSON datagram to ``access_log_listen`` (UDP), so
logging never blocks the proxy; the ingress finds the environment by the request's host,
counts it (metrics, and the traffic meter's count when given one: metering/), and publishes
the line in batches (shipper.py). Requests for hosts no environment
serves are counted as environment "unknown" and logged nowhere.

Interface::

    access_log = AccessLog(nc, region, environment_of, listen="127.0.0.1:8754", count_traffic=meter.count)
    await access_log.start()   # binds the UDP port; raises OSError if it is taken
    ...
    await access_log.stop()    # before the NATS connection is closed

``environment_of(host) -> UUID | None`` gets the host lowercase and without its port and is
called once per request on the event loop: it must be a lookup in memory, never I/O.

Lost on the way, by design, and counted where it can be: a datagram the kernel had no room for
(not counted here; see the receive buffer in receiver.py), a datagram that is no entry
(regio_ingress_access_log_invalid_total), lines NATS could not take for longer than the buffer
lasts (regio_ingress_access_log_dropped_total)."""
from .receiver import AccessLog, CountTraffic, EnvironmentOf

__all__ = ["AccessLog", "CountTraffic", "EnvironmentOf"]
