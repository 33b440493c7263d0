"""Write the public API's OpenAPI document: python -m regio_controlpanel.openapi > services/controlpanel/openapi/openapi.json

The committed document is the contract for generated clients; a test fails when the
code drifts from it."""
import json
import sys

from regio_common.sealing import new_key

from .main import create_app
from .settings import Settings


def document() -> dict:
    # Keys only make the app constructible; the document does not depend on them.
    app = create_app(Settings(secrets_key=new_key(), region_key=new_key()))
    return app.openapi()


def main() -> None:
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
