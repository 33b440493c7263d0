"""The route table: which hosts go to which instances, one entry per environment."""
from .route import Route

__all__ = ["Route"]
