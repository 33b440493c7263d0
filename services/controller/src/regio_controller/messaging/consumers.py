"""Durable consumer names of the controller, one set per region (bus.durable_name)."""
from regio_common.bus import durable_name


def rollouts_consumer(region: str) -> str:
    return durable_name("controller", region)


def routes_applied_consumer(region: str) -> str:
    return durable_name("controller-routes-applied", region)


def environments_consumer(region: str) -> str:
    return durable_name("controller-environments", region)


def cancellations_consumer(region: str) -> str:
    return durable_name("controller-cancellations", region)
