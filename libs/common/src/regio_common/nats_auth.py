"""Who may do what on a region's NATS: one user per component, each limited to its own subjects.

The table below is the one place the permissions are written; ``config`` turns it into the
``authorization`` block of nats-server's configuration file (``hub_config``, ``leaf_config``),
which ``regio up`` writes into the state directory (0600: it holds the passwords) and
nats-server reads at start and again on SIGHUP (``reload``), so a runner that joins later gets
its user without a restart.

A runner agent's user bears the runner's name and reaches only its own keys: it reads its
own desired state (a direct get naming the key, and a plain subscription to the key's
subject for prompt wake-ups), writes and reads its own heartbeat, publishes log lines and
its jobs' deployment log, and reads no logs. A KV watch would need a consumer on the whole
bucket, whose filter travels in the request body, out of the server's permission checks:
runners do not watch. The control panel serves every region; the other services, their own.

Every user's replies arrive under an inbox prefix of its own (``inbox_prefix``), so no user
can subscribe to another's replies.

Every region after the first runs its own server, with JetStream domain ``<region>``, which
joins the control panel's (the hub) as a leaf node, authenticated as the hub user
``link_user_name(region)``: that user's permissions are exactly what crosses the link
(``link_permissions``), so a region's machines publish nothing into another region or the
hub's streams, and no other region's traffic reaches them. Permissions match subjects token by token, and a token
of a subject a client publishes is matched literally, even ``*`` or ``>``: a pattern of ours
with ``*`` where a client chooses the token (a consumer's filter inside its create subject)
lets that client choose a wildcard there. Only the trusted services have such patterns."""
import json
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .bus import (
    COMMANDS,
    DEAD_LETTERS,
    EVENTS,
    LOGS,
    STATUS_SUBJECTS,
    durable_name,
    inbox_prefix,
    region_inbox,
    runner_desired_bucket,
    runner_state_bucket,
)

SERVER_NAME = "regio"  # as servers.nats_process names a server without a configuration
ADMIN = "regio"  # the operator's CLI (declares streams and buckets) and the tests' own connections
CONTROLPANEL, BUILDER, CONTROLLER, INGRESS = "controlpanel", "builder", "controller", "ingress"
SERVICES = (CONTROLPANEL, BUILDER, CONTROLLER, INGRESS)
HOLLOW_FLEET = "hollow-fleet"  # one process playing many runners (bench/scheduler.py): all runner keys
RUNNER_SERVICE = "runner-agent"  # the service every runner agent is (its dead letters' subject)
RESERVED = {ADMIN, *SERVICES, HOLLOW_FLEET}
LINK_PREFIX = "region-"  # a region's leaf node link's user on the hub (link_user_name)

# A runner's name is its user's name and a token of its inbox and KV subjects.
RUNNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

DEAD_LETTERS_STREAM = DEAD_LETTERS.name

# Each region service's durable consumers (bus.durable_name's first part), by stream: it may
# create, read and acknowledge only these. Renaming a consumer in a service means renaming it here.
DURABLES: dict[str, dict[str, tuple[str, ...]]] = {
    BUILDER: {COMMANDS.name: ("builder",), EVENTS.name: ("builder-cancellations",)},
    CONTROLLER: {COMMANDS.name: ("controller", "controller-environments"),
                 EVENTS.name: ("controller-cancellations", "controller-routes-applied")},
    INGRESS: {EVENTS.name: ("ingress-routes",)},
}
# The control panel's consumers on every region's streams (it may use any durable on its own
# server; this names those whose acknowledgements cross a region's leaf link, and no others').
CONTROLPANEL_DURABLES: dict[str, tuple[str, ...]] = {
    EVENTS.name: ("controlpanel-events", "controlpanel-usage"),
    DEAD_LETTERS_STREAM: ("controlpanel-dead-letters",),
    COMMANDS.name: ("controlpanel-provisioning", "controlpanel-service-deletions", "controlpanel-backups",
                    "controlpanel-restores", "controlpanel-backup-deletions"),
}

