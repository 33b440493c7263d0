"""A container's output as Docker keeps it, read as it is written: shared by the runtime
log shipper (instances) and the jobs (release commands)."""
import asyncio
import logging
from datetime import datetime

from regio_common.messages import utcnow

log = logging.getLogger(__name__)


def split(chunk: bytes) -> list[tuple[datetime, str]]:
    """Docker's "<RFC 3339 time> <text>" lines, as (timestamp, text)."""
    lines: list[tuple[datetime, str]] = []
    for raw in chunk.decode(errors="replace").split("\n"):
        if not raw:
            continue
        stamp, _, text = raw.partition(" ")
        try:
            timestamp = datetime.fromisoformat(stamp)
        except ValueError:  # not Docker's prefix; should not happen, but the text still counts
            timestamp, text = (lines[-1][0] if lines else utcnow()), raw
        lines.append((timestamp, text))
    return lines


def pump(output, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """In a thread of its own for as long as the container runs: the engine's stream to the
    queue, then None."""
    try:
        for chunk in output:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
    except Exception as e:  # closed by the follow, or the engine went away: either way it ends
        log.debug("output stream ended: %s", e)
    finally:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more
