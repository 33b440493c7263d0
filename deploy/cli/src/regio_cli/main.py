"""regio: start, stop and inspect a local region, and further regions beside it on this machine."""
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import typer

from regio_common import egress
from regio_common.layout import Layout, default_state_dir
from regio_common.processes import PortTaken

from . import dead_letters, prerequisites, testing, usage
from . import migrate as migration
from . import runners as runner_admin
from .extra_region import VENDORS, ExtraRegion, RegionError, Registration, extra_regions, new_region
from .region import CHECKOUT, Region

app = typer.Typer(help="Start, stop and inspect a Regio region.", no_args_is_help=True, add_completion=False)

StateDir = Annotated[Path | None, typer.Option("--state-dir", help="Where the region keeps its data (default .regio/).")]
RegionOption = Annotated[str | None, typer.Option("--region", help="The region's slug (default: the first region).")]


def say(message: str) -> None:
    typer.echo(f"regio: {message}", err=True)


def _layout(state_dir: Path | None, runners: int | None = None) -> Layout:
    state = (state_dir or default_state_dir(CHECKOUT)).resolve()
    layout = Layout.load(state) or Layout(state_dir=state)
    if runners is not None:
        layout.runners = runners
    return layout


def _region(state_dir: Path | None, slug: str | None) -> Region:
    """The first region, or the further region ``slug`` (an unknown one: exit 2)."""
    first = Region(_layout(state_dir), say)
    if slug is None or slug == first.layout.region:
        return first
    try:
        return ExtraRegion(first, slug, say)
    except RegionError as e:
        say(str(e))
        raise typer.Exit(2)


def _start(region: Region) -> None:
    """``region.up()``, its failures told as `regio up` tells them."""
    try:
        region.up()
    except prerequisites.MissingPrerequisite as e:
        say(str(e))
        raise typer.Exit(2)
    except PortTaken as e:
        say(f"{e}; stop that program or choose other ports in {region.layout.file}")
        raise typer.Exit(3)
    except (egress.InvalidEgressSetting, ValueError) as e:
        say(str(e))
        raise typer.Exit(2)
    except (RuntimeError, TimeoutError, PermissionError, subprocess.CalledProcessError) as e:
        say(f"failed: {e}")
        raise typer.Exit(1)


LOCAL_REGION_DOMAIN = "{slug}.regio.localhost"


@app.command()
def up(state_dir: StateDir = None,
       runners: Annotated[int | None, typer.Option(help="Number of the first region's runner agents "
                                                        "(default: as before, else 2).")] = None,
       regions: Annotated[int | None, typer.Option(
           min=1, max=20, help="Run this many regions on this machine: local-2 ... local-N are made (public, "
                              "at local-K.regio.localhost) when missing.")] = None) -> None:
    """Install what is missing and start the first region and every further one; safe to run again."""
    started = time.monotonic()
    layout = _layout(state_dir, runners)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        prerequisites.ensure(layout.state_dir, say)
        prerequisites.build_base_images(CHECKOUT, say)
    except prerequisites.MissingPrerequisite as e:
        say(str(e))
        raise typer.Exit(2)
    region = Region(layout, say)
    for k in range(2, (regions or 1) + 1):
        slug = f"local-{k}"
        if slug not in layout.extra_regions:
            new_region(region, slug, Registration(name=f"Local {k}", domain=LOCAL_REGION_DOMAIN.format(slug=slug)),
                       runners=None, say=say)
    _start(region)
    say(f"region {layout.region!r} is up in {time.monotonic() - started:.1f}s; `source {layout.state_dir / 'env'}`")
    for extra in extra_regions(region, say):
        _start(extra)
        say(f"region {extra.slug!r} is up (ingress {extra.ingress_url}, domain {extra.layout.region_domain})")
    say(f"all up in {time.monotonic() - started:.1f}s")
    for line in region.env_lines():
        typer.echo(line)


@app.command()
def down(state_dir: StateDir = None,
         region: Annotated[str | None, typer.Option(
             "--region", help="Stop only this further region's data plane (default: every region).")] = None) -> None:
    """Stop everything `regio up` started (or one further region); the data stays."""
    first = Region(_layout(state_dir), say)
    if region is not None:
        if region == first.layout.region:
            say(f"{region!r} holds the platform (its Postgres, the control panel): `regio down` stops every region")
            raise typer.Exit(2)
        _region(state_dir, region).down()
        return
    for extra in extra_regions(first, say):
        extra.down()
    first.down()