# What each service publishes, after ``region.<region>.``: the topics of the messages it sends.
# A service's heartbeat goes out under its own name (bus.status_subject).
PUBLISHES: dict[str, tuple[str, ...]] = {
    CONTROLPANEL: ("commands.>", "events.deployments.cancelled"),
    BUILDER: ("events.builds.started", "events.builds.finished", "events.deployments.log", "status.builder"),
    CONTROLLER: ("events.environments", "events.rollouts.>", "events.routes.changed", "events.deployments.log",
                 "logs.*",  # platform lines about an environment's instances (Controller.say)
                 "status.controller"),
    INGRESS: ("events.routes.applied", "events.usage.traffic", "logs.*.access", "status.ingress"),
}


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


@dataclass(frozen=True)
class User:
    name: str
    password: str = field(repr=False)
    permissions: Permissions | None  # None: everything (the admin)


def check_runner_name(name: str) -> str:
    if not RUNNER_NAME.match(name) or name in RESERVED or name.startswith(LINK_PREFIX):
        raise ValueError(f"runner name {name!r} must be letters, digits, '-' or '_' (at most 64), "
                         f"not one of {sorted(RESERVED)}, and not begin with {LINK_PREFIX!r}")
    return name


def _api(*subjects: str) -> list[str]:
    return [f"$JS.API.{s}" for s in subjects]


def _durable(stream: str, durable: str) -> list[str]:
    """Create, look up, pull from and acknowledge one durable pull consumer."""
    return [*_api(f"CONSUMER.DURABLE.CREATE.{stream}.{durable}", f"CONSUMER.CREATE.{stream}.{durable}",
                  f"CONSUMER.CREATE.{stream}.{durable}.>", f"CONSUMER.INFO.{stream}.{durable}",
                  f"CONSUMER.MSG.NEXT.{stream}.{durable}"),
            f"$JS.ACK.{stream}.{durable}.>"]


def _bucket_owner(bucket: str) -> list[str]:
    """Everything on one KV bucket: its stream, its keys, watches of it."""
    stream = f"KV_{bucket}"
    return [*_api(f"STREAM.*.{stream}", f"STREAM.MSG.*.{stream}", f"DIRECT.GET.{stream}",
                  f"DIRECT.GET.{stream}.>", f"CONSUMER.*.{stream}", f"CONSUMER.*.{stream}.>",
                  f"CONSUMER.DURABLE.CREATE.{stream}.*", f"CONSUMER.MSG.NEXT.{stream}.*"),
            f"$KV.{bucket}.>", f"$JS.FC.{stream}.>", f"$JS.ACK.{stream}.>"]


def _log_reader() -> list[str]:
    """Reading any line of the runtime logs (runtime_logs.read): the control panel's API."""
    return [*_api(f"CONSUMER.CREATE.{LOGS.name}", f"CONSUMER.CREATE.{LOGS.name}.>",
                  f"CONSUMER.MSG.NEXT.{LOGS.name}.*", f"CONSUMER.DELETE.{LOGS.name}.*",
                  f"STREAM.MSG.GET.{LOGS.name}", f"DIRECT.GET.{LOGS.name}.>")]


def _common(user: str, region: str, service: str) -> tuple[list[str], list[str]]:
    """What every component may: set aside under its own service's name (``service``, as its
    Runtime is named) what it cannot publish or handle (the control panel acts only on the
    services' records), and read the replies to its own requests."""
    publish = [*_api("INFO"), f"region.{region}.dead-letters.{service}"]
    return publish, [f"{inbox_prefix(user)}.>"]


def _stream_info() -> list[str]:
    """Looking at the platform's streams: the services only. A stream's info, asked with a
    subjects filter, lists its subjects: every ``region.<r>.logs.<environment id>`` of LOGS."""
    return _api(f"STREAM.INFO.{COMMANDS.name}", f"STREAM.INFO.{EVENTS.name}", f"STREAM.INFO.{LOGS.name}")


