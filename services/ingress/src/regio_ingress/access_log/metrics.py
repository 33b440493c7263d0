"""Request metrics from the access log, on the default registry the ingress's /metrics serves.

Cardinality: one environment label value per environment (plus "unknown"), methods folded to
the standard ones, statuses to their class. An environment removed keeps its series until the
ingress restarts."""
from prometheus_client import Counter, Histogram

from .entry import AccessEntry

UNKNOWN = "unknown"  # a host no environment serves: Caddy answered with the 404 page

# Any token is a valid method to Go's server: a client must not mint series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
OTHER = "other"

# The status as its class ("2xx", "4xx", "5xx"): what error rates and alerts are made of, at five
# values per environment and method instead of the dozens of codes applications answer with.
# Which code exactly is in the environment's runtime logs, one line per request.
REQUESTS = Counter("regio_ingress_requests_total", "Requests the ingress's Caddy answered, by environment",
                   ["environment", "method", "status"])

# From a static 404 in well under a millisecond to a slow upstream: Caddy waits 30s by default
# for a response to start, and a streamed response takes as long as it streams (+Inf).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0)
DURATION = Histogram("regio_ingress_request_duration_seconds",
                     "Time from Caddy reading a request to its response written, by environment", ["environment"],
                     buckets=DURATION_BUCKETS)

INVALID = Counter("regio_ingress_access_log_invalid_total", "Datagrams received that were no access log entry")
DROPPED = Counter("regio_ingress_access_log_dropped_total",
                  "Access lines dropped, oldest first, while NATS could not take them")


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


def status_label(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


class Recorder:
    """Counts entries into the metrics, keeping each labelled child it used: looking one up by
    its labels costs more than the count itself, and this runs for every request."""

    MAX_KEPT = 10_000  # label combinations; forgotten all at once beyond (the series stay)

    def __init__(self):
        self._requests: dict[tuple[str, str, int], object] = {}
        self._durations: dict[str, object] = {}

    def observe(self, environment: str, entry: AccessEntry) -> None:
        key = (environment, entry.request.method, entry.status)
        requests = self._requests.get(key)
        if requests is None:
            if len(self._requests) >= self.MAX_KEPT:
                self._requests.clear()
            requests = self._requests[key] = REQUESTS.labels(environment, method_label(entry.request.method),
                                                             status_label(entry.status))
        requests.inc()
        duration = self._durations.get(environment)
        if duration is None:
            if len(self._durations) >= self.MAX_KEPT:
                self._durations.clear()
            duration = self._durations[environment] = DURATION.labels(environment)
        duration.observe(entry.duration)
