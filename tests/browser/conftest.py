"""Fixtures for the real-browser tests: a JupyterLab server and headless Chromium (see harness.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import JupyterServer, launch_browser, missing_requirements  # noqa: E402


@pytest.fixture(scope="session")
def browser_requirements():
    why = missing_requirements()
    if why:
        pytest.skip(f"browser tests need Chromium, jupyterlab and playwright: {why}")


@pytest.fixture(scope="session")
def jupyter_server(browser_requirements):
    server = JupyterServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_context(browser_requirements):
    import shutil

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx, user_dir = launch_browser(p)
        yield ctx
        ctx.close()
        shutil.rmtree(user_dir, ignore_errors=True)
