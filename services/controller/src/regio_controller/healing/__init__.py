"""Keeping each environment's current release running at its instance count without a
deployment: scaling, replacing instances of lost or draining runners, and health checks."""