@app.command()
def status(state_dir: StateDir = None, region: RegionOption = None,
           usage_: Annotated[bool, typer.Option("--usage", help="Each process's memory (PSS, its process tree) "
                                                "and CPU over 3 s, with a total per region (every region "
                                                "without --region).")] = False,
           sample: Annotated[float, typer.Option(min=1, max=600, help="Seconds --usage measures CPU over "
                                                 "(longer is steadier).")] = usage.SAMPLE_SECONDS) -> None:
    """What runs, on which port, and whether it is ready."""
    chosen = _region(state_dir, region)
    if usage_:
        first = chosen.first if isinstance(chosen, ExtraRegion) else chosen
        shown = [chosen] if region is not None else [first, *extra_regions(first, say)]
        measured = usage.measure({r.layout.region: [*r.servers(), *(r.process(s) for s in r.services())]
                                  for r in shown},
                                 {r.database_name: r.layout.region for r in shown if isinstance(r, ExtraRegion)},
                                 seconds=sample)
        for line in usage.table(measured):
            typer.echo(line)
        return
    rows = chosen.status()
    for name, state, port, ready in rows:
        typer.echo(f"{name:18} {state:8} {port or '':>6}  {ready}")
    if any(state != "running" for _, state, _, _ in rows):
        raise typer.Exit(1)


@app.command()
def env(state_dir: StateDir = None, region: RegionOption = None) -> None:
    """Print export lines for the control panel's API and token, and the region's ingress and domain."""
    for line in _region(state_dir, region).env_lines():
        typer.echo(line)


@app.command()
def logs(service: str, state_dir: StateDir = None, region: RegionOption = None,
         follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
         lines: Annotated[int, typer.Option("--lines", "-n")] = 100) -> None:
    """Show a service's or server's log (controlpanel, builder, controller, ingress, runner-agent-1, postgres, nats, caddy)."""
    path = _region(state_dir, region).state_dir / "logs" / f"{service}.log"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.log"))
        say(f"no log for {service!r}; available: {', '.join(available) or 'none'}")
        raise typer.Exit(1)
    subprocess.run(["tail", f"-n{lines}", *(["-F"] if follow else []), str(path)])


@app.command("dead-letters")
def list_dead_letters(state_dir: StateDir = None, region: RegionOption = None,
                      last: Annotated[int, typer.Option("--last", "-n", help="How many, the newest.")] = 100) -> None:
    """Messages the region's services set aside (too big, or never handled), what they belonged to, and why."""
    for line in dead_letters.table(_region(state_dir, region), last):
        typer.echo(line)


@app.command("runners")
def list_runners(state_dir: StateDir = None, region: RegionOption = None) -> None:
    """The region's runners: state, whether in service, instances, memory used of offered, labels."""
    for line in runner_admin.table(_region(state_dir, region)):
        typer.echo(line)


def _change_runner(action: str, name: str, state_dir: Path | None, region: str | None) -> None:
    try:
        say(runner_admin.change(_region(state_dir, region), name, action))
    except LookupError as e:
        say(str(e))
        raise typer.Exit(1)


@app.command()
def cordon(name: str, state_dir: StateDir = None, region: RegionOption = None) -> None:
    """Place no new instances on runner NAME."""
    _change_runner("cordon", name, state_dir, region)


@app.command()
def drain(name: str, state_dir: StateDir = None, region: RegionOption = None) -> None:
    """Move every instance off runner NAME (without downtime) and place nothing new there."""
    _change_runner("drain", name, state_dir, region)


@app.command()
def uncordon(name: str, state_dir: StateDir = None, region: RegionOption = None) -> None:
    """Put runner NAME back in service."""
    _change_runner("uncordon", name, state_dir, region)


@app.command()
def firewall(state_dir: StateDir = None) -> None:
    """Put the host's firewall for the applications' and builds' networks in force again, as `up`
    does (after changing REGIO_RUNNER_EGRESS_ALLOW or REGIO_BUILDER_EGRESS_ALLOW, the ranges they
    may reach besides the internet)."""
    try:
        Region(_layout(state_dir), say).guard_networks()
    except egress.InvalidEgressSetting as e:
        say(str(e))
        raise typer.Exit(2)
    except subprocess.CalledProcessError as e:
        say(f"failed: {e} {e.stderr or ''}")
        raise typer.Exit(1)


