"""One log format for every service: a line each, key=value, easy to grep and to ship."""
import logging
import sys


def configure_logging(service: str, level: str = "INFO") -> None:
    fmt = f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs of internal polling drown everything else.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
