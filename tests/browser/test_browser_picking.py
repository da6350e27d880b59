"""Picking in a real JupyterLab page: a multiscale image viewed at pyramid level 1, flipbook picks, and
pick centres saved to and loaded from a points file (napari's points CSV included).

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
v = Viewer([base, base[:, ::2, ::2]], level=1, patch_size=16, height=360)
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
