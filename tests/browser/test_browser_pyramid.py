"""A multiscale OME-Zarr and an anisotropic volume in a real JupyterLab page.

Zooming out makes the browser ask for a coarser pyramid level (Python sees the level shown change),
and a click there still lands at level 0's coordinates; an xz slice of a volume with 5x thicker z
voxels is drawn 5x taller than its voxel count, measured on the canvas pixels.
"""

import pytest
from harness import VIEWER_JS_HELPERS, NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELL = """
import tempfile
from pathlib import Path
import numpy as np
import zarr
from empanada_nb.widgets import Viewer

tmp = Path(tempfile.mkdtemp())
base = (np.arange(4 * 512 * 512) % 251).astype(np.uint8).reshape(4, 512, 512)
g = zarr.open_group(str(tmp / "img.zarr"), mode="w", zarr_format=2)
for i in range(3):
    g.create_array(str(i), data=np.ascontiguousarray(base[:, :: 2**i, :: 2**i]), chunks=(1, 128, 128))
g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": "space"} for n in "zyx"],
    "datasets": [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1, 2**i, 2**i]}]}
                 for i in range(3)]}]
v = Viewer(tmp / "img.zarr", patch_size=16, height=360)
v
"""

ANISO = """
a = Viewer(np.full((20, 100, 100), 200, np.uint8), axis="xz", voxel_size=(5, 1, 1), patch_size=8, height=360)
a
"""


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "pyramid.ipynb", [CELL, ANISO], wait_for=(".enb-viewer canvas",)
    )
    page = session.page
    page.wait_for_function(
        "() => document.querySelectorAll('.enb-viewer').length === 2"
        " && document.querySelectorAll('.enb-viewer')[1].dataset.shown === 'xz:50'",
        timeout=120_000,
    )
    page.evaluate(VIEWER_JS_HELPERS)
    yield session
    page.close()


def test_zoom_out_shows_a_coarser_level_and_clicks_stay_level0(nb):
    page = nb.page
    page.locator(".enb-viewer").first.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:2'")
    assert nb.py_json("v.level") == 0
    scale = page.evaluate("() => window.__enb.views[0].view.scale")
    assert scale * 2 > 1  # fitted: level 1 would show pixels larger than the screen's
    x, y = page.evaluate("() => window.__enbHelpers.toClient(256, 256)")
    page.mouse.move(x, y)
    page.mouse.wheel(0, 900)  # zoom out around the centre
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:2@2'")
    assert wait_py(nb, "v.level == 2 and v.level")
    scale = page.evaluate("() => window.__enb.views[0].view.scale")
    assert scale * 4 <= 1.0001 < scale * 8
    page.click(".enb-viewer >> nth=0 >> button[data-tool=pick]")
    x, y = page.evaluate("() => window.__enbHelpers.toClient(300.5, 200.5)")
    page.mouse.click(x, y)
    pick = wait_py(nb, "v.picks")[0]
    tol = 1 / scale + 1  # one CSS pixel of the zoomed-out view
    assert pick["z"] == 2 and abs(pick["y"] - 300) <= tol and abs(pick["x"] - 200) <= tol  # level 0's, not level 2's
    page.mouse.wheel(0, -900)  # back in: full resolution again
    assert wait_py(nb, "v.level == 0 and 'zoomed in'")
    nb.py("v.max_slice_mpix = 0.1")  # level 0's 512 x 512 slice is over the budget, level 1's is not
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:2@1'")
    assert wait_py(nb, "v.level == 1 and 'capped'")
    assert not nb.errors, nb.errors


def test_anisotropic_xz_is_stretched(nb):
    page = nb.page
    page.locator(".enb-viewer").nth(1).scroll_into_view_if_needed()
    size = page.evaluate("""() => {
        const v = window.__enb.views[1], ctx = v.canvas.getContext('2d'), W = v.canvas.width, H = v.canvas.height;
        const bright = (x, y) => ctx.getImageData(x, y, 1, 1).data[0] > 150;
        let w = 0, h = 0;
        for (let x = 0; x < W; x++) if (bright(x, H >> 1)) w++;
        for (let y = 0; y < H; y++) if (bright(W >> 1, y)) h++;
        return [w, h];
    }""")
    w, h = size
    assert w > 50 and abs(h / w - 1.0) < 0.05, size  # 20 rows of 5-unit voxels by 100 columns of 1-unit ones
    # a click still gives voxel coordinates: row 10 of the slice is z = 10
    page.click(".enb-viewer >> nth=1 >> button[data-tool=pick]")
    x, y = page.evaluate("() => window.__enbHelpers.toClient(10.5, 30.5, 1)")
    page.mouse.click(x, y)
    pick = wait_py(nb, "a.picks")[0]
    assert (pick["z"], pick["y"], pick["x"]) == (10, 50, 30)
