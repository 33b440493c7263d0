"""`regio billing …` against the running region's control panel database: the price list as
JSON, and what cannot be refused with exit 2 and the reason (what it changes, and invoices,
are the control panel's tests: services/controlpanel/tests/test_billing_admin.py)."""
import json
import subprocess

from tests.conftest import REGIO


def billing(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([REGIO, "billing", *args], capture_output=True, text=True, timeout=120)


def test_the_plans_and_the_usage_price_list_are_printed_as_json(region):
    listed = billing("plans")
    assert listed.returncode == 0, listed.stderr
    body = json.loads(listed.stdout)
    assert body["plans"] and all({"id", "name", "plan_group", "prices"} <= set(p) for p in body["plans"])
    assert isinstance(body["usage_prices"], list)


def test_what_cannot_be_is_refused_with_the_reason(region):
    kind = billing("usage-price", "minutes", "0.1")
    assert kind.returncode == 2 and "kind: 'minutes' is not one of instance" in kind.stderr, kind.stderr
    month = billing("close-month", "2999-01")
    assert month.returncode == 2 and "2999-01 can be closed from 2999-02-01 02:00" in month.stderr, month.stderr
