"""The InferencePanel in a real JupyterLab page: the form built from SegmentOptions, errors as you type,
ortho-plane runs with kept planes and zarr output, progress, cancel, and confinement to the visible area."""

import pytest
from harness import NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELLS = [
    """
import tempfile, threading, warnings
from pathlib import Path
import numpy as np, torch
from empanada_nb.models import build_model
from empanada_nb.widgets import Viewer, InferencePanel
warnings.simplefilter("ignore")
tmp = Path(tempfile.mkdtemp())
torch.manual_seed(0)
model = build_model("PanopticDeepLab", "resnet18").eval()
vol = np.random.default_rng(0).integers(0, 255, (4, 64, 64)).astype(np.uint8)
v = Viewer(vol, height=300)
v
""",
    """
panel = InferencePanel(v, model=model, batch_size=32)
panel
""",
]


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "inference.ipynb", CELLS, wait_for=(".enb-inference", ".enb-viewer canvas")
    )
    yield session
    session.page.close()


def field(page, name):
    return page.locator(f".enb-inference [data-field={name}]")


def test_form_has_every_setting_and_checks_as_you_type(nb):
    page = nb.page
    names = nb.py_json("[f['name'] for f in panel.form]")
    for name in names:  # one input per SegmentOptions setting, nothing hand-listed
        assert field(page, name).count() == 1, name
    field(page, "mode").select_option("ortho")
    wait_py(nb, "panel.options.mode == 'ortho'")
    assert field(page, "erode").is_visible() and field(page, "vote").is_visible()
    assert not field(page, "axis").is_visible()  # a stack-only setting
    field(page, "median_slices").fill("2")
    page.wait_for_function(
        "() => document.querySelector('.enb-inference [data-error=median_slices]').textContent.includes('odd')",
        timeout=10_000,
    )
    assert page.locator(".enb-inference button[data-action=run]").is_disabled()
    field(page, "median_slices").fill("1")
    wait_py(nb, "panel.errors == {}")
    assert page.locator(".enb-inference button[data-action=run]").is_enabled()


def test_ortho_run_keeps_planes_writes_zarr_and_shows_progress(nb):
    page = nb.page
    field(page, "mode").select_option("ortho")
    field(page, "erode").fill("1")
    field(page, "keep_planes").check()
    field(page, "semantic_only").check()
    field(page, "seg_thr").fill("0")
    field(page, "out").fill(nb.py("print(tmp / 'o.zarr')").strip())
    field(page, "chunks").fill("2,32,32")
    wait_py(nb, "panel.options.keep_planes and panel.options.chunks == (2, 32, 32) and panel.options.seg_thr == 0")
    assert nb.py_json("panel.options.erode") == 1
    page.click(".enb-inference button[data-action=run]")
    wait_py(nb, "'segmented the volume' in panel.status", timeout=180)
    names = nb.py_json("sorted(l['name'] for l in v.layers)")
    assert names == ["prediction", "prediction xy", "prediction xz", "prediction yz"]
    assert nb.py_json("__import__('zarr').open_array(str(tmp / 'o.zarr'), mode='r').chunks") == [2, 32, 32]
    assert nb.py_json("sorted(p.name for p in tmp.iterdir())") == ["o.zarr", "o_xy.zarr", "o_xz.zarr", "o_yz.zarr"]
    page.wait_for_function(
        "() => document.querySelector('.enb-inference .enb-i-bar-text').textContent.startsWith('consensus: vote')",
        timeout=10_000,
    )
    page.wait_for_function(
        "() => window.__enb.views[0].layers().some((l) => l.name === 'prediction yz')", timeout=10_000
    )


def test_cancel_from_the_page(nb):
    page = nb.page
    # hold the run at its first progress event until Cancel arrives, so the click cannot come too late
    nb.py("_orig = panel._on_progress\npanel._on_progress = lambda e: (_orig(e), panel._cancel.wait(60))")
    field(page, "mode").select_option("stack")
    field(page, "out").fill("")
    wait_py(nb, "panel.options.mode == 'stack' and panel.options.out is None")
    page.click(".enb-inference button[data-action=run]")
    cancel = page.locator(".enb-inference button[data-action=cancel]")
    page.wait_for_function(
        "() => !document.querySelector('.enb-inference button[data-action=cancel]').disabled", timeout=30_000
    )
    cancel.click()
    wait_py(nb, "panel.status == 'inference cancelled' and not panel.running", timeout=60)
    nb.py("panel._on_progress = _orig")


def test_2d_run_confined_to_the_visible_area(nb):
    page = nb.page
    wait_py(nb, "len(v.view_box) == 6")
    full = nb.py_json("v.view_box")
    assert full[2:] == [0, 0, 64, 64]  # the whole slice fits at first
    canvas = page.locator(".enb-viewer canvas").last  # the overlay, on top, takes the pointer
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, -400)  # zoom in around the centre
    wait_py(nb, "v.view_box[2] > 0 and v.view_box[4] < 64", timeout=20)
    field(page, "mode").select_option("2d")
    field(page, "confine_to_visible").check()
    field(page, "semantic_only").check()  # with threshold 0 every pixel of the segmented area is labelled
    field(page, "seg_thr").fill("0")
    wait_py(nb, "panel.options.confine_to_visible and panel.options.mode == '2d' and panel.options.seg_thr == 0")
    assert nb.py_json("panel.errors") == {}
    page.click(".enb-inference button[data-action=run]")
    wait_py(nb, "'segmented xy slice' in panel.status", timeout=120)
    inside, outside = nb.py_json(
        "(lambda a, i, r0, c0, r1, c1: (bool(panel.result[r0:r1, c0:c1].all()),"
        " int(panel.result.sum() - panel.result[r0:r1, c0:c1].sum())))(*v.view_box)"
    )
    assert inside and outside == 0
    assert not nb.errors, nb.errors
