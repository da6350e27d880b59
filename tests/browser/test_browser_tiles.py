"""Create and merge tiles from the Viewer in a real JupyterLab page: cut a 2D image and its labels
into overlapping tiles, edit one tile's labels on disk, stitch them back into a label layer.
"""

import pytest
from harness import NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELL = """
import tempfile
from pathlib import Path
import numpy as np
import tifffile
from empanada_nb.data import synthetic_image
from empanada_nb.widgets import Viewer

img, lab = synthetic_image(300, n_objects=25, seed=3)
lab = lab.astype(np.uint32)
tmp = Path(tempfile.mkdtemp())
v = Viewer(img, labels={"labels": lab}, height=360)
v
"""


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "tiles.ipynb", [CELL], wait_for=(".enb-viewer canvas",)
    )
    session.page.wait_for_function(
        "() => document.querySelector('.enb-viewer').dataset.shown === 'xy:0'", timeout=120_000
    )
    yield session
    session.page.close()


def test_create_edit_merge_tiles(nb):
    page = nb.page
    page.fill(".enb-tiles-dir", nb.py_json("str(tmp / 'tiles')"))
    page.fill(".enb-tile-size", "128")
    page.fill(".enb-tile-overlap", "32")
    page.click("button[data-op=create-tiles]")
    names = wait_py(nb, "sorted(p.name for p in (tmp / 'tiles' / 'msk').glob('*.tif'))")
    assert len(names) == 9 and "96_96.tif" in names
    assert nb.py_json("tifffile.imread(tmp / 'tiles' / 'im' / '96_96.tif').shape") == [128, 128]
    # a labeller adds an object in the middle tile (its own share of the image: rows/cols 112..208)
    nb.py(
        "t = tifffile.imread(tmp / 'tiles' / 'msk' / '96_96.tif'); t[30:50, 30:50] = 999;"
        " tifffile.imwrite(tmp / 'tiles' / 'msk' / '96_96.tif', t)"
    )
    page.click("button[data-op=merge-tiles]")
    wait_py(nb, "'merged tiles' in [l.name for l in v.label_layers]")
    merged = "v.layer('merged tiles').data"
    # the stitched layer has the original objects (one id each, seams joined) plus the new one
    expect = "lab.copy(); expect[126:146, 126:146] = 10**6"
    nb.py(f"expect = {expect}")
    assert nb.py_json(
        f"len(np.unique(np.stack([{merged}.ravel(), expect.ravel()]), axis=1).T) == len(np.unique(expect))"
    )
    assert nb.py_json(f"len(np.unique({merged})) == len(np.unique(expect))")
    page.wait_for_selector(".enb-side .enb-name:text-is('merged tiles')")
    assert not nb.errors, nb.errors
