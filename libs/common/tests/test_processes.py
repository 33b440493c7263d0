"""Background processes: started once, found again, refused on a taken port, stopped."""
import socket
import sys

import pytest

from regio_common.processes import ManagedProcess, PortTaken, wait_for_port


def test_a_process_starts_once_and_stops(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = ManagedProcess("web", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                             tmp_path, port=port)
    assert process.start() is True
    wait_for_port(port, 10, process=process)
    assert process.start() is False  # a second `up` reuses what runs
    assert process.running()
    assert process.stop() is True
    assert not process.running() and not process.pid_path.exists()


def test_a_taken_port_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        process = ManagedProcess("nats", [sys.executable, "-c", "pass"], tmp_path, port=port)
        with pytest.raises(PortTaken, match=f"port {port} \\(for nats\\)"):
            process.start()
