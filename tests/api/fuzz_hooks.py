"""schemathesis hooks for the API fuzz run (loaded through SCHEMATHESIS_HOOKS).

DELETE is fuzzed too, stateful links included (a list's ids fed to a DELETE), so the run
could revoke the very token it runs with, or remove its caller from its organisation, and
answer 401 or 404 to everything after. The ids in REGIO_FUZZ_KEEP (comma-separated: those
and the organisation and region the rest of the region's tests need) are swapped for an
unknown id in a DELETE's path: the DELETE is still sent, and gets a 404."""
import os
import uuid

import schemathesis

KEEP = frozenset(filter(None, os.environ.get("REGIO_FUZZ_KEEP", "").split(",")))


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() != "DELETE" or not case.path_parameters:
        return
    if str(case.path_parameters.get("uuid")) in KEEP:
        case.path_parameters = {**case.path_parameters, "uuid": str(uuid.uuid4())}
