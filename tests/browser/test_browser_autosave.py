"""Nothing lost: paint and pick in a real JupyterLab page, kill the kernel (SIGKILL), restore in a fresh one.

The notebook opens a Viewer on a TIFF file. The test paints two strokes and places a pick with the mouse,
waits until the autosave has written them (past the debounce), kills the kernel process, lets Jupyter
start a fresh kernel, runs the notebook again, clicks Restore on the banner the new Viewer shows, and
checks that labels, picks and the labels the browser draws equal what was on screen before the kill.
"""

import hashlib
import json
import os
import signal
import time

import numpy as np
import pytest
from harness import VIEWER_JS_HELPERS, NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELL = """
import hashlib, os
from empanada_nb.widgets import Viewer
v = Viewer({path!r}, patch_size=32, height=360)
v
"""
STATE = (
    "dict(digest=hashlib.sha256(v.labels.tobytes()).hexdigest() if v.labels is not None else None, "
    "painted=int((v.labels > 0).sum()) if v.labels is not None else 0, picks=v.picks, "
    "layers=[l.name for l in v.label_layers])"
)


def label_on_screen(page, row, col):
    """The label the newest view has cached (and draws) at (row, col) of its active layer."""
    return page.evaluate(
        "([r, c]) => { const vs = window.__enb.views, v = vs[vs.length - 1], a = v.activeLayer();"
        " return a ? v.labelAt(a.uid, {row: r, col: c}) : null; }",
        [row, col],
    )


def stroke(page, a, b):
    page.mouse.move(*page.evaluate("([r, c]) => window.__enbHelpers.toClient(r, c)", a))
    page.mouse.down()
    page.mouse.move(*page.evaluate("([r, c]) => window.__enbHelpers.toClient(r, c)", b), steps=8)
    page.mouse.up()


def wait_kernel_back(nb, old_pid, timeout=120):
    """Jupyter restarts a dead kernel; dismiss the frontend's dialog and wait for a new process."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for button in nb.page.locator(".jp-Dialog .jp-mod-accept").all():
            try:
                button.click(timeout=1000)
            except Exception:
                pass
        try:
            pid = nb.py_json("__import__('os').getpid()")
            if pid != old_pid:
                return pid
        except Exception:  # the kernel is still dead or restarting
            pass
        time.sleep(0.5)
    raise AssertionError("no fresh kernel after the kill")


def test_kill_the_kernel_mid_edit_and_restore(jupyter_server, browser_context, tmp_path):
    from empanada_nb.data.io import write_tiff

    path = tmp_path / "cell.tif"
    write_tiff(path, (np.arange(4 * 128 * 128) % 251).astype(np.uint8).reshape(4, 128, 128))
    cells = [CELL.format(path=str(path))]
    nb = NotebookSession.start(jupyter_server, browser_context, "autosave.ipynb", cells, wait_for=(".enb-viewer",))
    page = nb.page
    try:
        page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:2'", timeout=120_000)
        page.evaluate(VIEWER_JS_HELPERS)
        assert not page.locator(".enb-autosave").is_visible()  # nothing to offer on a fresh file
        page.click("button[data-tool=paint]")
        page.fill(".enb-label-input", "7")
        page.press(".enb-label-input", "Enter")
        wait_py(nb, "v.current_label == 7")
        stroke(page, (30.5, 20.5), (30.5, 90.5))
        stroke(page, (60.5, 40.5), (100.5, 40.5))
        wait_py(nb, "v.history.can_undo and len(v.history._undo) == 2")
        page.click("button[data-tool=pick]")
        page.mouse.click(*page.evaluate("() => window.__enbHelpers.toClient(80.5, 80.5)"))
        wait_py(nb, "len(v.picks) == 1")
        before = nb.py_json(STATE)
        assert before["painted"] > 100 and before["picks"][0]["z"] == 2
        assert label_on_screen(page, 30.5, 50.5) == 7
        # past the debounce: the autosave has written everything that is on screen
        session = nb.py_json("str(v.autosave_path)")
        wait_py(nb, "v.autosave_path.exists() and not (v._as_dirty or v._as_full or v._as_changed)", timeout=30)
        meta = json.loads((tmp_path / session / "session.json").read_text())
        assert meta["picks"] == before["picks"] and meta["layers"][0]["slices"] == [2]

        pid = nb.py_json("os.getpid()")
        os.kill(pid, signal.SIGKILL)
        wait_kernel_back(nb, pid)
        nb.run_all()  # the same cell in the fresh kernel: a new Viewer on the same file
        page.wait_for_selector(".enb-autosave:visible", timeout=120_000)
        offer = page.locator(".enb-autosave-text").inner_text()
        assert offer.startswith("unsaved work on this image: 1 label layer (1 edited slice), 1 pick, 0 regions from")
        assert nb.py_json(STATE)["painted"] == 0
        page.click(".enb-autosave-restore")
        wait_py(nb, "v.autosave_offer == '' and v.labels is not None")
        after = nb.py_json(STATE)
        assert after == before
        assert nb.py_json("v.message").startswith("restored 1 label layer (1 edited slice), 1 pick, 0 regions from")
        page.wait_for_selector(".enb-autosave", state="hidden")
        page.wait_for_function(
            "() => { const vs = window.__enb.views, v = vs[vs.length - 1], a = v.activeLayer();"
            " return a && v.labelAt(a.uid, {row: 30.5, col: 50.5}) === 7; }",
            timeout=20_000,
        )
        assert label_on_screen(page, 30.5, 5.5) == 0
        # the killed kernel's session is gone; the restored state is the new Viewer's own autosave
        sessions = sorted(p.name for p in (tmp_path / session).parent.iterdir())
        assert sessions == [os.path.basename(nb.py_json("str(v.autosave_path)"))]
        assert hashlib.sha256(path.read_bytes()).hexdigest()  # the image itself is untouched and readable
        assert not nb.errors
    finally:
        page.close()
