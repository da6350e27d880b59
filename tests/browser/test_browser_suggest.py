"""Suggested patches in a real JupyterLab page: the boxes are drawn, a click on a box selects it, and the
panel's reject / accept buttons drop it or turn it into a pick of the Python Viewer.

The model is a stub whose uncertainty is known: a mid-grey square is 50/50, everything else certain.
"""

import pytest
from harness import VIEWER_JS_HELPERS, NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELL = """
import numpy as np
import torch
from torch import nn
from empanada_nb.widgets import Viewer

class GreyModel(nn.Module):
    architecture, padding_factor, num_classes, norms = "PanopticDeepLab", 16, 1, {"mean": 0.0, "std": 1.0}
    def forward(self, x):
        z = torch.zeros_like(x)
        return {"sem_logits": 40 * (x - 0.5), "ctr_hmp": x, "offsets": torch.cat([z, z], 1)}

vol = np.zeros((3, 96, 96), np.uint8)
vol[:, 10:30, 50:70] = 255
vol[1, 56:80, 8:32] = 128
vol[1, 8:40, 8:40] = 120
v = Viewer(vol, patch_size=32, height=360)
v.model = GreyModel()
first = v.suggest(n=2, slice_gap=1)
v
"""


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "suggest.ipynb", [CELL], wait_for=(".enb-viewer canvas",)
    )
    page = session.page
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:1'", timeout=120_000)
    page.evaluate(VIEWER_JS_HELPERS)
    yield session
    page.close()


def magenta_on_top_edge(page, r0, c0, c1):
    """Whether the top edge of a box (row r0, cols c0..c1) is drawn in the suggestion colour."""
    return page.evaluate(
        """([r0, c0, c1]) => {
        const v = window.__enb.views[0], ctx = v.canvas.getContext('2d');
        for (let col = c0; col <= c1; col += 0.25) {
            const x = Math.round(col * v.view.scale + v.view.tx), y = Math.round(r0 * v.view.scale + v.view.ty);
            const [r, g, b] = ctx.getImageData(x, y, 1, 1).data;
            if (r > 180 && b > 180 && g < 120) return true;
        }
        return false;
    }""",
        [r0, c0, c1],
    )


def box(s, n=96):
    r0 = min(max(0, s["y"] - s["size"] // 2), n - s["size"])
    c0 = min(max(0, s["x"] - s["size"] // 2), n - s["size"])
    return r0, c0


def test_suggestions_drawn_then_rejected_and_accepted(nb):
    page = nb.page
    sugg = nb.py_json("v.suggestions")
    assert len(sugg) == 2 and all(s["z"] == 1 for s in sugg)  # both near the two grey squares of slice 1
    page.wait_for_selector(".enb-suggestion >> nth=1")
    for s in sugg:
        r0, c0 = box(s)
        assert magenta_on_top_edge(page, r0, c0 + 4, c0 + 28), s
    # with the pick tool, a click inside a suggested box selects it (and adds no pick)
    page.click("button[data-tool=pick]")
    r0, c0 = box(sugg[1])
    page.mouse.click(*page.evaluate(f"() => window.__enbHelpers.toClient({r0 + 16}, {c0 + 16})"))
    page.wait_for_function("() => window.__enb.views[0].selectedSuggestion === 1")
    page.click("button[data-op=reject-suggestion]")
    wait_py(nb, "len(v.suggestions) == 1")
    assert nb.py_json("[{k: s[k] for k in ('axis', 'z', 'y', 'x', 'size')} for s in v.rejected_suggestions]") == [
        {k: sugg[1][k] for k in ("axis", "z", "y", "x", "size")}
    ]
    r0, c0 = box(sugg[0])
    page.mouse.click(*page.evaluate(f"() => window.__enbHelpers.toClient({r0 + 16}, {c0 + 16})"))
    page.wait_for_function("() => window.__enb.views[0].selectedSuggestion === 0")
    page.click("button[data-op=accept-suggestion]")
    picks = wait_py(nb, "v.picks")
    assert picks == [{k: sugg[0][k] for k in ("axis", "z", "y", "x", "size")}]
    assert nb.py_json("v.suggestions") == []
    page.wait_for_selector(".enb-side .enb-item:has-text('1. xy z1')")  # listed as a pick
    assert not page.locator(".enb-suggestion").count()
    assert not nb.errors, nb.errors