@app.command()
def migrate(application: Annotated[str, typer.Argument(help="The application's slug or uuid.")],
            to: Annotated[str, typer.Option("--to", help="The slug of the region to move it to.")],
            state_dir: StateDir = None, region: RegionOption = None) -> None:
    """Move an application, its environments and services, to another region while it keeps
    serving (as the admin), and follow the migration's log until it ends: exit 0 when it
    succeeded, 1 otherwise."""
    chosen = _region(state_dir, region)
    # Every region's control panel is the first region's: its API and the admin's token.
    first = chosen.first if isinstance(chosen, ExtraRegion) else chosen
    env = dict(line.removeprefix("export ").split("=", 1) for line in first.env_lines())
    if not env.get("REGIO_TOKEN"):
        say(f"no admin token in {first.state_dir}: start the region with `regio up` first")
        raise typer.Exit(1)
    try:
        succeeded = migration.migrate(env["REGIO_API_URL"], env["REGIO_TOKEN"], application, to, typer.echo, say)
    except migration.MigrateError as e:
        say(str(e))
        raise typer.Exit(1)
    except httpx.HTTPError as e:
        say(f"the control panel at {env['REGIO_API_URL']} did not answer: {type(e).__name__}")
        raise typer.Exit(1)
    raise typer.Exit(0 if succeeded else 1)


region_app = typer.Typer(help="Regions: add and remove them, list them, change their settings.",
                         no_args_is_help=True)
app.add_typer(region_app, name="region")


@region_app.command("add")
def region_add(
        slug: Annotated[str, typer.Argument(help="The region's slug: a lower-case letter, then at most 30 "
                                                 "lower-case letters, digits or '-'.")],
        name: Annotated[str, typer.Option(help="Its name, as users see it.")],
        domain: Annotated[str, typer.Option(help="The domain its applications are served under.")],
        vendor: Annotated[str, typer.Option(help=f"Who runs its machines: {', '.join(VENDORS)}.")],
        location: Annotated[str, typer.Option(help='Where they are ("Frankfurt", "this machine").')],
        dedicated_to: Annotated[str | None, typer.Option(
            help="The uuid of the one organisation that may see and use it (default: public).")] = None,
        free: Annotated[bool, typer.Option("--free", help="The free plan group may use it.")] = False,
        runners: Annotated[int | None, typer.Option(min=1, max=8, help="Its runner agents (default: as before, "
                                                                        "else 1).")] = None,
        state_dir: StateDir = None) -> None:
    """Register a region with the control panel and run its data plane on this machine (again: update it)."""
    if dedicated_to is not None:
        try:
            dedicated_to = str(uuid.UUID(dedicated_to))
        except ValueError:
            say(f"--dedicated-to {dedicated_to!r} is not an organisation's uuid (see GET /iam/v3/organisations/)")
            raise typer.Exit(2)
    first = Region(_layout(state_dir), say)
    try:
        registration = Registration(name=name, domain=domain, vendor=vendor, location=location,
                                    dedicated_to=dedicated_to, free=free)
        previous = ExtraRegion(first, slug, say).registration() if slug in first.layout.extra_regions else None
        region = new_region(first, slug, registration, runners, say)
    except RegionError as e:
        say(str(e))
        raise typer.Exit(2)
    try:
        _start(region)
    except typer.Exit:
        # Refused, or failed on its way up: as it was before, so `regio up` still starts the others.
        if previous is not None:
            region.register(previous)
        else:
            region.forget()
        raise
    if free:  # set once here: `regio up` leaves it as `regio region set --free/--no-free` makes it
        try:
            first.configure(slug, free=True)
        except RuntimeError as e:
            say(f"failed to mark it for the free plan: {e}")
            raise typer.Exit(1)
    say(f"region {slug!r} is up: ingress {region.ingress_url}, domain {region.layout.region_domain}")


@region_app.command("remove")
def region_remove(slug: Annotated[str, typer.Argument(help="A further region's slug.")],
                  state_dir: StateDir = None) -> None:
    """Stop a further region, delete what it keeps on this machine, and retire it in the control panel."""
    region = _region(state_dir, slug)
    if not isinstance(region, ExtraRegion):
        say(f"{slug!r} is the first region, which holds the platform: it cannot be removed")
        raise typer.Exit(2)
    try:
        region.remove()
    except ValueError as e:
        say(str(e))
        raise typer.Exit(2)
    except RuntimeError as e:
        say(f"failed: {e}")
        raise typer.Exit(1)
    say(f"region {slug!r} removed and retired")


