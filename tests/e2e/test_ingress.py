"""The region's ingress as visitors meet it, across every service: applications routed by
host, custom and redirect domains added through the API, a plain 404 for unknown hosts,
HTTPS with the region's CA, and traffic under wrk that loses nothing while routes change,
the ingress service restarts or an instance is killed; Caddy restarted under load comes
back with its whole table."""
import os
import signal
import subprocess
import time

import docker
import httpx
import pytest

from regio_common.layout import Layout
from regio_common.servers import caddy_child_pidfile
from regio_common.testing.dns import Zone
from tests.conftest import add_verified_domain
from tests.e2e.test_runners import (  # noqa: F401 (scalable_probe is a fixture)
    STATE,
    kill,
    restart_what_is_down,
    running_containers,
    scalable_probe,
    wait_until,
)
from tests.e2e.test_runtime_logs import wait_for_line
from tests.e2e.test_walking_skeleton import create_application, deploy, get_page, log_of
from tests.e2e.wrk import Wrk


def layout() -> Layout:
    layout = Layout.load(STATE)
    assert layout is not None
    return layout


def add_domain(client, dns: Zone, env_id: str, domain: str, kind: str) -> dict:
    """Routed only once verified: its owner's TXT record is published in the session's DNS."""
    return add_verified_domain(client, dns, env_id, domain, kind)


def deployed(client, region, repo) -> tuple[str, str]:
    """An application from ``repo`` deployed to its test environment: its id and default host.
    On the Business plan group's first plan: the free plan allows no custom domains."""
    groups = client.get("/billing/v3/application-plan-groups/").json()["results"]
    app = create_application(client, region, repo.url,
                             plan_group=next(g["uuid"] for g in groups if g["name"] == "Business"))
    env_id = app["test_status"]["uuid"]
    first = deploy(client, env_id)
    assert first["success"], log_of(client, first)
    return env_id, f"{app['slug']}-stage.{region.domain}"


