"""The committed OpenAPI document is the contract for generated clients."""
import json
from pathlib import Path

from regio_controlpanel.openapi import document

COMMITTED = Path(__file__).parents[1] / "openapi" / "openapi.json"


def test_the_committed_openapi_document_matches_the_code():
    committed = json.loads(COMMITTED.read_text())
    assert committed == json.loads(json.dumps(document())), (
        "the API changed: regenerate with `python -m regio_controlpanel.openapi > "
        "services/controlpanel/openapi/openapi.json` and commit it")


def test_every_public_route_has_typed_responses():
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            success = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
            assert success, f"{method.upper()} {path} declares no success response"
            for code, response in success.items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                assert schema and schema != {}, f"{method.upper()} {path} {code} has no response model"


def _depends_on(dependant, target) -> bool:
    return any(d.call is target or _depends_on(d, target) for d in dependant.dependencies)


def test_every_public_route_checks_the_caller():
    """As Tsuru's CI does: a public handler without an authorisation check is a defect."""
    from regio_controlpanel.api.deps import get_caller
    from regio_controlpanel.main import PUBLIC_ROUTERS

    public = [route for router in PUBLIC_ROUTERS for route in router.routes]
    assert len(public) > 20 and {r.path.split("/")[1] for r in public} == {"apps", "iam", "billing"}
    unchecked = [f"{sorted(r.methods)} {r.path}" for r in public if not _depends_on(r.dependant, get_caller)]
    assert unchecked == []
