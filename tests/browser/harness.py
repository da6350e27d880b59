"""Real-browser harness: a Jupyter server on 127.0.0.1 and headless Chromium driven by Playwright.

The server runs one of two frontends: JupyterLab 4 (``"lab"``) or Jupyter Notebook 7 (``"notebook"``,
the classic single-document interface many JupyterHub deployments serve). Both are built on the same
application shell, exposed as ``window.jupyterapp``, so a notebook is driven the same way in either.

Used by the browser tests (tests/browser/test_*.py) and by benchmarks/slice_switch.py.

Requirements: ``jupyterlab`` (``notebook>=7`` for the Notebook 7 frontend) and ``playwright`` (the
Python package only; never ``playwright install``) and a Chromium binary (``/usr/bin/chromium`` on
Debian, or ``$EMPANADA_NB_CHROMIUM``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

CHROMIUM = os.environ.get("EMPANADA_NB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set EMPANADA_NB_CHROMIUM)"
    for mod, pkg in (("jupyterlab", "jupyterlab"), ("playwright", "playwright"), ("ipykernel", "ipykernel")):
        try:
            __import__(mod)
        except ImportError:
            return f"the Python package {pkg} is not installed (pip install {pkg})"
    return None


#: the frontends JupyterServer can start: Python module to run, and its app's settings
FRONTENDS = {
    "lab": ("jupyterlab", ["--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True"]),
    "notebook": ("notebook", ["--JupyterNotebookApp.expose_app_in_browser=True"]),
}


def missing_frontend(frontend: str) -> str | None:
    """Why ``frontend`` cannot run here (None when it can)."""
    module = FRONTENDS[frontend][0]
    try:
        __import__(module)
    except ImportError:
        return f"the Python package {module} is not installed (pip install {module})"
    if frontend == "notebook":
        import notebook

        if int(notebook.__version__.split(".")[0]) < 7:
            return f"notebook {notebook.__version__} is not Notebook 7 (pip install 'notebook>=7')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """``jupyter lab`` (or ``jupyter notebook``, Notebook 7) on a free port of 127.0.0.1 with a token,
    a temp root dir and no news toast."""

    def __init__(self, root: Path | None = None, frontend: str = "lab"):
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {sorted(FRONTENDS)}, got {frontend!r}")
        self.frontend = frontend
        self.tmp = Path(tempfile.mkdtemp(prefix="enb-jupyter-"))
        self.root = Path(root) if root else self.tmp / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.proc: subprocess.Popen | None = None
        self.log = self.tmp / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> JupyterServer:
        settings = self.tmp / "settings"
        notif = settings / "@jupyterlab" / "apputils-extension"
        notif.mkdir(parents=True)
        (notif / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        env = dict(
            os.environ,
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(self.tmp / "workspaces"),
            JUPYTER_RUNTIME_DIR=str(self.tmp / "runtime"),
            IPYTHONDIR=str(self.tmp / "ipython"),
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
            # widgets register on window.__enb and keep timing stats (empanada_nb/widgets/_esm.py)
            EMPANADA_NB_DEBUG="1",
        )
        module, app_args = FRONTENDS[self.frontend]
        cmd = [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--allow-root",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={self.root}",
            *app_args,
            "--ServerApp.port_retries=0",
            "--ServerApp.disable_check_xsrf=False",
        ]
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._logf, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.frontend} exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter {self.frontend} did not start in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def notebook_url(self, name: str) -> str:
        """The page that opens notebook ``name`` in this server's frontend."""
        if self.frontend == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_logf", None):
            self._logf.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        nb = {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": uuid.uuid4().hex[:8],
                    "metadata": {},
                    "outputs": [],
                    "source": c,
                }
                for c in cells
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        path = self.root / name
        path.write_text(json.dumps(nb))
        return path


def launch_browser(playwright, width: int = 1400, height: int = 1000):
    """A persistent Chromium context with a fresh user data dir; returns (context, user_data_dir)."""
    user_dir = tempfile.mkdtemp(prefix="enb-chromium-")
    ctx = playwright.chromium.launch_persistent_context(
        user_dir,
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": width, "height": height},
        device_scale_factor=1,
    )
    return ctx, user_dir


