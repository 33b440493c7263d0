"""The ingress's internal HTTP API."""
from fastapi import APIRouter

from . import routes, upstreams

router = APIRouter()
router.include_router(routes.router)
router.include_router(upstreams.router)
