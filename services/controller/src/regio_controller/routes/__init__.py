"""Environments' routes: what the ingress is told to carry, and what it reports it carries."""
