"""The Viewer's "unlabelled" tool in a real browser: pick it, drag on the canvas, and the Python label
layer holds the layer dtype's ignore value (sparse labels) under the stroke, drawn hatched grey."""

import pytest
from harness import VIEWER_JS_HELPERS, NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELL = """
import numpy as np
from empanada_nb.widgets import Viewer
vol = (np.random.default_rng(0).random((2, 96, 128)) * 255).astype(np.uint8)
lab = np.zeros((2, 96, 128), np.uint32)
lab[0, 10:30, 10:30] = 5
v = Viewer(vol, labels={"sparse": lab}, height=360)
v.slice_index = 0
v
"""

IGNORE = 2**32 - 1


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "sparse_labels.ipynb", [CELL], wait_for=(".enb-viewer canvas",)
    )
    session.page.wait_for_function(
        "() => document.querySelector('.enb-viewer').dataset.shown === 'xy:0'", timeout=120_000
    )
    session.page.evaluate(VIEWER_JS_HELPERS)
    yield session
    session.page.close()


def test_unlabelled_tool_paints_the_ignore_value(nb):
    page = nb.page
    page.click("button[data-tool=unlabelled]")
    wait_py(nb, "v.tool == 'unlabelled'")
    page.fill("input[title^='Brush size']", "6")
    page.press("input[title^='Brush size']", "Enter")
    wait_py(nb, "v.brush_size == 6")
    a = page.evaluate("() => window.__enbHelpers.toClient(60, 20)")
    b = page.evaluate("() => window.__enbHelpers.toClient(60, 110)")
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=12)
    page.mouse.up()
    n = wait_py(nb, f"int((lab[0] == {IGNORE}).sum())")
    assert 80 * 5 < n < 100 * 8
    assert nb.py_json(f"[int(lab[0, 60, 60]), int((lab[0, :50] == {IGNORE}).sum()), int((lab[1] != 0).sum())]") == [
        IGNORE,
        0,
        0,
    ]
    assert nb.py_json("int((lab[0] == 5).sum())") == 400  # the labelled object is untouched
    # the browser holds the value and draws it as grey stripes (hatched), not as a label colour
    page.wait_for_function(
        f"() => window.__enb.views[0].labelAt(window.__enb.views[0].activeLayer().uid, {{row: 60.5, col: 60.5}})"
        f" === {IGNORE}",
        timeout=10_000,
    )
    colours = page.evaluate("""() => {
        const v = window.__enb.views[0], lc = [...v.renderer.labelCanvases.values()][0];
        const d = lc.ctx.getImageData(40, 57, 16, 6).data, seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add([d[i], d[i + 1], d[i + 2], d[i + 3]].join(","));
        return [...seen].sort();
    }""")
    assert colours == ["0,0,0,0", "150,150,150,255"]
    # the U shortcut picks the tool too; undo takes the stroke back
    page.click("button[data-tool=pan]")
    page.click(".enb-overlay", position={"x": 5, "y": 5}, button="right")
    page.keyboard.press("u")
    wait_py(nb, "v.tool == 'unlabelled'")
    page.keyboard.press("Control+z")
    wait_py(nb, f"int((lab[0] == {IGNORE}).sum()) == 0")
    assert not nb.errors
