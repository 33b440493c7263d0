"""Clients for the servers the region runs for applications: object storage, databases."""
