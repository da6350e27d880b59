"""The TrainingDashboard's training form in a real JupyterLab page: classes, masks, folders, validation,
description, the guides' hints, an empanada config YAML uploaded through the file input, a two-class run,
and finetuning refused for new classes. Each test acts in the page, then asserts on the Python object.
"""

import pytest
from harness import NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELLS = [
    """
import tempfile, warnings, yaml
from pathlib import Path
import numpy as np
from empanada_nb.data import synthetic_image
from empanada_nb.data.io import write_tiff
from empanada_nb.models import build_model
from empanada_nb.widgets import TrainingDashboard
warnings.simplefilter("ignore")
tmp = Path(tempfile.mkdtemp())
# two folders of two-class panoptic masks: odd objects are class 1 instances (1000 + id), the others stuff 2000
for k, folder in enumerate(("mc", "mc2")):
    for i in range(2):
        img, lab = synthetic_image(64, n_objects=4, seed=10 * k + i)
        pan = np.where(lab % 2 == 1, 1000 + lab, np.where(lab > 0, 2000, 0)).astype(np.uint32)
        write_tiff(tmp / folder / "g" / "images" / f"i{i}.tif", img)
        write_tiff(tmp / folder / "g" / "masks" / f"i{i}.tif", pan)
d = TrainingDashboard(dataset_dir=str(tmp / "mc"), encoder="resnet18", pretrained="", iterations=2, patch_size=64,
                      batch_size=2, out=str(tmp / "mc.pth"))
d
""",
    """
f = TrainingDashboard(model=build_model("PanopticDeepLab", "resnet18"), dataset_dir=str(tmp / "mc"), patch_size=64)
f
""",
]

EMPANADA_YAML = """# empanada-napari custom_training.yaml layout
model_name: null
MODEL:
  arch: "PanopticDeepLab"
  encoder: "resnet18"
  num_classes: null
  aspp_dropout: 0.5
TRAIN:
  schedule_params: {max_lr: 0.002, epochs: null, steps_per_epoch: -1, pct_start: 0.3}
  batch_size: 2
  print_freq: 50
  augmentations:
    - {aug: "RandomCrop", height: 64, width: 64}
    - {aug: "HorizontalFlip"}
  train_dir: null
EVAL:
  eval_dir: null
"""


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(jupyter_server, browser_context, "training_form.ipynb", CELLS)
    session.page.wait_for_function("() => document.querySelectorAll('.enb-dashboard').length === 2", timeout=120_000)
    yield session
    session.page.close()


def form(nb, i=0):
    return nb.page.locator(".enb-dashboard").nth(i)


def wait_text(nb, selector, text, i=0, timeout=15_000):
    nb.page.wait_for_function(
        "([sel, text, i]) => (document.querySelectorAll('.enb-dashboard')[i].querySelector(sel) || {}).textContent"
        "?.includes(text)",
        arg=[selector, text, i],
        timeout=timeout,
    )


def test_classes_masks_folders_validation_description(nb):
    f = form(nb)
    tmp = nb.py_json("str(tmp)")
    f.locator("textarea[data-field=classes]").fill("1,mito,thing\n2,er,stuff")
    f.locator("input[data-field=label_divisor]").fill("1000")
    f.locator("textarea[data-field=extra_dirs]").fill(f"{tmp}/mc2")
    f.locator("input[data-field=val_fraction]").fill("0.25")
    f.locator("textarea[data-field=description]").fill("mitochondria and ER, HeLa FIB-SEM")
    f.locator("input[data-field=max_minutes]").fill("2.5")
    wait_py(nb, "d.description.startswith('mitochondria') and d.val_fraction == 0.25 and d.label_divisor == 1000")
    wait_py(nb, "d.max_minutes == 2.5")
    cfg = nb.py_json("d.train_config().to_dict()")
    assert cfg["max_minutes"] == 2.5
    f.locator("input[data-field=max_minutes]").fill("0")  # back to iterations: the training test trains 2
    wait_py(nb, "d.max_minutes == 0")
    assert nb.py_json("d.train_config().max_minutes") is None
    assert cfg["num_classes"] == 2 and cfg["class_names"] == {"1": "mito", "2": "er"} and cfg["thing_list"] == [1]
    assert cfg["label_divisor"] == 1000 and cfg["val_fraction"] == 0.25
    assert cfg["description"] == "mitochondria and ER, HeLa FIB-SEM"
    assert nb.py_json("d.dataset_dirs()") == [f"{tmp}/mc", f"{tmp}/mc2"]
    # binary masks: connected components on, then off again (these masks are panoptic)
    box = f.locator("input[data-field=connected_components]")
    box.check()
    assert wait_py(nb, "d.train_config().connected_components")
    box.uncheck()
    wait_py(nb, "not d.connected_components")
    # a bad classes table is an error that blocks Start
    f.locator("textarea[data-field=classes]").fill("1,mito,thing\n3,er,stuff")
    wait_text(nb, ".enb-d-error[data-error=classes]", "1..2 without gaps")
    assert f.locator("button[data-action=start]").is_disabled()
    f.locator("textarea[data-field=classes]").fill("1,mito,thing\n2,er,stuff")
    wait_py(nb, "not d.errors")
    assert f.locator("button[data-action=start]").is_enabled()