def service_permissions(service: str, region: str, user: str | None = None) -> Permissions:
    """``user``: its user's name, when not the service's (the inbox prefix is the user's).

    The control panel serves every region (it sends each region's commands and reads each
    one's events, through durables named after the region): its subjects are those of any
    region, and it may use any durable consumer of the platform's streams."""
    scope = "*" if service == CONTROLPANEL else region
    publish, subscribe = _common(user or service, scope, service)
    publish += _stream_info() + [f"region.{scope}.{topic}" for topic in PUBLISHES[service]]
    if service == CONTROLPANEL:
        for stream in (COMMANDS.name, EVENTS.name, DEAD_LETTERS_STREAM):
            publish += _durable(stream, "*")
        publish += _log_reader() + _api(f"STREAM.INFO.{DEAD_LETTERS_STREAM}")
        # The same requests to the JetStream of a region behind a leaf node (its domain's API).
        publish += [s.replace("$JS.API.", "$JS.*.API.", 1) for s in publish if s.startswith("$JS.API.")]
        subscribe += [STATUS_SUBJECTS]  # every region's heartbeats (region_status)
    else:
        for stream, names in DURABLES[service].items():
            for name in names:
                publish += _durable(stream, durable_name(name, region))
    if service == CONTROLLER:
        publish += _bucket_owner(runner_desired_bucket(region)) + _bucket_owner(runner_state_bucket(region))
    return Permissions(tuple(publish), tuple(subscribe))


def link_user_name(region: str) -> str:
    """The hub user ``region``'s server joins the hub as (its leaf node remote)."""
    return LINK_PREFIX + region


def link_permissions(region: str) -> Permissions:
    """What crosses ``region``'s leaf node link. Publish: what the region's server may send to
    the hub, only replies to the control panel's requests to this region (and the messages it
    pulls, under its inbox for the region) and the region's heartbeats. Subscribe: what the hub
    sends it, only the region's commands and cancellations, what the control panel sets aside of
    the region's messages (a command the region's stream refuses must not hold up the rest), the
    control panel's requests to the region's JetStream domain, and its acknowledgements of the
    region's messages (to its consumers of this region alone: the names of another region's
    consumers, and how far they read, stay off this link)."""
    acks = tuple(f"$JS.ACK.{stream}.{durable_name(name, region)}.>"
                 for stream, names in CONTROLPANEL_DURABLES.items() for name in names)
    return Permissions(
        publish=(f"{region_inbox(CONTROLPANEL, region)}.>", f"region.{region}.status.>"),
        subscribe=(f"region.{region}.commands.>", f"region.{region}.events.deployments.cancelled",
                   f"region.{region}.dead-letters.{CONTROLPANEL}", f"$JS.{region}.API.>", *acks),
    )


def link_user(region: str, password: str) -> User:
    return User(link_user_name(region), password, link_permissions(region))


def runner_permissions(runner: str, region: str, user: str | None = None) -> Permissions:
    check_runner_name(runner)
    desired, state = runner_desired_bucket(region), runner_state_bucket(region)
    publish, subscribe = _common(user or runner, region, RUNNER_SERVICE)
    publish += [
        *_api(f"STREAM.INFO.KV_{desired}", f"STREAM.INFO.KV_{state}",
              f"DIRECT.GET.KV_{desired}.$KV.{desired}.{runner}",
              # its last heartbeat, which says how far its previous agent shipped the logs
              f"DIRECT.GET.KV_{state}.$KV.{state}.{runner}"),
        f"$KV.{state}.{runner}",  # its heartbeat
        # Its containers' output, one subject per environment. It reads no logs back: a
        # consumer's filter is chosen by the client, and a literal wildcard there would match
        # any pattern that lets it read one environment's.
        f"region.{region}.logs.*",
        f"region.{region}.events.deployments.log",  # its jobs' output
        f"region.{region}.events.usage.instances",  # its instances' run time (the meter)
    ]
    subscribe += [f"$KV.{desired}.{runner}"]  # wakes it when its desired state is written
    return Permissions(tuple(publish), tuple(subscribe))


