"""Subscribers: what the ingress does when the controller announces a route."""
