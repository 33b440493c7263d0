"""Browser tests of the web Control Panel: Playwright driving Debian's Chromium (no browser
download: `apt-get install chromium`, which `regio up` installs as a helpful prerequisite)
against the running local region."""
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from regio_cli.region import CHECKOUT, Region
from regio_common.layout import Layout, default_state_dir

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = CHECKOUT / "test-output" / "screenshots"
PASSWORD = "browser-test-" + uuid.uuid4().hex[:12]


@dataclass
class PanelUser:
    email: str
    password: str = PASSWORD


def set_password(email: str, tmp_path: Path) -> PanelUser:
    """As an operator does, with the control panel's own settings (its environment in `regio up`)."""
    state = default_state_dir(CHECKOUT)
    region = Region(Layout.load(state), say=print)
    service = next(s for s in region.services() if s.name == "controlpanel")
    secret = tmp_path / f"password-{uuid.uuid4().hex[:6]}"
    secret.write_text(PASSWORD + "\n")
    subprocess.run([sys.executable, "-m", "regio_controlpanel.web.accounts", email, "--password-file", str(secret)],
                   env={**os.environ, **region.service_env(service)}, check=True, capture_output=True)
    return PanelUser(email)


@pytest.fixture
def chromium():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("chromium is missing: apt-get install chromium (regio up installs it on Debian)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


@pytest.fixture
def panel_admin(region, tmp_path) -> PanelUser:
    """A new admin of the region's seeded organisation (the seeded admin's password is left alone)."""
    email = f"web-admin-{uuid.uuid4().hex[:6]}@example.test"
    with region.client() as client:
        added = client.post("/iam/v3/memberships/", json={"organisation": region.organisation, "email": email,
                                                          "role": "admin"})
        assert added.status_code == 201, added.text
    return set_password(email, tmp_path)


@pytest.fixture
def outsider(tmp_path) -> PanelUser:
    """A user of no organisation yet: they make their own in the test."""
    return set_password(f"web-outsider-{uuid.uuid4().hex[:6]}@example.test", tmp_path)
