"""TrainingDashboard: form validation, throttled event messages, live preview, inference panel."""

import time
import warnings

import numpy as np
import pytest

from empanada_nb.widgets import TrainingDashboard, Viewer
from empanada_nb.widgets import dashboard as dash_mod


class Recorder:
    def __init__(self, widget):
        self.msgs = []
        widget.send = lambda content, buffers=None: self.msgs.append(content)

    def events(self):
        return [e for m in self.msgs if m["type"] == "events" for e in m["events"]]


class FakeHandle:
    def __init__(self, model=None):
        self.model = model
        self.error = None
        self.done = False
        self.iteration = 0

    def stop(self):
        self.stopped = True


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from empanada_nb.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("ds") / "train", n_images=4, size=64)


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from empanada_nb.models import build_model

    torch.manual_seed(0)
    return build_model("PanopticDeepLab", "resnet18").eval()


@pytest.fixture
def viewer(rng):
    v = Viewer(rng.integers(0, 255, size=(3, 64, 64)).astype(np.uint8))
    v.send = lambda content, buffers=None: None
    return v


def test_form_validation(tmp_path, viewer):
    d = TrainingDashboard(viewer)
    assert "dataset_dir" in d.errors
    d.dataset_dir = str(tmp_path)
    assert d.errors == {}
    d.patch_size = 100
    assert "divisible by 16" in d.errors["patch_size"] and "96 or 112" in d.errors["patch_size"]
    d.architecture = "PanopticBiFPN"
    assert "divisible by 128" in d.errors["patch_size"]
    d.patch_size = 256
    assert d.errors == {}
    d.iterations, d.batch_size, d.lr = 0, 0, 0.0
    assert set(d.errors) == {"iterations", "batch_size", "lr"}
    d.iterations, d.batch_size, d.lr = 10, 2, 1e-3
    d.mode = "finetune"
    assert "model_source" in d.errors
    d.model_source = "some.pth"
    assert d.errors == {} and d.has_model
    d.dataset_dir = str(tmp_path / "missing")
    assert "no such folder" in d.errors["dataset_dir"]
    with pytest.raises(ValueError):
        d.start()
    assert set(d.options) >= {"architectures", "encoders", "layers", "pretrained", "models"}
    assert d.options["layers"] == ["none", "stage1", "stage2", "stage3", "stage4", "all"]


def test_form_is_derived_from_train_config_and_viewer(tmp_path, rng):
    from empanada_nb import FINETUNABLE_LAYERS, TrainConfig

    cfg = TrainConfig()
    d = TrainingDashboard()
    form = {k: getattr(d, k) for k in ("architecture", "encoder", "iterations", "patch_size", "batch_size", "lr")}
    assert form == {k: getattr(cfg, k) for k in form} and d.layers == cfg.finetunable_layers
    assert d.options["layers"] == list(FINETUNABLE_LAYERS)
    d.dataset_dir = str(tmp_path)
    d.iterations = 0
    with pytest.raises(ValueError) as e:  # the form refuses exactly what TrainConfig refuses, in its words
        cfg.replace(iterations=0)
    assert d.errors == {"iterations": str(e.value)}
    v = Viewer(rng.integers(0, 255, size=(2, 64, 64)).astype(np.uint8), patch_size=128)
    d = TrainingDashboard(v)
    assert d.patch_size == 128
    v.patch_size = 96
    assert d.patch_size == 96  # follows the viewer's patch size
    assert TrainingDashboard(v, patch_size=64).patch_size == 64  # unless given


def test_given_model_sets_finetune_and_its_patch_factor(tmp_path, tiny_model):
    d = TrainingDashboard(model=tiny_model, dataset_dir=str(tmp_path))
    assert d.mode == "finetune" and d.layers == "none" and "PanopticDeepLab" in d.given_model
    assert d.has_model and not d.has_viewer
    d.patch_size = 72
    assert "divisible by 16" in d.errors["patch_size"]


def test_events_are_throttled_and_complete(viewer, monkeypatch):
    d = TrainingDashboard(viewer, preview=False)
    rec = Recorder(d)
    d.handle = FakeHandle()
    d.running = True
    n = 200
    for i in range(1, n + 1):
        d._on_event(
            {
                "type": "step",
                "iteration": i,
                "iterations": n,
                "loss": 1.0 / i,
                "terms": {"ce": 0.5 / i, "mse": np.float32(0.01), "l1": float("nan")},
                "lr": 1e-3,
                "images_per_s": 10.0,
                "elapsed": i * 0.01,
                "eta": (n - i) * 0.01,
            }
        )
    d._on_event({"type": "validation", "iteration": n, "iou": 0.5, "pq": 0.4, "f1": 0.6})
    d._on_event({"type": "end", "iteration": n, "path": "m.pth", "stopped": False})
    events = rec.events()
    assert [e["iteration"] for e in events if e["type"] == "step"] == list(range(1, n + 1))
    assert len(rec.msgs) < 20  # batched: a few messages, not one per step
    assert events[0]["terms"]["mse"] == pytest.approx(0.01) and events[0]["terms"]["l1"] is None  # JSON-safe
    assert events[-1]["type"] == "end" and not d.running and d.status.startswith("finished at iteration 200")
    # a view that renders later asks for the history
    rec.msgs.clear()
    d._on_custom_msg(d, {"type": "history"}, [])
    (m,) = rec.msgs
    assert m["reset"] and len(m["events"]) == n + 2
    monkeypatch.setattr(dash_mod, "MAX_HISTORY_POINTS", 50)
    rec.msgs.clear()
    d._on_custom_msg(d, {"type": "history"}, [])
    steps = [e for e in rec.msgs[0]["events"] if e["type"] == "step"]
    assert len(steps) <= 51 and steps[-1]["iteration"] == n


