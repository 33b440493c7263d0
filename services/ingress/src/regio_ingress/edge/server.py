"""The edge's HTTP server: uvicorn inside the ingress's own event loop, on a socket of its own."""
import asyncio
import contextlib
import logging
import socket

import uvicorn

log = logging.getLogger(__name__)
# Longer than Caddy keeps an idle connection to an upstream (2m), so Caddy closes it first and never
# sends a request into a connection the edge is closing.
KEEP_ALIVE_SECONDS = 150


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # the service's own server handles signals; this one is stopped by the lifespan


class EdgeServer:
    def __init__(self, app, listen: str):
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        self._server = _Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                              server_header=False, timeout_keep_alive=KEEP_ALIVE_SECONDS))
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        # Bound here, so a taken port is an error at start and not an exit inside uvicorn.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="edge server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        log.info("answering for hosts without instances on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await self._task