@region_app.command("list")
def region_list(state_dir: StateDir = None) -> None:
    """Every region the control panel knows, and where the ones of this machine listen."""
    first = Region(_layout(state_dir), say)
    try:
        listed = first.control_panel_module("regions", "list")
    except (ValueError, RuntimeError) as e:
        say(f"failed: {e}")
        raise typer.Exit(1)
    local = {first.layout.region: first, **{r.slug: r for r in extra_regions(first, say)}}
    typer.echo(f"{'SLUG':20} {'VENDOR':12} {'DEDICATED':9} {'FREE':5} {'RETIRED':8} {'HERE':24} NAME")
    for r in listed:
        here = local[r["slug"]].ingress_url.removeprefix("http://") if r["slug"] in local else ""
        typer.echo(f"{r['slug']:20} {r['vendor'] or '':12} {'yes' if r['dedicated_to'] else 'no':9} "
                   f"{'yes' if r['free_plan'] else 'no':5} {'yes' if r['retired'] else 'no':8} {here:24} {r['name']}")


@region_app.command("set")
def region_set(
        name: Annotated[str, typer.Argument(help="The region's slug (the local one: local).")],
        dns_resolver: Annotated[str | None, typer.Option(
            help='Where custom domains\' TXT challenges are looked up: host[:port], or "" for the system\'s.')] = None,
        trust_region_domain: Annotated[bool | None, typer.Option(
            "--trust-region-domain/--no-trust-region-domain",
            help="Custom domains under the region's own domain need no TXT record.")] = None,
        local_repositories: Annotated[bool | None, typer.Option(
            "--local-repositories/--no-local-repositories",
            help="Applications may be built from file:// repositories on the builder's host (set the "
                 "builder's REGIO_BUILDER_ALLOW_LOCAL_REPOSITORIES to match).")] = None,
        private_repository_hosts: Annotated[bool | None, typer.Option(
            "--private-repository-hosts/--no-private-repository-hosts",
            help="Repositories may be on hosts at loopback, link-local or private addresses (set the "
                 "builder's REGIO_BUILDER_ALLOW_PRIVATE_REPOSITORY_HOSTS to match).")] = None,
        free: Annotated[bool | None, typer.Option(
            "--free/--no-free", help="The free plan group (and applications on no plan) may use it.")] = None,
        state_dir: StateDir = None) -> None:
    """Change a region's settings; prints them."""
    try:
        settings = Region(_layout(state_dir), say).configure(name, dns_resolver=dns_resolver,
                                                             trust_region_domain=trust_region_domain,
                                                             local_repositories=local_repositories,
                                                             private_repository_hosts=private_repository_hosts,
                                                             free=free)
    except RuntimeError as e:
        say(str(e))
        raise typer.Exit(2)
    for key, value in settings.items():
        typer.echo(f"{key:20} {'' if value is None else value}")


billing_app = typer.Typer(help="Billing: plans' prices, the usage price list, organisations' terms and quotas, "
                                "invoices.", no_args_is_help=True)
app.add_typer(billing_app, name="billing")
PriceCurrency = Annotated[str | None, typer.Option(help="ISO 4217 (default: the platform's billing currency).")]
PriceRegion = Annotated[str | None, typer.Option(
    "--region", help="The region (slug) the price is for (default: every region without a price of its own).")]


def _billing(state_dir: Path | None, *argv: str) -> None:
    """Runs one `regio billing` command against the control panel's database; prints its JSON."""
    try:
        result = Region(_layout(state_dir), say).billing(*argv)
    except RuntimeError as e:
        say(str(e))
        raise typer.Exit(2)
    typer.echo(json.dumps(result, indent=2))


def _options(**values: str | None) -> list[str]:
    return [part for name, value in values.items() if value is not None
            for part in (f"--{name.replace('_', '-')}", value)]


@billing_app.command("plans")
def billing_plans(state_dir: StateDir = None) -> None:
    """The plans with their prices, and the usage price list."""
    _billing(state_dir, "plans")


@billing_app.command("plan-price")
def billing_plan_price(plan_id: Annotated[str, typer.Argument(help="The plan's id (regio billing plans).")],
                       amount: Annotated[str, typer.Argument(help="Per month, e.g. 25.00.")],
                       currency: PriceCurrency = None, region: PriceRegion = None, state_dir: StateDir = None) -> None:
    """Set a plan's price per month."""
    _billing(state_dir, "plan-price", plan_id, amount, *_options(currency=currency, region=region))


