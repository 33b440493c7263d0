"""The region's generated secrets, kept in ``<state>/secrets/region.json`` (mode 600)."""
import json
import secrets
from pathlib import Path

from regio_common.sealing import build_key, new_key, region_key
from regio_common.servers import write_private

ROLES = ("controlpanel", "builder", "controller", "ingress", "runner")


def load_or_create(state_dir: Path) -> dict:
    path = state_dir / "secrets" / "region.json"
    if path.exists():
        data = json.loads(path.read_text())
        if "installation" not in data:  # regions made before it was added
            data["installation"] = secrets.token_hex(8)
            _save(path, data)
        if "build_key" not in data:  # regions made before it was added
            data["build_key"] = new_key()
            _save(path, data)
        return data
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {
        "installation": secrets.token_hex(8),  # tells this region's containers from another's on one engine
        "service_token": secrets.token_urlsafe(32),
        # Seals release environments between the control panel and runner agents: the master
        # each region's own key is derived from (regio_common.sealing.region_key).
        "region_key": new_key(),
        "per_region_sealing": True,
        # Encrypts sensitive environment variables at rest in the control panel.
        "controlpanel_key": new_key(),
        # Seals repository credentials between the control panel and the builders.
        "build_key": new_key(),
        "database_passwords": {role: secrets.token_urlsafe(24) for role in ROLES},
    }
    _save(path, data)
    return data


def _save(path: Path, data: dict) -> None:
    write_private(path, json.dumps(data, indent=2) + "\n")


def nats_password(state_dir: Path, data: dict, user: str) -> str:
    """``user``'s NATS password, made and saved (mode 600) the first time it is asked for: a
    runner that joins later gets one."""
    passwords = data.setdefault("nats_passwords", {})
    if user not in passwords:
        passwords[user] = secrets.token_urlsafe(24)
        _save(state_dir / "secrets" / "region.json", data)
    return passwords[user]


def per_region_sealing(data: dict) -> bool:
    """Regions made before regions had sealing keys of their own go on sharing one: their
    running releases were sealed with it."""
    return bool(data.get("per_region_sealing"))


EXTRA_REGION_ROLES = ("builder", "controller", "ingress", "runner")  # a further region has no control panel


def load_or_create_extra(state_dir: Path, first: dict, region: str) -> dict:
    """A further region's secrets: its own service token, database and NATS passwords, and the
    keys derived for it from the first region's masters (which it never holds): what its
    runner agents open releases with, and what its builder opens repository credentials with."""
    path = state_dir / "secrets" / "region.json"
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {
        # Labels its containers: agents of two regions on one engine never adopt each other's.
        "scope": f"{first['installation']}-{region}",
        "service_token": secrets.token_urlsafe(32),
        "region_key": region_key(first["region_key"], region),
        "build_key": build_key(first["build_key"], region),
        "database_passwords": {role: secrets.token_urlsafe(24) for role in EXTRA_REGION_ROLES},
    }
    _save(path, data)
    return data
