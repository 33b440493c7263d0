"""Durable consumer names. The streams hold every region's subjects, and a durable
consumer keeps the filter it was created with, so each region's controller needs
consumers of its own: the region is part of the name."""


def rollouts_consumer(region: str) -> str:
    return f"controller-{region}"


def routes_applied_consumer(region: str) -> str:
    return f"controller-routes-applied-{region}"
