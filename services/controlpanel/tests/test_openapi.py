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
                if code == "204":  # No Content: nothing to type
                    continue
                content = response.get("content", {})
                # A printable page (an invoice) is HTML: typed as a string.
                schema = (content.get("application/json") or content.get("text/html") or {}).get("schema")
                assert schema and schema != {}, f"{method.upper()} {path} {code} has no response model"


def test_operation_ids_are_unique_handler_names():
    """Generated clients name a function after each operation id: two handlers of one name would clash."""
    ids = [op["operationId"] for ops in document()["paths"].values() for op in ops.values()]
    assert sorted({i for i in ids if ids.count(i) > 1}) == []
    assert "create_deployment" in ids
