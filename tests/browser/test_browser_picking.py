"""Picking in a real JupyterLab page: a multiscale image viewed at pyramid level 1, flipbook picks,
pick centres saved to and loaded from a points file (napari's points CSV included), and the shown
slice cut into overlapping tiles, one tile edited on disk, and the tiles stitched back into a layer.

Each test clicks in the page, then asserts on the Python objects and on the files written.
"""

import pytest
from harness import VIEWER_JS_HELPERS, NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELL = """
import tempfile
from pathlib import Path
import numpy as np
import tifffile
from empanada_nb.widgets import Viewer

base = (np.arange(8 * 128 * 128) % 251).astype(np.uint8).reshape(8, 128, 128)
tmp = Path(tempfile.mkdtemp())
# a point placed on the full-resolution image, as napari saves a points layer
(tmp / "napari.csv").write_text("index,axis-0,axis-1,axis-2\\n0,6,100,60\\n")
lab = np.zeros((8, 64, 64), np.uint32)
lab[4, 10:20, 5:60] = 3  # crosses the tile seams
v = Viewer([base, base[:, ::2, ::2]], level=1, labels=lab, patch_size=16, height=360)
v
"""


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "picking.ipynb", [CELL], wait_for=(".enb-viewer canvas",)
    )
    page = session.page
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:4'", timeout=120_000)
    page.evaluate(VIEWER_JS_HELPERS)
    yield session
    page.close()


def test_flipbook_pick_on_a_pyramid_level(nb):
    page = nb.page
    assert page.locator(".enb-level").inner_text() == "level 1 of 1"
    assert nb.py_json("v.shape") == [8, 64, 64]
    page.fill(".enb-flipbook", "3")
    page.press(".enb-flipbook", "Enter")
    wait_py(nb, "v.flipbook == 3")
    page.click("button[data-tool=pick]")
    x, y = page.evaluate("() => window.__enbHelpers.toClient(30.5, 20.5)")
    page.mouse.click(x, y)
    pick = wait_py(nb, "v.picks")[0]
    assert (pick["z"], pick["y"], pick["x"], pick["size"]) == (4, 30, 20, 16)  # level-1 coordinates
    assert "×3" in page.locator(".enb-side .enb-item").filter(has_text="z4").inner_text()
    # the flipbook (slices 3..5) is outlined on the pick's neighbours, not beyond
    assert yellow_on_box_edge(nb, 5) and not yellow_on_box_edge(nb, 7)


def yellow_on_box_edge(nb, index):
    """Whether the pick's box top edge (row 22, cols 12..28) is drawn in the pick colour on slice ``index``."""
    page = nb.page
    nb.py(f"v.goto('xy', {index})")
    page.wait_for_function(f"() => document.querySelector('.enb-viewer').dataset.shown === 'xy:{index}'")
    page.wait_for_timeout(100)
    return page.evaluate("""() => {
        const v = window.__enb.views[0], ctx = v.canvas.getContext('2d');
        for (let col = 12; col <= 28; col += 0.25) {
            const x = Math.round(col * v.view.scale + v.view.tx), y = Math.round(22 * v.view.scale + v.view.ty);
            const [r, g, b] = ctx.getImageData(x, y, 1, 1).data;
            if (r > 180 && g > 150 && r - b > 100) return true;
        }
        return false;
    }""")


def test_points_file_save_and_load(nb):
    page = nb.page
    page.fill(".enb-points-path", nb.py_json("str(tmp / 'picks.csv')"))
    page.click("button[title^='Save the pick centres']")
    text = wait_py(nb, "(tmp / 'picks.csv').exists() and (tmp / 'picks.csv').read_text()")
    assert text.splitlines() == ["axis,index,row,col,size", "xy,4,30,20,16"]
    # napari's points CSV on the full-resolution image, scaled to level 1
    page.fill(".enb-points-path", nb.py_json("str(tmp / 'napari.csv')"))
    page.check(".enb-full-res")
    page.click("button[title^='Add picks from a points file']")
    picks = wait_py(nb, "len(v.picks) == 2 and v.picks")
    assert (picks[1]["z"], picks[1]["y"], picks[1]["x"]) == (6, 50, 30)


def test_save_patches_writes_flipbooks(nb):
    page = nb.page
    page.fill(".enb-side input[placeholder='dataset folder']", nb.py_json("str(tmp / 'ds')"))
    page.fill(".enb-side input[placeholder='name']", "lv1")
    page.click("button:text-is('save patches')")
    wait_py(nb, "'flipbook' in v.message")
    shapes = nb.py_json("sorted(tifffile.imread(p).shape for p in (tmp / 'ds' / 'lv1' / 'flipbooks').glob('*.tif'))")
    assert shapes == [[3, 16, 16], [3, 16, 16]]
    # the flipbook of the first pick: slices 3..5 of level 1 around its centre
    assert nb.py_json(
        "bool((tifffile.imread(sorted((tmp / 'ds' / 'lv1' / 'flipbooks').glob('*z0004*'))[0])"
        " == base[3:6, ::2, ::2][:, 22:38, 12:28]).all())"
    )
    assert not nb.errors, nb.errors


def test_create_edit_merge_tiles(nb):
    page = nb.page
    nb.py("v.goto('xy', 4)")
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:4'")
    page.fill(".enb-tiles-dir", nb.py_json("str(tmp / 'tiles')"))
    page.fill(".enb-tile-size", "32")
    page.fill(".enb-tile-overlap", "8")
    page.click("button[data-op=create-tiles]")
    wait_py(nb, "'wrote' in v.message")
    names = nb.py_json("sorted(p.name for p in (tmp / 'tiles' / 'msk').glob('*.tif'))")
    assert len(names) == 9 and "24_24.tif" in names  # corners 0, 24, 48 along each axis
    assert nb.py_json("tifffile.imread(tmp / 'tiles' / 'im' / '24_24.tif').shape") == [32, 32]
    # a labeller adds an object in the middle tile, inside its own share (rows/cols 28..52)
    nb.py(
        "t = tifffile.imread(tmp / 'tiles' / 'msk' / '24_24.tif'); t[10:20, 10:20] = 99;"
        " tifffile.imwrite(tmp / 'tiles' / 'msk' / '24_24.tif', t)"
    )
    page.click("button[data-op=merge-tiles]")
    wait_py(nb, "'merged tiles' in [l.name for l in v.label_layers]")
    merged = nb.py_json("v.layer('merged tiles').data.tolist()")
    ids = {i for row in merged for i in row}
    assert len(ids) == 3  # background, the seam-crossing object (one id), the new one
    assert merged[15][5] == merged[15][59] != merged[40][40] != 0
    assert nb.py_json("v.layer('merged tiles').plane") == ["xy", 4]
    page.wait_for_selector(".enb-side .enb-name:has-text('merged tiles')")
    assert not nb.errors, nb.errors
