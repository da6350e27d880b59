"""The same notebook in both frontends, JupyterLab 4 and Jupyter Notebook 7 (the classic interface many
JupyterHub deployments serve): the Viewer renders and takes a click-pick, and the TrainingDashboard runs
a short training from its start button. Each test runs once per frontend (``frontend_server``).
"""

import pytest
from harness import VIEWER_JS_HELPERS, NotebookSession, wait_py

pytestmark = pytest.mark.browser

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
v = Viewer(vol, labels={"ground truth": gt}, patch_size=32, height=300)
v
""",
    """
d = TrainingDashboard(v, dataset_dir=str(dataset), iterations=2, patch_size=64, batch_size=2, encoder="resnet18",
                      out=str(tmp / "model.pth"), preview_every=100)
d
""",
]


@pytest.fixture(scope="module")
def nb(frontend_server, browser_context):
    session = NotebookSession.start(
        frontend_server, browser_context, "frontends.ipynb", CELLS, wait_for=(".enb-viewer canvas", ".enb-dashboard")
    )
    page = session.page
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:1'", timeout=120_000)
    page.evaluate(VIEWER_JS_HELPERS)
    yield session
    page.close()


def test_viewer_renders_and_picks(nb):
    page = nb.page
    assert page.evaluate("() => window.jupyterapp.name") == (
        "Jupyter Notebook" if nb.server.frontend == "notebook" else "JupyterLab"
    )
    painted = page.evaluate("""() => {
        const v = window.__enb.views[0], c = v.canvas, ctx = c.getContext('2d');
        const d = ctx.getImageData(c.width / 2 - 10, c.height / 2 - 10, 20, 20).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s / (d.length / 4);
    }""")
    assert painted > 20
    page.click("button[data-tool=pick]")
    x, y = page.evaluate("() => window.__enbHelpers.toClient(40.5, 50.5)")
    page.mouse.click(x, y)
    pick = wait_py(nb, "v.picks")[0]
    assert (pick["z"], pick["y"], pick["x"], pick["size"]) == (1, 40, 50, 32)


def test_dashboard_trains(nb):
    page = nb.page
    page.click("button[data-action=start]")
    page.wait_for_function("() => document.querySelector('.enb-dashboard').dataset.iteration === '2'", timeout=240_000)
    wait_py(nb, "not d.running", timeout=120)
    assert nb.py_json("(tmp / 'model.pth').exists()")
    # the dashboard's InferencePanel renders inside it in both frontends and segments with the trained model
    embedded = ".enb-dashboard .enb-inference"
    page.wait_for_selector(embedded, timeout=30_000)
    page.locator(f"{embedded} [data-field=mode]").select_option("2d")
    wait_py(nb, "d.inference.options.mode == '2d' and not d.inference.errors")
    page.click(f"{embedded} button[data-action=run]")
    wait_py(nb, "'segmented xy slice' in d.inference.status", timeout=120)
    assert not nb.errors, nb.errors
