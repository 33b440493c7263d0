"""The hold address: where the upstream answers of a held environment point (Traffic.HOLD).

A TCP port the ingress keeps bound but never listens on: every dial to it is refused at once,
and Caddy retries a refused dial for any method, POSTs included (the upstream never saw the
request), looking the host's upstreams up again before each try. So a held request waits in
Caddy, unanswered, and goes on to the instances (or to another region) as soon as the route
gives it upstreams again. Bound, so no other process can listen there by chance."""
import socket


class HoldAddress:
    def __init__(self, host: str):
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((host, 0))  # never listen(): a connection attempt is refused

    @property
    def address(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        self._socket.close()