def test_guides_hints_shown_but_not_blocking(nb):
    f = form(nb)
    # batch size 2 (set in Python) is below the guides' 16: a hint, Start stays enabled
    wait_text(nb, ".enb-d-advice[data-hint=batch_size]", "BatchNorm becomes unstable below 16")
    assert f.locator("button[data-action=start]").is_enabled()
    f.locator("input[data-field=patch_size]").fill("128")
    wait_text(nb, ".enb-d-advice[data-hint=patch_size]", "larger than the saved patches (smallest side 64 px)")
    assert f.locator("button[data-action=start]").is_enabled()
    assert "patch_size" in nb.py_json("d.hints") and nb.py_json("d.patch_size") == 128
    f.locator("input[data-field=patch_size]").fill("64")
    wait_py(nb, "'patch_size' not in d.hints")
    f.locator("select[data-field=architecture]").select_option("PanopticBiFPN")
    wait_text(nb, ".enb-d-advice[data-hint=architecture]", "the lighter model: about half the parameters")
    f.locator("select[data-field=architecture]").select_option("PanopticDeepLab")
    f.locator("select[data-field=layers]").select_option("stage4")
    wait_text(nb, ".enb-d-advice[data-hint=layers]", "usually the best choice for finetuning")
    f.locator("select[data-field=layers]").select_option("all")
    wait_py(nb, "d.layers == 'all' and d.architecture == 'PanopticDeepLab' and not d.errors")


def test_empanada_config_yaml_uploaded_from_the_browser(nb, tmp_path):
    path = tmp_path / "custom_training.yaml"
    path.write_text(EMPANADA_YAML)
    form(nb).locator("input[type=file][data-field=config_file]").set_input_files(str(path))
    wait_py(nb, "d.config_name == 'custom_training.yaml'")
    cfg = nb.py_json("d.train_config().to_dict()")
    assert cfg["lr"] == 0.002 and cfg["batch_size"] == 2 and cfg["encoder"] == "resnet18"
    assert cfg["rotate"] is False and cfg["flip"] is True  # the YAML's augmentation list
    assert cfg["num_classes"] == 2 and cfg["description"].startswith("mitochondria")  # the form's, kept
    wait_text(nb, "[data-note=config]", "MODEL.aspp_dropout")
    note = nb.py_json("d.config_note")
    assert "TRAIN.print_freq" in note and "MODEL.aspp_dropout" in note
    nb.page.wait_for_function(
        "() => document.querySelector('.enb-dashboard input[data-field=lr]').value === '0.002'", timeout=10_000
    )


def test_two_class_model_trained_from_the_form(nb):
    f = form(nb)
    f.locator("button[data-action=start]").click()
    wait_py(nb, "d.handle is not None and d.handle.done", timeout=400)
    assert "finished at iteration 2" in nb.py_json("d.status")
    card = nb.py_json("yaml.safe_load((tmp / 'mc.yaml').read_text())")  # the saved model card
    assert card["num_classes"] == 2 and card["class_names"] == {"1": "mito", "2": "er"}
    assert card["thing_list"] == [1] and card["description"] == "mitochondria and ER, HeLa FIB-SEM"
    assert card["config"]["label_divisor"] == 1000 and card["config"]["lr"] == 0.002
    assert nb.py_json("len(d.handle.events('validation'))") >= 1  # val_fraction held images out


def test_finetuning_for_new_classes_is_refused(nb):
    g = form(nb, 1)
    classes = g.locator("textarea[data-field=classes]")
    assert classes.input_value() == "1,mito,thing"  # the model's classes
    wait_text(nb, ".enb-d-advice[data-hint=classes]", "finetuning keeps them", i=1)
    classes.fill("1,mito,thing\n2,er,stuff")
    wait_text(nb, ".enb-d-error[data-error=classes]", "train a new model", i=1)
    assert g.locator("button[data-action=start]").is_disabled()
    assert "train a new model" in nb.py_json("f.errors['classes']")
    assert not nb.errors, nb.errors
