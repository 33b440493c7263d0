"""Ingress controller: turns route state into Caddy configuration."""
