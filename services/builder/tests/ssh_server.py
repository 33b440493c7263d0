"""A real OpenSSH server on loopback for the builder's tests: one authorised key, the
repositories readable by path (ssh://root@127.0.0.1:<port>/<path>)."""
import shutil
import subprocess
from pathlib import Path

import pytest

from regio_common.processes import free_port, wait_for_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class SshServer:
    def __init__(self, workdir: Path, authorized_key: str):
        if not Path(SSHD).exists():
            pytest.skip("no sshd (Debian: apt-get install openssh-server)")
        self.dir = workdir
        self.dir.mkdir(mode=0o700)
        self.port = free_port()
        host_key = self.dir / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        (self.dir / "authorized_keys").write_text(authorized_key + "\n")
        (self.dir / "authorized_keys").chmod(0o600)
        self.log = self.dir / "sshd.log"
        config = self.dir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}", f"PidFile {self.dir / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", "LogLevel VERBOSE", "",
        ]))
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
        self._process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                         stderr=self.log.open("w"))
        wait_for_port(self.port, 10)

    def accepted_publickey(self) -> bool:
        return "Accepted publickey" in self.log.read_text()

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(10)