def test_preview_restores_train_mode(viewer, tiny_model):
    d = TrainingDashboard(viewer, preview=True, preview_every=5)
    rec = Recorder(d)
    tiny_model.train()
    d.handle = FakeHandle(tiny_model)
    d._on_event({"type": "step", "iteration": 4, "iterations": 10, "loss": 1.0, "terms": {}, "eta": 1})
    assert not any(l["name"] == "preview" for l in viewer.layers)
    viewer.slice_index = 2
    d._on_event({"type": "step", "iteration": 5, "iterations": 10, "loss": 1.0, "terms": {}, "eta": 1})
    layer = viewer.layer("preview")
    assert layer.plane == ("xy", 2) and layer.data.shape == (64, 64) and not layer.editable
    assert all(m.training for m in tiny_model.modules())  # training goes on in train mode
    assert any(e["type"] == "preview" for e in rec.events())
    tiny_model.eval()


def test_dashboard_embeds_an_inference_panel(viewer, tiny_model, rng):
    d = TrainingDashboard(viewer, model=tiny_model)
    Recorder(d)
    assert d.inference is not None and d.inference.viewer is viewer and d.inference.has_model
    assert d.get_state()["inference"].startswith("IPY_MODEL_")  # the browser renders it inside the dashboard
    d.segment_slice()
    assert "segmented xy slice 1" in d.inference.status, d.inference.status
    layer = viewer.layer("prediction")
    assert layer.data.shape == (3, 64, 64) and layer.plane is None
    viewer.add_region([[0, 0], [32, 32]], shape="rectangle", slice=1)
    viewer.confine_to_regions = True  # the viewer's switch drives the panel's setting
    assert d.inference.options.confine_to_regions
    d.segment_volume(background=False)
    assert "segmented the volume" in d.inference.status, d.inference.status
    assert viewer.layer("prediction").data.shape == (3, 64, 64)
    assert not viewer.layer("prediction").data[:, 40:, 40:].any()  # outside the region
    no_viewer = TrainingDashboard()
    assert no_viewer.inference is None
    with pytest.raises(ValueError, match="no viewer"):
        no_viewer.segment_slice()
    # a training run's model is what the panel segments with
    untrained = TrainingDashboard(viewer)
    assert not untrained.inference.has_model and "model_source" in untrained.inference.errors


def test_segment_slice_writes_one_undoable_slice(viewer, tiny_model, monkeypatch):
    d = TrainingDashboard(viewer, model=tiny_model)
    pred = np.zeros((64, 64), np.int32)
    pred[10:20, 30:40] = 1001
    monkeypatch.setattr(d.inference, "_predict_slice", lambda model, opts, roi=None: pred)
    d.segment_slice()
    layer = viewer.layer("prediction")
    np.testing.assert_array_equal(layer.data[1], pred)
    assert not layer.data[[0, 2]].any()
    edit = viewer.history._undo[-1]  # the changed box of one slice, not a copy of the volume
    assert edit.where == {"axis": "xy", "index": 1, "r0": 10, "c0": 30, "h": 10, "w": 10}
    viewer.undo()
    assert not layer.data.any()


def test_real_training_run(tmp_path, tiny_dataset, rng):
    vol = rng.integers(0, 255, size=(2, 64, 64)).astype(np.uint8)
    v = Viewer(vol)
    v.send = lambda content, buffers=None: None
    d = TrainingDashboard(
        v,
        dataset_dir=str(tiny_dataset),
        iterations=2,
        patch_size=64,
        batch_size=2,
        encoder="resnet18",
        out=str(tmp_path / "m.pth"),
        preview_every=2,
    )
    rec = Recorder(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d._on_custom_msg(d, {"type": "start"}, [])
        assert d.running and d.handle is not None
        d.wait(600)
    deadline = time.time() + 10
    while d.running and time.time() < deadline:
        time.sleep(0.05)
    assert not d.running and "finished at iteration 2" in d.status
    kinds = [e["type"] for e in rec.events()]
    assert kinds.count("step") == 2 and kinds[-1] == "end" and "preview" in kinds
    assert (tmp_path / "m.pth").exists() and d.trained_model is d.handle.model
    assert v.layer("preview").plane == ("xy", 1)
    d._on_custom_msg(d, {"type": "start"}, [])  # out exists and overwrite is off: a clear status, no crash
    assert "exists" in d.status


def test_form_is_a_train_config_and_loads_config_files(tmp_path, tiny_dataset):
    from empanada_nb import TrainConfig

    TrainConfig(iterations=7, batch_size=4, class_names={1: "a", 2: "b"}, num_classes=2, thing_list=[2]).to_yaml(
        tmp_path / "c.yaml"
    )
    d = TrainingDashboard(dataset_dir=str(tiny_dataset), config=str(tmp_path / "c.yaml"))
    cfg = d.train_config()
    assert (cfg.iterations, cfg.batch_size, cfg.class_names, cfg.thing_list) == (7, 4, {1: "a", 2: "b"}, [2])
    assert d.classes == "1,a,stuff\n2,b,thing" and "batch_size" in d.hints and not d.errors
    assert d.config_note.endswith("every key used")
    d.extra_dirs = str(tmp_path / "missing")
    assert "no such folder" in d.errors["extra_dirs"]