def hollow_fleet_permissions(region: str, user: str | None = None) -> Permissions:
    """Many hollow runners in one process (scale tests only): every runner key of the region."""
    desired, state = runner_desired_bucket(region), runner_state_bucket(region)
    publish, subscribe = _common(user or HOLLOW_FLEET, region, HOLLOW_FLEET)
    publish += [*_bucket_owner(desired), *_api(f"STREAM.INFO.KV_{state}"), f"$KV.{state}.*",
                f"region.{region}.logs.*", f"region.{region}.events.deployments.log"]
    return Permissions(tuple(publish), tuple(subscribe))


def users(region: str, runners: list[str], password_of, hollow_fleet: bool = False,
          admin: bool = True, user_prefix: str = "") -> list[User]:
    """Every user of a region: the admin, each service, each runner. ``password_of(user)``
    gives (or makes) each one's password. ``user_prefix`` keeps the users of many regions
    on one server apart (the tests' server: a region per test)."""
    made = [User(ADMIN, password_of(ADMIN), None)] if admin else []
    for service in SERVICES:
        name = user_prefix + service
        made.append(User(name, password_of(name), service_permissions(service, region, name)))
    for runner in runners:
        name = user_prefix + runner
        made.append(User(name, password_of(name), runner_permissions(runner, region, name)))
    if hollow_fleet:
        name = user_prefix + HOLLOW_FLEET
        made.append(User(name, password_of(name), hollow_fleet_permissions(region, name)))
    return made


def _authorization(users: list[User]) -> dict:
    entries = []
    for user in users:
        entry: dict = {"user": user.name, "password": user.password}
        if user.permissions is not None:
            entry["permissions"] = {"publish": {"allow": list(user.permissions.publish)},
                                    "subscribe": {"allow": list(user.permissions.subscribe)}}
        entries.append(entry)
    return {"users": entries}


def _text(config: dict) -> str:
    return json.dumps(config, indent=2) + "\n"  # nats-server's configuration syntax takes JSON


def hub_config(users: list[User], leaf_listen: str | None = None) -> str:
    """The first region's server, the control panel's (the hub): its users (each further
    region's link user among them, ``link_user``) and, with ``leaf_listen`` ("host:port"),
    where the regions' servers join it as leaf nodes.

    Listen address, port and JetStream store stay on the command line, which holds no secret;
    the server's name is here, where a reload finds it unchanged."""
    config: dict = {"server_name": SERVER_NAME, "authorization": _authorization(users)}
    if leaf_listen is not None:
        config["leafnodes"] = {"listen": leaf_listen}
    return _text(config)


def leaf_config(region: str, users: list[User], hub_leaf_url: str, link_user: str, link_password: str,
                store_dir: Path | str) -> str:
    """The server of a region after the first: its own users (``users(region, ...)``), its
    JetStream in domain ``region`` (its streams apart from the hub's and every other region's),
    and its link to the hub (``hub_leaf_url``, "nats-leaf://host:port"), authenticated as
    ``link_user``. The link's password is only here, in a file only NATS's account reads: a
    remote has no fields for a user and password (nats-server 2.15 refuses them), its URL holds them."""
    scheme, _, address = hub_leaf_url.rpartition("://")
    if not scheme or "@" in address:
        raise ValueError(f"the hub's leaf node URL {hub_leaf_url!r} must be scheme://host:port, without credentials")
    remote = {"url": f"{scheme}://{quote(link_user, safe='')}:{quote(link_password, safe='')}@{address}"}
    return _text({
        "server_name": f"{SERVER_NAME}-{region}",
        "jetstream": {"domain": region, "store_dir": str(store_dir)},
        "authorization": _authorization(users),
        "leafnodes": {"remotes": [remote]},
    })


def write_config(path: Path, text: str) -> bool:
    """Written 0600 from the first byte (it holds passwords); True when it changed."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(partial, path)  # a reload never reads half a file
    return True


def reload(pid: int | None) -> None:
    """A running nats-server reads its configuration again on SIGHUP: new users, new rights."""
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
