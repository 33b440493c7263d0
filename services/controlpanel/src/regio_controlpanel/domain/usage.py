"""The kinds of usage the platform meters, the unit each is recorded in (as its meter
measures it), and the unit it is priced and included in (as a person reads a price list).

    instance          seconds an instance ran, per memory size -> GB-hours of memory
    database_storage  GB-hours (a size sampled, held for the sample's period)
    bucket_storage    GB-hours
    requests          requests served by the ingress   -> millions of requests
    bytes_served      response bytes sent by the ingress -> GB
    build             seconds a builder worked         -> minutes

A GB is 10^9 bytes for storage and traffic, and 1024 MB for instance memory (the sizes
are 256, 512, … MB)."""
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class UsageKind:
    name: str
    recorded_unit: str
    billing_unit: str  # what a price and an inclusion are per
    label: str  # for an invoice line

    def billed_quantity(self, recorded: Decimal, memory_mb: int | None = None) -> Decimal:
        """``recorded`` (in the recorded unit) in the billing unit."""
        if self.name == "instance":
            return recorded * Decimal(memory_mb or 0) / Decimal(1024) / Decimal(3600)
        return recorded / _PER_BILLING_UNIT[self.name]


_PER_BILLING_UNIT = {"database_storage": Decimal(1), "bucket_storage": Decimal(1),
                     "requests": Decimal(1_000_000), "bytes_served": Decimal(1_000_000_000),
                     "build": Decimal(60)}

KINDS: dict[str, UsageKind] = {k.name: k for k in (
    UsageKind("instance", "seconds", "GB-hour", "Instance memory"),
    UsageKind("database_storage", "gb_hours", "GB-hour", "Database storage"),
    UsageKind("bucket_storage", "gb_hours", "GB-hour", "Media storage"),
    UsageKind("requests", "requests", "million requests", "Requests"),
    UsageKind("bytes_served", "bytes", "GB", "Traffic served"),
    UsageKind("build", "seconds", "minute", "Build time"),
)}
