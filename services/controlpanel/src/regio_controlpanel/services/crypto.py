"""Encryption at rest for sensitive values, with the control panel's own key."""
import hashlib
import hmac
from uuid import UUID

from regio_common.sealing import build_key, decrypt_value, encrypt_value, open_sealed, region_key, seal


class Vault:
    def __init__(self, secrets_key: str, region_key: str, build_key: str = "", per_region_sealing: bool = False):
        """``build_key``: the master of every region's builder's key.
        ``region_key``: the master of every region's sealing key when ``per_region_sealing``,
        else the one key all runners hold (regions made before they had keys of their own)."""
        self._secrets_key = secrets_key
        self._region_key = region_key
        self._build_key = build_key
        self._per_region = per_region_sealing

    def encrypt(self, value: str) -> str:
        return encrypt_value(self._secrets_key, value)

    def decrypt(self, token: str) -> str:
        return decrypt_value(self._secrets_key, token)

    def encrypt_env(self, env: dict[str, str]) -> str:
        return seal(self._secrets_key, env)

    def decrypt_env(self, token: str) -> dict[str, str]:
        return open_sealed(self._secrets_key, token)

    def domain_challenge(self, organisation_id: UUID, domain: str) -> str:
        """What a custom domain's TXT record must hold: stable for one organisation and one domain
        (so it can be set before the domain is added, and again after it is removed), and
        unguessable without the control panel's key (no one can prepare another's proof)."""
        message = f"regio-domain-challenge\0{organisation_id}\0{domain}".encode()
        return hmac.new(self._secrets_key.encode(), message, hashlib.sha256).hexdigest()

    @property
    def can_seal_for_builders(self) -> bool:
        return bool(self._build_key)

    def seal_for_builders(self, access: dict[str, str], region: str) -> str:
        """A repository's credentials, which only ``region``'s builder (holding the build key
        derived for it) can open: another region's builder, a dedicated one's too, cannot."""
        return seal(build_key(self._build_key, region), access)

    def seal_for_runners(self, env: dict[str, str], region: str) -> str:
        """Only ``region``'s runner agents hold its key: the controller carries this unread,
        and no other region's runners can open it."""
        return seal(region_key(self._region_key, region) if self._per_region else self._region_key, env)
