"""Sealing a release's environment with the region key (Fernet: AES-128-CBC + HMAC).

The control panel seals, runner agents open; the controller only carries the
sealed text, so secrets are neither stored readable nor logged on the way.

Each region has a key of its own, derived from the control panel's master key
(``region_key``): a region's runner agents hold only theirs, so one region's runners,
a dedicated region's included, cannot open what was sealed for another. Its builder, likewise,
holds a key of its own for the repository credentials sealed for it (``build_key``)."""
import base64
import json

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def new_key() -> str:
    return Fernet.generate_key().decode()


def region_key(master: str, region: str) -> str:
    """The sealing key of ``region`` (its slug): HKDF-SHA256 of the master key, one per region."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"regio region sealing key\0" + region.encode()).derive(master.encode())
    return base64.urlsafe_b64encode(derived).decode()


def build_key(master: str, region: str) -> str:
    """The key ``region``'s builder opens repository credentials with: HKDF-SHA256 of the
    control panel's master build key, one per region (another info than ``region_key``'s)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"regio region build key\0" + region.encode()).derive(master.encode())
    return base64.urlsafe_b64encode(derived).decode()


def seal(key: str, env: dict[str, str]) -> str:
    return Fernet(key.encode()).encrypt(json.dumps(env).encode()).decode()


def open_sealed(key: str, sealed: str) -> dict[str, str]:
    """``key`` may be several, comma-separated (Fernet keys hold no comma), tried in turn: a
    region's own key, then the one it was sealed with before it had one."""
    keys = [Fernet(k.strip().encode()) for k in key.split(",") if k.strip()]
    return json.loads(MultiFernet(keys).decrypt(sealed.encode()))


def encrypt_value(key: str, value: str) -> str:
    return Fernet(key.encode()).encrypt(value.encode()).decode()


def decrypt_value(key: str, token: str) -> str:
    return Fernet(key.encode()).decrypt(token.encode()).decode()
