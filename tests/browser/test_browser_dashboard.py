"""The TrainingDashboard in a real JupyterLab page: validation as you type, a short training run with
progress, the loss plot drawn in the browser and the live preview on the viewer.

Set EMPANADA_NB_UPDATE_DOCS_IMAGES=1 to refresh docs/images/dashboard.png.
"""

import os
import shutil
from pathlib import Path

import pytest
from harness import NotebookSession, wait_py

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
SHOTS = HERE / "screenshots"
DOCS_IMAGE = HERE.parents[1] / "docs" / "images" / "dashboard.png"

CELLS = [
    """
import tempfile, warnings
from pathlib import Path
import numpy as np
from empanada_nb.data import make_synthetic_dataset, synthetic_volume
from empanada_nb.widgets import Viewer, TrainingDashboard
warnings.simplefilter("ignore")
tmp = Path(tempfile.mkdtemp())
dataset = make_synthetic_dataset(tmp / "train", n_images=4, size=64)
vol, gt = synthetic_volume((3, 96, 96), n_objects=4)
v = Viewer(vol, labels={"ground truth": gt}, height=300)
v
""",
    """
d = TrainingDashboard(v, dataset_dir=str(dataset), iterations=4, patch_size=64, batch_size=2, encoder="resnet18",
                      out=str(tmp / "model.pth"), preview_every=2)
d
""",
]


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "dashboard.ipynb", CELLS, wait_for=(".enb-dashboard", ".enb-viewer")
    )
    yield session
    session.page.close()


def test_patch_size_validated_as_you_type(nb):
    page = nb.page
    field = page.locator(".enb-dashboard input[data-field=patch_size]")
    field.fill("50")
    page.wait_for_function(
        "() => document.querySelector('.enb-d-error[data-error=patch_size]').textContent.includes('48 or 64')",
        timeout=10_000,
    )
    assert page.locator("button[data-action=start]").is_disabled()
    field.fill("64")
    page.wait_for_function(
        "() => document.querySelector('.enb-d-error[data-error=patch_size]').textContent === ''", timeout=10_000
    )
    assert nb.py_json("d.patch_size") == 64
    assert page.locator("button[data-action=start]").is_enabled()


def test_training_run_progress_plot_preview(nb):
    page = nb.page
    page.click("button[data-action=start]")
    page.wait_for_function("() => document.querySelector('.enb-dashboard').dataset.iteration === '4'", timeout=240_000)
    wait_py(nb, "not d.running", timeout=120)
    page.wait_for_function(
        "() => document.querySelector('.enb-d-bar-text').textContent.includes('ETA done')", timeout=10_000
    )
    assert page.evaluate("() => window.__enb.dashboards[0].drawn") == 4  # loss points drawn in the browser
    # the status reaches the page as a trait change: wait for it rather than read it once
    page.wait_for_function(
        "() => document.querySelector('.enb-d-status').textContent.includes('finished at iteration 4')",
        timeout=30_000,
    )
    # the live preview reached the viewer as a slice layer on the shown slice
    assert wait_py(nb, "[l['name'] for l in v.layers if l['plane']]") == ["preview"]
    page.wait_for_function("() => window.__enb.views[0].layers().some((l) => l.name === 'preview')", timeout=10_000)
    # the InferencePanel is rendered inside the dashboard and segments with the trained model
    embedded = ".enb-dashboard .enb-inference"
    page.wait_for_selector(embedded, timeout=30_000)
    page.locator(f"{embedded} [data-field=mode]").select_option("2d")
    wait_py(nb, "d.inference.options.mode == '2d' and not d.inference.errors")
    page.click(f"{embedded} button[data-action=run]")
    wait_py(nb, "'segmented xy slice' in d.inference.status", timeout=120)
    assert wait_py(nb, "[l['name'] for l in v.layers if l['name'] == 'prediction']") == ["prediction"]
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / "dashboard.png"
    page.locator(".enb-dashboard").screenshot(path=str(path))
    if os.environ.get("EMPANADA_NB_UPDATE_DOCS_IMAGES"):
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGE)
    assert not nb.errors, nb.errors


def test_runs_beside_the_output_resume_with_the_history(nb):
    """A run that ended at iteration 2 of 4 (as a dead kernel leaves it) is listed and resumed from the page."""
    page = nb.page
    nb.py(
        "import empanada_nb as enb\n"
        "def _die_at_2(e):\n"
        "    if e['type'] == 'step' and e['iteration'] == 2: _run.stop()\n"
        "_run = enb.train(dataset, out=tmp / 'mito.pth', iterations=4, patch_size=64, batch_size=2, encoder='resnet18',"
        " pretrained=None, min_bn_batch=2, background=True, callbacks=[_die_at_2])\n"
        "_run.wait(600)\n"
        "_before = [s['loss'] for s in _run.events('step')]\n"
    )
    page.click("button[data-action=list_checkpoints]")
    row = page.locator(".enb-d-run[data-run='mito.pth']")
    row.wait_for(timeout=30_000)
    assert "train · iteration 2 of 4" in row.inner_text()
    finished = page.locator(".enb-d-run[data-run='model.pth'] button[data-action=resume]")
    assert finished.is_disabled()  # the dashboard's own run finished: nothing to resume
    row.locator("button[data-action=resume]").click()
    wait_py(nb, "d.handle is not None and d.handle.out.name == 'mito.pth' and d.handle.done", timeout=240)
    wait_py(nb, "not d.running", timeout=60)
    page.wait_for_function("() => document.querySelector('.enb-dashboard').dataset.iteration === '4'", timeout=30_000)
    # the live plot holds the history from iteration 1, not only the steps after the restart
    assert page.evaluate("() => window.__enb.dashboards[0].steps.it") == [1, 2, 3, 4]
    assert nb.py_json("[s['loss'] for s in d.handle.events('step')][:2] == _before")
    page.wait_for_function(
        "() => document.querySelector(\".enb-d-run[data-run='mito.pth']\").textContent.includes('(finished)')",
        timeout=30_000,
    )
    assert not nb.errors, nb.errors
