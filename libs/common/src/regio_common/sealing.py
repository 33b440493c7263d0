"""Sealing a release's environment with the region key (Fernet: AES-128-CBC + HMAC).

The control panel seals, runner agents open; the controller only carries the
sealed text, so secrets are neither stored readable nor logged on the way."""
import json

from cryptography.fernet import Fernet


def new_key() -> str:
    return Fernet.generate_key().decode()


def seal(key: str, env: dict[str, str]) -> str:
    return Fernet(key.encode()).encrypt(json.dumps(env).encode()).decode()


def open_sealed(key: str, sealed: str) -> dict[str, str]:
    return json.loads(Fernet(key.encode()).decrypt(sealed.encode()))


def encrypt_value(key: str, value: str) -> str:
    return Fernet(key.encode()).encrypt(value.encode()).decode()


def decrypt_value(key: str, token: str) -> str:
    return Fernet(key.encode()).decrypt(token.encode()).decode()
