"""Fixtures for the real-browser tests: Jupyter servers (JupyterLab 4, Notebook 7) and headless Chromium
(see harness.py). ``jupyter_server`` is JupyterLab; ``frontend_server`` is parametrized over both frontends."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import JupyterServer, launch_browser, missing_frontend, missing_requirements  # noqa: E402


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
def notebook7_server(browser_requirements):
    why = missing_frontend("notebook")
    if why:
        pytest.skip(f"Notebook 7 browser tests: {why}")
    server = JupyterServer(frontend="notebook").start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["lab", "notebook"])
def frontend_server(request):
    """The JupyterLab or the Notebook 7 server (tests using it run once per frontend)."""
    return request.getfixturevalue("jupyter_server" if request.param == "lab" else "notebook7_server")


@pytest.fixture(scope="session")
def browser_context(browser_requirements):
    import shutil

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx, user_dir = launch_browser(p)
        yield ctx
        ctx.close()
        shutil.rmtree(user_dir, ignore_errors=True)
