import http.server
import os
import shutil
import signal
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

SHARED_DATA = Path(os.environ.get("EMPANADA_NB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real EM data folder (../shared/data or $EMPANADA_NB_DATA); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found; set EMPANADA_NB_DATA")
    return SHARED_DATA


_FAILED_MODULES: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        _FAILED_MODULES.add(item.nodeid.split("::")[0])
    return report


@pytest.fixture(scope="module", autouse=True)
def _drop_module_scratch(request, tmp_path_factory):
    """Remove the folders a module made under the run's base temp once it is done, unless a test failed.

    tmp_path_retention_policy="failed" drops a passed test's tmp_path at once, but module-scoped
    tmp_path_factory folders (datasets, the fault catalogue, peer exports) and the per-test registries
    would otherwise stay until the run ends; together they filled CI's disk.
    """
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    if request.node.nodeid.split("::")[0] in _FAILED_MODULES:
        return
    for p in set(base.iterdir()) - before:
        shutil.rmtree(p, ignore_errors=True)


@pytest.fixture(autouse=True)
def _sigint_default(request):
    """Every test starts with Python's own Ctrl-C handler, and a test that leaves another one is named.

    In a full CI run SIGINT was found ignored after the earlier modules (children then inherit SIG_IGN
    and every Ctrl-C test fails); the training loop only takes Ctrl-C over from the default handler.
    """
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if main and signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        warnings.warn(f"{request.node.nodeid} left SIGINT handled by {signal.getsignal(signal.SIGINT)!r}", stacklevel=1)
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated_registry(tmp_path_factory, monkeypatch):
    """Each test gets its own model registry, autosave folder and no network: nothing touches ~/.cache or zenodo.

    EMPANADA_NB_OFFLINE makes every download (CEM weights, published models) fail at once with the
    offline message instead of waiting on a timeout; tests of downloads unset it and use 127.0.0.1.
    """
    registry = tmp_path_factory.mktemp("registry")
    monkeypatch.setenv("EMPANADA_NB_MODELS", str(registry))
    monkeypatch.setenv("EMPANADA_NB_OFFLINE", "1")
    # Viewers opened on files autosave there, never beside the real data or into ~/.cache
    autosave = tmp_path_factory.mktemp("autosave")
    monkeypatch.setenv("EMPANADA_NB_AUTOSAVE", str(autosave))
    yield
    shutil.rmtree(registry, ignore_errors=True)
    shutil.rmtree(autosave, ignore_errors=True)


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 over tmp_path/www, counting requests per path."""
    www = tmp_path / "www"
    www.mkdir()
    hits: dict[str, int] = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def do_GET(self):
            path = self.path.split("?")[0]
            hits[path] = hits.get(path, 0) + 1
            return super().do_GET()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield types.SimpleNamespace(www=www, url=f"http://127.0.0.1:{httpd.server_port}", hits=hits)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed (to the 127.0.0.1 server only: tests never name another host)."""
    monkeypatch.delenv("EMPANADA_NB_OFFLINE", raising=False)
