"""A real browser against a real `streamlit run`: Debian's chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = os.environ.get("RAGBENCH_SCREENSHOTS")  # a folder: keep a screenshot of each page


@contextlib.contextmanager
def running_app(
    data: Path, env: dict[str, str] | None = None, script: str = "streamlit_app.py"
) -> Iterator[str]:
    """`streamlit run streamlit_app.py` (as `make run` starts it; a team server runs serve.py)
    on a free loopback port, with `data` as its data directory and `env` added to its
    environment; yields its URL."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it where it can)")
    from tests.support.st_client import served

    with served(data, env, script) as url:
        yield url


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """Start the app exactly as `make run` does (streamlit run streamlit_app.py)."""
    with running_app(tmp_path_factory.mktemp("e2e_data")) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    """One browser page for the whole walk (state lives in the app's session and on disk)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(120_000)
        try:
            yield tab
        finally:
            # Leave a picture of where the walk ended, for a failing run.
            tab.screenshot(
                path=str(Path(os.environ.get("RAGBENCH_E2E_LAST", "/tmp/ragbench-e2e-last.png"))),
                full_page=True,
            )
            browser.close()


def wait_idle(tab, timeout_s: float = 600) -> None:
    """Wait until Streamlit finished the current script run (no 'Running…' widget)."""
    tab.wait_for_timeout(500)
    tab.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=timeout_s * 1000,
    )
    tab.wait_for_timeout(300)


def no_exception(tab) -> None:
    """Fail on any Streamlit exception box on the page."""
    boxes = tab.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


def shoot(tab, name: str, height: int = 1000) -> None:
    """With RAGBENCH_SCREENSHOTS set, a picture of the page. Streamlit's main area scrolls inside
    the page, so a full-page screenshot shows only the window: `height` makes the window tall
    enough to hold the results below the fold."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    size = tab.viewport_size
    tab.set_viewport_size({"width": size["width"], "height": height})
    tab.wait_for_timeout(1500)  # the charts re-render at the new size
    tab.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)
    tab.set_viewport_size(size)
