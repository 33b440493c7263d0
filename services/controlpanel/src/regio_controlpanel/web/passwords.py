"""Users' passwords for signing in to the web Control Panel, hashed with scrypt (stdlib).

Stored in users.password_hash as ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64), so the cost
can be raised later without invalidating the hashes already stored."""
import asyncio
import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1  # 16 MB and some tens of milliseconds per guess
MIN_LENGTH = 8
# Hashed when no user has the email, so an unknown address takes as long as a wrong password.
_DECOY = "scrypt$16384$8$1$" + base64.b64encode(b"0" * 16).decode() + "$" + base64.b64encode(b"0" * 32).decode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """False for a user without a password (one added as a member who never set one)."""
    try:
        scheme, n, r, p, salt, digest = (stored or _DECOY).split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except ValueError:
        return False
    return stored is not None and hmac.compare_digest(got, expected)


async def verify_password_async(password: str, stored: str | None) -> bool:
    """scrypt is deliberately slow: off the event loop, so other requests are not held up."""
    return await asyncio.to_thread(verify_password, password, stored)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


def check_new_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"A password needs at least {MIN_LENGTH} characters.")
