"""The region's service catalogue and the service instances environments add from it,
as the divio client asks for them (`divio services list`, `divio app service-instances`)."""
import json
import uuid

import pytest
from sqlalchemy import select

from regio_common.db import make_engine, make_sessionmaker
from regio_common.testing.plugin import free_port
from regio_controlpanel.db.models import AuditEvent, PhysicalRegion, Region, Service, ServiceInstance
from regio_controlpanel.domain.service_instances import RemovalRefused, State, check_removable
from regio_controlpanel.seed import seed
from regio_controlpanel.services import catalogue
from regio_controlpanel.services.crypto import Vault

from .test_deployments import wait_for


@pytest.fixture
async def db(settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def offered(api, region: str) -> dict[str, dict]:
    # The client builds this URL with a trailing "&" (its unused application filter).
    response = await api.get(f"/apps/v3/services/?region={region}&")
    assert response.status_code == 200, response.text
    return {s["identifier"]: s for s in response.json()["results"]}


async def test_each_region_offers_postgres_and_s3(api, seeded, settings):
    services = await offered(api, seeded["region"])
    assert services.keys() == {"postgres-18", "s3"}
    postgres = services["postgres-18"]
    assert (postgres["type"], postgres["name"], postgres["version"], postgres["region"]) == (
        "DATABASE", "PostgreSQL 18", "18", seeded["region"])
    assert services["s3"]["type"] == "STORAGE" and "SeaweedFS" in services["s3"]["name"]
    detail = await api.request("GET", f"/apps/v3/services/{postgres['uuid']}", json={})
    assert detail.status_code == 200 and detail.json() == postgres

    # Seeding again (every `regio up`) leaves the catalogue as it is.
    await seed(settings, settings.region, settings.region_domain, "admin@example.test")
    assert (await offered(api, seeded["region"])) == services


async def test_an_added_service_instance_is_new_until_provisioned(api, application, seeded):
    env = application["test_status"]["uuid"]
    services = await offered(api, seeded["region"])
    response = await api.post("/apps/v3/service-instances/", json={
        "environment": env, "region": seeded["region"], "service": services["postgres-18"]["uuid"], "prefix": "DEFAULT"})
    assert response.status_code == 201, response.text
    instance = response.json()
    assert {k: instance[k] for k in ("prefix", "type", "service_status", "region", "service", "environment")} == {
        "prefix": "DEFAULT", "type": "DATABASE", "service_status": "NEW", "region": seeded["region"],
        "service": services["postgres-18"]["uuid"], "environment": env}

    storage = await api.post("/apps/v3/service-instances", json={
        "environment": env, "service": services["s3"]["uuid"], "prefix": "MEDIA"})
    assert storage.status_code == 201 and storage.json()["type"] == "STORAGE"

    listed = (await api.request("GET", "/apps/v3/service-instances/", params={"environment": env}, json={})).json()
    assert [i["uuid"] for i in listed["results"]] == [instance["uuid"], storage.json()["uuid"]]
    by_app = (await api.get("/apps/v3/service-instances/", params={"application": application["uuid"]})).json()
    assert by_app["count"] == 2
    live = (await api.get("/apps/v3/service-instances/", params={"environment": application["live_status"]["uuid"]}))
    assert live.json()["count"] == 0
    assert (await api.get(f"/apps/v3/service-instances/{instance['uuid']}/")).json() == instance


async def test_a_prefix_is_unique_in_its_environment_and_well_formed(api, application, seeded):
    env = application["test_status"]["uuid"]
    postgres = (await offered(api, seeded["region"]))["postgres-18"]["uuid"]
    first = await api.post("/apps/v3/service-instances/", json={"environment": env, "service": postgres})
    assert first.status_code == 201 and first.json()["prefix"] == "DEFAULT"
    again = await api.post("/apps/v3/service-instances/", json={"environment": env, "service": postgres})
    assert again.status_code == 409 and list(again.json()) == ["prefix"]
    # DEFAULT_DATABASE_DSN and DEFAULT_STORAGE_DSN side by side: the prefix is unique per type.
    s3 = (await offered(api, seeded["region"]))["s3"]["uuid"]
    storage = await api.post("/apps/v3/service-instances/", json={"environment": env, "service": s3})
    assert storage.status_code == 201 and storage.json()["prefix"] == "DEFAULT"
    for bad in ("reports", "1ST", "WITH-DASH", ""):
        response = await api.post("/apps/v3/service-instances/", json={"environment": env, "service": postgres,
                                                                        "prefix": bad})
        assert response.status_code == 400 and list(response.json()) == ["prefix"], bad
    # The same prefix in another environment is another instance.
    live = await api.post("/apps/v3/service-instances/", json={
        "environment": application["live_status"]["uuid"], "service": postgres})
    assert live.status_code == 201


async def test_instances_live_in_the_application_s_region(api, application, seeded, db):
    async with db() as session, session.begin():
        physical = PhysicalRegion(name=f"elsewhere {uuid.uuid4().hex[:6]}", vendor="test", location="elsewhere")
        session.add(physical)
        await session.flush()
        other = Region(slug=f"o{uuid.uuid4().hex[:8]}", name="Other", domain="other.test",
                       physical_region_id=physical.id)
        session.add(other)
        await session.flush()
        await catalogue.ensure_offered(session, other.id)
        other_region = str(other.id)
    env = application["test_status"]["uuid"]
    ours = (await offered(api, seeded["region"]))["postgres-18"]["uuid"]
    theirs = (await offered(api, other_region))["postgres-18"]["uuid"]
    assert ours != theirs

    response = await api.post("/apps/v3/service-instances/", json={
        "environment": env, "region": other_region, "service": ours})
    assert response.status_code == 400 and list(response.json()) == ["region"]
    response = await api.post("/apps/v3/service-instances/", json={"environment": env, "service": theirs})
    assert response.status_code == 400 and list(response.json()) == ["service"]
    response = await api.post("/apps/v3/service-instances/", json={"environment": env, "service": str(uuid.uuid4())})
    assert response.status_code == 400 and response.json() == {"service": ["Service not found."]}
    # Asked for the application, the catalogue shows only what it may use.
    usable = (await api.get("/apps/v3/services/", params={"website": application["uuid"]})).json()
    assert {s["uuid"] for s in usable["results"]} == {s["uuid"] for s in (await offered(api, seeded["region"])).values()}


async def test_a_dedicated_service_is_seen_and_used_by_its_organisation_only(api, stranger, application, seeded, db):
    async with db() as session, session.begin():
        dedicated = Service(region_id=uuid.UUID(seeded["region"]), organisation_id=uuid.UUID(stranger.organisation),
                            type="DATABASE", identifier=f"pg-{uuid.uuid4().hex[:6]}", name="Dedicated PostgreSQL")
        session.add(dedicated)
        await session.flush()
        dedicated_id = str(dedicated.id)
    assert dedicated_id in {s["uuid"] for s in (await offered(stranger, seeded["region"])).values()}
    assert dedicated_id not in {s["uuid"] for s in (await offered(api, seeded["region"])).values()}
    assert (await api.get(f"/apps/v3/services/{dedicated_id}/")).status_code == 404
    response = await api.post("/apps/v3/service-instances/", json={
        "environment": application["test_status"]["uuid"], "service": dedicated_id})
    assert response.status_code == 400 and response.json() == {"service": ["Service not found."]}


async def test_a_stranger_neither_sees_nor_adds_our_service_instances(api, stranger, application, seeded):
    env = application["test_status"]["uuid"]
    postgres = (await offered(api, seeded["region"]))["postgres-18"]["uuid"]
    instance = (await api.post("/apps/v3/service-instances/", json={"environment": env, "service": postgres})).json()

    assert (await stranger.get(f"/apps/v3/service-instances/{instance['uuid']}/")).status_code == 404
    assert (await stranger.delete(f"/apps/v3/service-instances/{instance['uuid']}/")).status_code == 404
    for params in ({"environment": env}, {"application": application["uuid"]}, {}):
        listed = (await stranger.get("/apps/v3/service-instances/", params=params)).json()
        assert instance["uuid"] not in {i["uuid"] for i in listed["results"]}
    response = await stranger.post("/apps/v3/service-instances/", json={
        "environment": env, "service": postgres, "prefix": "MINE"})
    assert response.status_code == 400 and response.json() == {"environment": ["Environment not found."]}
    assert (await api.get(f"/apps/v3/service-instances/{instance['uuid']}/")).status_code == 200


async def test_removing_a_new_instance_deletes_it_and_is_audited(api, application, seeded, db):
    env = application["test_status"]["uuid"]
    postgres = (await offered(api, seeded["region"]))["postgres-18"]["uuid"]
    instance = (await api.post("/apps/v3/service-instances/", json={"environment": env, "service": postgres})).json()

    response = await api.delete(f"/apps/v3/service-instances/{instance['uuid']}/")
    assert response.status_code == 200 and response.json()["service_status"] == "REMOVED"
    assert (await api.get(f"/apps/v3/service-instances/{instance['uuid']}/")).status_code == 404
    assert (await api.get("/apps/v3/service-instances/", params={"environment": env})).json()["count"] == 0
    # Removing it frees the prefix.
    again = await api.post("/apps/v3/service-instances/", json={"environment": env, "service": postgres})
    assert again.status_code == 201

    async with db() as session:
        actions = (await session.execute(select(AuditEvent.action).where(
            AuditEvent.target_id == uuid.UUID(instance["uuid"])).order_by(AuditEvent.id))).scalars().all()
    assert actions == ["service_instance.create", "service_instance.delete"]


def test_only_a_new_or_detached_instance_is_removed():
    check_removable(State.NEW)
    check_removable(State.DETACHED)  # its database or bucket is deleted with it
    for state in (State.PROVISIONING, State.PROVISIONED, State.ATTACHED):
        with pytest.raises(RemovalRefused, match="detach it"):
            check_removable(state)


async def unreachable_servers(db, settings, region: str) -> None:
    """The region's servers as registered, with nothing answering where they are said to be."""
    vault = Vault(settings.secrets_key, settings.region_key)
    async with db() as session, session.begin():
        await catalogue.register_servers(session, vault, uuid.UUID(region), {
            "postgres-18": {"admin_url": f"postgresql://postgres:secret@127.0.0.1:{free_port()}/postgres",
                            "host": "127.0.0.1", "port": 5432},
            "s3": {"endpoint": f"http://127.0.0.1:{free_port()}", "access_key": "admin", "secret_key": "secret",
                   "host": "127.0.0.1", "port": 8333}})


async def test_a_database_server_that_does_not_answer_fails_the_deployment_with_the_reason(api, application, seeded,
                                                                                        db, settings):
    env = application["test_status"]["uuid"]
    await unreachable_servers(db, settings, seeded["region"])
    services = await offered(api, seeded["region"])
    instance = (await api.post("/apps/v3/service-instances/", json={
        "environment": env, "service": services["postgres-18"]["uuid"]})).json()

    deployment = (await api.post("/apps/v3/deployments/", json={"environment": env})).json()
    failed = await wait_for(api, deployment["uuid"], lambda d: d["ended_at"] is not None, timeout=30)

    assert failed["success"] is False and failed["status"] == "failure"
    assert failed["error"].startswith("Provisioning failed: database service DEFAULT: PostgreSQL 18 could not "
                                      "create it: ")
    assert "secret" not in failed["error"]
    log = (await api.get(f"/apps/v3/deployments/{deployment['uuid']}/logs")).json()["logs"]
    assert "Provisioning: creating database service DEFAULT" in log and "The previous release keeps serving" in log
    after = (await api.get(f"/apps/v3/service-instances/{instance['uuid']}/")).json()
    assert after["service_status"] == "NEW"  # the next deployment tries again


async def test_detaching_keeps_an_instance_and_removing_it_needs_its_server(api, application, seeded, db, settings):
    env = application["test_status"]["uuid"]
    await unreachable_servers(db, settings, seeded["region"])
    services = await offered(api, seeded["region"])
    instance = (await api.post("/apps/v3/service-instances/", json={
        "environment": env, "service": services["s3"]["uuid"]})).json()
    path = f"/apps/v3/service-instances/{instance['uuid']}/"

    refused = await api.post(path + "detach/")
    assert refused.status_code == 409 and "only an attached" in refused.json()["non_field_errors"][0].lower()
    async with db() as session, session.begin():  # as a deployment leaves it
        attached = await session.get(ServiceInstance, uuid.UUID(instance["uuid"]))
        attached.state = State.ATTACHED
        attached.credentials_encrypted = Vault(settings.secrets_key, settings.region_key).encrypt(json.dumps(
            {"bucket": "si-x", "access_key": "k", "secret_key": "s", "dsn": "s3://k:s@si-x.127.0.0.1:8333/"}))

    attached_removal = await api.delete(path)
    assert attached_removal.status_code == 409 and "detach it" in attached_removal.text
    assert (await api.post(path + "detach/")).json()["service_status"] == "DETACHED"
    assert (await api.post(path + "attach/")).json()["service_status"] == "ATTACHED"
    assert (await api.post(path + "detach/")).json()["service_status"] == "DETACHED"

    kept = await api.delete(path)  # its bucket cannot be deleted now: the instance stays
    assert kept.status_code == 409 and "kept" in kept.text
    assert (await api.get(path)).json()["service_status"] == "DETACHED"
