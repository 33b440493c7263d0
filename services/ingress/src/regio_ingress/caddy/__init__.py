"""Caddy, the data plane: the config rendered from the route table and the admin API it is loaded through."""