@billing_app.command("usage-price")
def billing_usage_price(
        kind: Annotated[str, typer.Argument(help="instance, database_storage, bucket_storage, requests, "
                                                 "bytes_served or build.")],
        price: Annotated[str, typer.Argument(help="Per billing unit (GB-hour, million requests, GB, minute).")],
        currency: PriceCurrency = None, region: PriceRegion = None, state_dir: StateDir = None) -> None:
    """Set the price of usage beyond what plans include."""
    _billing(state_dir, "usage-price", kind, price, *_options(currency=currency, region=region))


Quota = Annotated[str | None, typer.Option(help='A number, or "none" for no quota.')]


@billing_app.command("organisation")
def billing_organisation(
        organisation_id: Annotated[str, typer.Argument(help="The organisation's id.")],
        tax_rate: Annotated[str | None, typer.Option(help="A fraction: 0.081 for 8.1 %.")] = None,
        currency: Annotated[str | None, typer.Option(help='ISO 4217, or "none" for the platform\'s.')] = None,
        max_applications: Quota = None, max_free_applications: Quota = None, max_instances: Quota = None,
        max_service_gb: Quota = None, state_dir: StateDir = None) -> None:
    """Set an organisation's currency, tax rate and quotas; prints them."""
    _billing(state_dir, "organisation", organisation_id, *_options(
        tax_rate=tax_rate, currency=currency, max_applications=max_applications,
        max_free_applications=max_free_applications, max_instances=max_instances, max_service_gb=max_service_gb))


@billing_app.command("close-month")
def billing_close_month(month: Annotated[str, typer.Argument(help="YYYY-MM")], state_dir: StateDir = None) -> None:
    """Make every organisation's invoice for a month (each once; the control panel also does it
    by itself two hours after the month's end)."""
    _billing(state_dir, "close-month", month)


@app.command("base-images")
def base_images(force: Annotated[bool, typer.Option("--force")] = False) -> None:
    """Build the FROM images application builds use (no registry needed)."""
    prerequisites.build_base_images(CHECKOUT, say, force=force)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def test(ctx: typer.Context) -> None:
    """Run the test suite; extra arguments go to pytest. A running region is reused, else one is started.

    Without test paths: each service's suite side by side, then the cross-service tests.
    With paths (``regio test tests/e2e -x``): just those, as pytest runs them."""
    if testing.names_paths(ctx.args):
        raise typer.Exit(subprocess.run([sys.executable, "-m", "pytest", *ctx.args], cwd=CHECKOUT).returncode)
    raise typer.Exit(testing.run_suites(CHECKOUT, ctx.args, say))


# --- the steps of `up`, one at a time, for the containers of docker-compose.yml ----------

def _region_step(step: str, state_dir: Path | None) -> None:
    try:
        getattr(Region(_layout(state_dir), say), step)()
    except (RuntimeError, TimeoutError, PermissionError, subprocess.CalledProcessError) as e:
        say(f"{step} failed: {e}")
        raise typer.Exit(1)


@app.command()
def prepare(state_dir: StateDir = None) -> None:
    """Before any server starts: the layout, secrets, clusters' data directories, apps network."""
    _region_step("prepare", state_dir)


@app.command()
def setup(state_dir: StateDir = None) -> None:
    """Once Postgres and NATS run: the services' roles, the streams, every migration."""
    _region_step("setup", state_dir)


@app.command()
def seed(state_dir: StateDir = None) -> None:
    """Once the control panel's schema exists: the region, plans, admin, token; the env file."""
    _region_step("seed", state_dir)


def _component(name: str, region: Region):
    components = region.components()
    if name not in components:
        say(f"no component {name!r}; the region has: {', '.join(components)}")
        raise typer.Exit(2)
    return components[name]


@app.command()
def run(name: str, state_dir: StateDir = None) -> None:
    """Run one server or service in the foreground, logging to stdout (a container's command)."""
    _component(name, Region(_layout(state_dir), say)).exec()


@app.command("dedicated-database")
def dedicated_database(organisation: Annotated[str, typer.Argument(help="The organisation's uuid.")],
                       state_dir: StateDir = None) -> None:
    """Give an organisation a PostgreSQL server of its own in this region: its environments'
    new databases are created there."""
    try:
        organisation = str(uuid.UUID(organisation))
    except ValueError:
        say(f"{organisation!r} is not an organisation's uuid (see GET /iam/v3/organisations/)")
        raise typer.Exit(2)
    layout = _layout(state_dir)
    port = layout.add_dedicated_database(organisation)
    layout.save()
    say(f"organisation {organisation}: its database server listens on port {port}")
    up(state_dir=state_dir)
