"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server."""

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e import DESKTOP

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent / "screenshots"


def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).exists() or shutil.which("chromium"):
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError(
            f"CI needs {CHROMIUM} for the browser tests; install it with apt-get."
        )
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install -y chromium")
    for item in items:
        if "e2e" in item.nodeid.split("/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def screen():
    """The screen a test runs on; a test parametrizes it (tests.e2e.PHONE)."""
    return DESKTOP


@pytest.fixture
def browser_context_args(browser_context_args, screen):
    # A user far from UTC proves date-times are read in their zone and sent as UTC.
    return {**browser_context_args, "timezone_id": "Europe/Paris", **screen}


@pytest.fixture
def shot(page):
    """Save a full-page screenshot for a person to look at (never committed)."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        # caret="initial": hiding the caret injects a <style>, which our CSP refuses.
        page.screenshot(path=path, full_page=True, caret="initial")
        return path

    return take


@pytest.fixture
def login(page, live_server):
    """Log in through the real form, using only the keyboard."""

    def do(username: str, password: str) -> None:
        page.goto(f"{live_server.url}/tickets/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_label("Password").press("Enter")
        page.wait_for_url(re.compile(r"/tickets/"))

    return do


@pytest.fixture(autouse=True)
def _no_console_errors(page):
    """Every page runs clean: no script errors, no CSP violations, no failed loads."""
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            message.type == "error" and errors.append(f"{message.text} at {message.location}")
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert errors == [], "\n".join(errors)
