"""`regio migrate`: an application moved to another region through the control panel's API
(as the admin whose token `regio up` keeps), its log followed until the migration ends."""
import time
import uuid
from collections.abc import Callable

import httpx

MIGRATIONS = "/apps/v3/application-migrations/"
POLL_SECONDS = 1.0


class MigrateError(Exception):
    """Why the migration could not be asked for, for the operator (no secret)."""


def _refusal(response: httpx.Response) -> str:
    """The control panel's reason, ``field: message`` as its error bodies carry it."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.reason_phrase}"
    if isinstance(body, dict):
        parts = [f"{field}: {' '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                 for field, msgs in body.items()]
        return "; ".join(parts) or str(response.status_code)
    return str(body)


def _get(client: httpx.Client, path: str, **params) -> dict:
    response = client.get(path, params=params)
    if response.status_code != 200:
        raise MigrateError(f"GET {path}: {_refusal(response)}")
    return response.json()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def application_id(client: httpx.Client, slug_or_uuid: str) -> str:
    if _is_uuid(slug_or_uuid):
        return slug_or_uuid
    found = _get(client, "/apps/v3/applications/", slug=slug_or_uuid)["results"]
    if len(found) != 1:
        raise MigrateError(f"no application {slug_or_uuid!r}" if not found
                           else f"{len(found)} applications are called {slug_or_uuid!r}: give its uuid")
    return found[0]["uuid"]


def region_id(client: httpx.Client, slug_or_uuid: str) -> str:
    regions = _get(client, "/apps/v3/regions/", page_size=1000)["results"]
    for region in regions:
        if slug_or_uuid in (region["slug"], region["uuid"]):
            return region["uuid"]
    raise MigrateError(f"no region {slug_or_uuid!r}; there are: {', '.join(r['slug'] for r in regions)}")


def start(client: httpx.Client, application: str, to: str) -> dict:
    body = {"application": application_id(client, application), "region": region_id(client, to)}
    response = client.post(MIGRATIONS, json=body)
    if response.status_code != 201:
        raise MigrateError(f"the control panel refused the migration: {_refusal(response)}")
    return response.json()


def follow(client: httpx.Client, migration_id: str, echo: Callable[[str], None],
           poll_seconds: float = POLL_SECONDS) -> dict:
    """Prints the log as it grows; returns the migration once it has ended."""
    offset = 0
    while True:
        log = _get(client, f"{MIGRATIONS}{migration_id}/logs", offset=offset)
        if log["logs"]:
            echo(log["logs"].rstrip("\n"))
        offset = log["next_offset"]
        if log["ended"]:
            return _get(client, f"{MIGRATIONS}{migration_id}/")
        time.sleep(poll_seconds)


def summary(migration: dict) -> list[str]:
    lines = [f"migration {migration['uuid']}: {migration['status']}"
             + (f": {migration['error']}" if migration.get("error") else "")]
    if migration.get("write_pause_ms") is not None:
        lines.append(f"writes paused for {migration['write_pause_ms']} ms (requests held, none failed)")
    for change in migration.get("dns_changes") or []:
        lines.append(f"point {change['domain']} at {change['point_to']}")
    return lines


def migrate(api_url: str, token: str, application: str, to: str, echo: Callable[[str], None],
            say: Callable[[str], None]) -> bool:
    """Whether the migration succeeded."""
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        migration = start(client, application, to)
        say(f"migration {migration['uuid']} of {application} to {to} started; following its log")
        try:
            ended = follow(client, migration["uuid"], echo)
        except KeyboardInterrupt:
            # Only the following stops: the control panel carries the migration on.
            say(f"stopped following; the migration goes on: {api_url}/web/migrations/{migration['uuid']} "
                f"(cancel it there, or POST {MIGRATIONS}{migration['uuid']}/cancel/)")
            return False
    for line in summary(ended):
        say(line)
    return ended["status"] == "success"