_RUN_PY = """async ([code, timeout]) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  const fut = kernel.requestExecute({ code, store_history: false, silent: false });
  let out = "";
  fut.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === "stream") out += msg.content.text;
    else if (t === "error")
      out += "\\n__ERROR__ " + msg.content.ename + ": " + msg.content.evalue + "\\n"
        + (msg.content.traceback || []).join("\\n");
  };
  await Promise.race([fut.done, new Promise((_, rej) => setTimeout(() => rej(new Error("kernel timeout")), timeout))]);
  return out;
}"""


class NotebookSession:
    """A notebook opened in ``page`` (JupyterLab or Notebook 7); run its cells and execute code in its kernel."""

    def __init__(self, page, server: JupyterServer, name: str):
        self.page = page
        self.server = server
        self.name = name

    def open(self, timeout: float = 90_000) -> NotebookSession:
        page = self.page
        page.goto(self.server.notebook_url(self.name), wait_until="domcontentloaded", timeout=timeout)
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext",
            timeout=timeout,
        )
        page.wait_for_function(
            "() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session;"
            " return k && k.kernel && k.kernel.connectionStatus === 'connected' && k.kernel.status === 'idle'; }",
            timeout=timeout,
        )
        return self

    def run_all(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    @classmethod
    def start(cls, server: JupyterServer, context, name: str, cells, wait_for=()) -> NotebookSession:
        """Write ``cells`` as notebook ``name``, open it in a new page, run all cells and wait for the selectors.

        Page errors are collected on ``session.errors``; close with ``session.page.close()``. Errors
        thrown inside Notebook 7's own bundle (``/static/notebook/``) go to ``session.frontend_errors``
        instead: Notebook 7.6 throws one at start-up in any notebook (``reading 'schema'`` in its
        settings registry), with or without widgets, and it is not ours to fix.
        """
        server.write_notebook(name, cells)
        page = context.new_page()
        errors, frontend_errors = [], []

        def on_error(e):
            ours = "/static/notebook/" not in (getattr(e, "stack", None) or "")
            (errors if ours else frontend_errors).append(str(e))

        page.on("pageerror", on_error)
        session = cls(page, server, name).open()
        session.errors = errors
        session.frontend_errors = frontend_errors
        session.run_all()
        for selector in wait_for:
            page.wait_for_selector(selector, timeout=120_000)
        return session

    def py(self, code: str, timeout: float = 60_000) -> str:
        """Execute ``code`` in the notebook's kernel; returns its stdout (raises on a Python error)."""
        out = self.page.evaluate(_RUN_PY, [code, timeout])
        if "__ERROR__" in out:
            raise AssertionError(f"kernel error running {code!r}:\n{out}")
        return out

    def py_json(self, expr: str):
        return json.loads(self.py(f"import json as _j; print(_j.dumps({expr}))").strip().splitlines()[-1])


VIEWER_JS_HELPERS = """
window.__enbHelpers = {
  view(i = 0) { return window.__enb.views[i]; },
  // client (CSS px) coordinates of image point (row, col) on the current slice
  toClient(row, col, i = 0) {
    const v = window.__enb.views[i], ov = v.overlay, r = ov.getBoundingClientRect();
    const px = col * v.view.scale + v.view.tx, py = row * v.view.scale * (v.view.aspect || 1) + v.view.ty;
    return [r.left + px * ov.clientWidth / ov.width, r.top + py * ov.clientHeight / ov.height];
  },
};
"""


def wait_py(nb: NotebookSession, expr: str, timeout: float = 30.0):
    """Poll a Python expression in the kernel until it is truthy; returns its JSON value."""
    deadline = time.time() + timeout
    val = None
    while time.time() < deadline:
        val = nb.py_json(expr)
        if val:
            return val
        time.sleep(0.2)
    raise AssertionError(f"{expr} stayed {val!r} for {timeout}s")