def curl_https(host: str, path: str = "/", *, trust: bool = True) -> subprocess.CompletedProcess:
    port = layout().ports.ingress_https
    ca = ["--cacert", str(STATE / "caddy" / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt")]
    return subprocess.run(["curl", "-sS", *(ca if trust else []), "--resolve", f"{host}:{port}:127.0.0.1",
                           "-w", "\n%{http_code} %{redirect_url}", f"https://{host}:{port}{path}"],
                          capture_output=True, text=True, timeout=30)


def test_two_applications_and_their_domains_are_routed_by_host(region, git_repo, challenge_dns):
    shop_unique = f"shop-{time.time_ns()}.example.test"
    with region.client() as client:
        hello_env, hello_host = deployed(client, region, git_repo("hello"))
        probe_env, probe_host = deployed(client, region, git_repo("probe"))
        # Someone else's name, added without its owner's TXT record: before the others, so that
        # once they are served it would have been too.
        unproven = f"not-mine-{time.time_ns()}.example.test"
        pending = client.post("/apps/v3/domains/", json={"environment": hello_env, "domain": unproven})
        assert pending.status_code == 201 and pending.json()["verification"]["status"] == "pending", pending.text
        add_domain(client, challenge_dns, hello_env, shop_unique, "PRIMARY")
        add_domain(client, challenge_dns, hello_env, f"old.{shop_unique}", "REDIRECT")

        assert "version=" in get_page(region, probe_host).text
        assert "version=" not in get_page(region, hello_host).text  # hello's page, not the probe's
        served = wait_until(lambda: (r := get_page(region, shop_unique)).status_code == 200 and r, "custom domain")
        assert served.text == get_page(region, hello_host).text

        # Each domain is its own change of the route table: the redirect may follow the primary.
        redirected = wait_until(lambda: (r := get_page(region, f"old.{shop_unique}", "/basket?item=7")).status_code
                                == 301 and r, "redirect domain")
        assert redirected.headers["Location"] == f"http://{shop_unique}:{layout().ports.ingress_http}/basket?item=7"

        unknown = get_page(region, f"nobody.{region.domain}")
        assert unknown.status_code == 404 and "caddy" not in unknown.text.lower()
        assert "127.0.0.1" not in unknown.text and "Server" not in unknown.headers

        # HTTPS for every domain, signed by the region's own CA.
        https = wait_until(lambda: (r := curl_https(shop_unique, "/")).returncode == 0 and r, "a certificate")
        assert https.stdout.rpartition("\n")[2].startswith("200")
        assert curl_https(hello_host).stdout.rpartition("\n")[2].startswith("200")
        assert curl_https(shop_unique, trust=False).returncode != 0
        # The unproven name is neither routed nor given a certificate.
        assert get_page(region, unproven).status_code == 404
        assert curl_https(unproven).returncode != 0

        # The environment asks for HTTPS only: plain HTTP is redirected there, and the route follows
        # without a deployment.
        answer = client.patch(f"/apps/v3/environments/{hello_env}/", json={"https_redirect": True})
        assert answer.status_code == 200 and answer.json()["https_redirect"] is True
        moved = wait_until(lambda: (r := get_page(region, shop_unique)).status_code == 308 and r, "https redirect")
        assert moved.headers["Location"] == f"https://{shop_unique}:{layout().ports.ingress_https}/"
        assert get_page(region, probe_host).status_code == 200  # the other application did not ask


def test_route_changes_while_wrk_runs_lose_no_request(region, git_repo, challenge_dns):
    """New domains change the ingress's answers to Caddy's lookups, never Caddy's config: no
    server is ended, so no kept-alive connection is closed under a client."""
    with region.client() as client:
        env_id, host = deployed(client, region, git_repo("probe"))
        with Wrk(region.ingress_url, host, seconds=15) as wrk:
            for n in range(3):
                add_domain(client, challenge_dns, env_id, f"alias-{n}-{time.time_ns()}.example.test", "ALIAS")
                time.sleep(2)
            added = f"redirect-{time.time_ns()}.example.test"
            add_domain(client, challenge_dns, env_id, added, "REDIRECT")
            wait_until(lambda: get_page(region, added).status_code == 301, "the redirect domain")
    result = wrk.result
    print(f"route changes under wrk: {result.requests} requests, socket errors {result.socket_errors}")
    assert result.requests > 100, result.output
    assert result.non_2xx == 0, result.output  # every answer is the application's
    assert not result.socket_errors, result.output



def test_restarting_the_ingress_service_under_load_drops_no_request(region, git_repo):
    with region.client() as client:
        _, host = deployed(client, region, git_repo("probe"))
    with Wrk(region.ingress_url, host, seconds=15) as wrk:
        kill("ingress")
        restart_what_is_down()
    assert wrk.result.requests > 100, wrk.result.output
    assert wrk.result.failed == 0, wrk.result.output


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_caddy_restarted_under_load_loses_no_connection_and_is_back_with_its_whole_table(region, git_repo, how):
    """Caddy's sockets are held across its restarts (regio_common.socket_holder): connections made
    while it is down wait for the next Caddy rather than being refused, and that Caddy has the
    whole table the moment it accepts them."""
    with region.client() as client:
        _, host = deployed(client, region, git_repo("probe"))
    with Wrk(region.ingress_url, host, seconds=15) as wrk:
        caddy = int(caddy_child_pidfile(STATE).read_text())
        os.kill(caddy, how)
        wait_until(lambda: caddy_child_pidfile(STATE).read_text() != str(caddy), "Caddy started again")
        first = get_page(region, host)
    assert first.status_code == 200 and "version=" in first.text
    print(f"caddy restart under load: {wrk.result.requests} requests, socket errors {wrk.result.socket_errors}")
    assert wrk.result.requests > 100, wrk.result.output
    assert wrk.result.non_2xx == 0, wrk.result.output  # no 404 or 502 from a Caddy without its table
    assert wrk.result.socket_errors.get("connect", 0) == 0, wrk.result.output  # nothing refused
    # A stopping Caddy answers what is in flight, then closes each kept-alive connection once; a
    # killed one breaks them. A request sent into one just then (or in flight to a killed Caddy)
    # is lost to wrk; RFC 9112 §9.3.1 lets a client send it again, as browsers do. At most one
    # per connection, then. With the port unheld, a restart cost ~20,000 refused connections.
    errors = wrk.result.socket_errors
    assert errors.get("read", 0) + errors.get("write", 0) <= wrk.connections, wrk.result.output


def instances_answering(region, host: str) -> set[str]:
    """The containers (by hostname) that answer a few requests through the ingress."""
    return {get_page(region, host).text.split("host=")[1].strip() for _ in range(8)}


def test_an_instance_killed_under_load_costs_no_failed_request_and_serves_again_at_its_new_port(
        region, scalable_probe):  # noqa: F811
    """Its runner restarts it in place, and the engine publishes it on another port: the routes
    follow it there once it passes its health check, as the earlier port answers nothing."""
    env_id, host = scalable_probe
    victim = running_containers(env_id)[0]
    with Wrk(region.ingress_url, host, seconds=12) as wrk:
        engine = docker.from_env()
        try:
            engine.api.kill(victim["Id"])
        finally:
            engine.close()
    assert wrk.result.requests > 100, wrk.result.output
    assert wrk.result.failed == 0, wrk.result.output
    # Docker names a container's host after its id; a restarted container keeps both.
    wait_until(lambda: instances_answering(region, host) == {c["Id"][:12] for c in running_containers(env_id)}
               and victim["Id"][:12] in instances_answering(region, host),
               "the killed instance answering through the ingress again")


def test_requests_are_logged_in_the_environments_logs_and_counted_in_metrics(region, git_repo):
    with region.client() as client:
        env_id, host = deployed(client, region, git_repo("probe"))
        path, request_id = f"/visit-{time.time_ns()}?from=test", f"visit-{time.time_ns()}"
        answer = httpx.get(f"{region.ingress_url}{path}", headers={"Host": host, "X-Request-Id": request_id})
        assert answer.status_code == 200

        line, _ = wait_for_line(client, env_id, f"request={request_id}")  # the application prints the path too
    assert line["service"] == "ingress" and line["instance"] is None
    assert line["message"].startswith(f"GET {path} 200 ")
    metrics = httpx.get(f"http://127.0.0.1:{layout().ports.ingress}/metrics").text
    counted = [m for m in metrics.splitlines()
               if m.startswith("regio_ingress_requests_total{") and f'environment="{env_id}"' in m]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1, counted
