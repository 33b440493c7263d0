"""The ingress's edge: the HTTP answers the ingress gives itself, for requests Caddy sends to no instance."""
from .app import PERMISSION_PATH, EdgeApp
from .server import EdgeServer

__all__ = ["PERMISSION_PATH", "EdgeApp", "EdgeServer"]
