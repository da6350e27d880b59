"""InferencePanel: 2D, stack and ortho runs into the viewer's layers; progress, cancel, zarr output, confinement."""

import numpy as np
import pytest
import zarr

from empanada_nb.widgets import InferencePanel, Viewer

# seg_thr 0 with semantic_only: every voxel of the segmented area is labelled, so confinement is visible
ALL = dict(semantic_only=True, seg_thr=0.0, batch_size=8)


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from empanada_nb.models import build_model

    torch.manual_seed(0)
    return build_model("PanopticDeepLab", "resnet18").eval()


@pytest.fixture
def viewer(rng):
    v = Viewer(rng.integers(0, 255, size=(4, 64, 64)).astype(np.uint8))
    v.send = lambda content, buffers=None: None
    return v


def panel(viewer, model, **kw):
    p = InferencePanel(viewer, model=model, **kw)
    p.send = lambda content, buffers=None: None
    return p


def test_form_is_segment_options_and_errors_name_the_setting(viewer, tiny_model):
    p = panel(viewer, tiny_model)
    names = [f["name"] for f in p.form]
    assert {"erode", "keep_planes", "chunks", "median_slices", "confine_to_visible", "fine_boundaries"} <= set(names)
    assert p.options.mode == "stack" and p.errors == {}  # a 3D viewer starts in stack mode
    p.settings = {**p.settings, "median_slices": 2, "chunks": "1,x"}
    assert set(p.errors) == {"median_slices", "chunks"}
    with pytest.raises(ValueError, match="median_slices"):
        p.run(background=False)
    p.set(median_slices=3, chunks="")
    p.set(confine_to_visible=True)
    assert "confine_to_visible" in p.errors  # the browser has not reported its visible area
    flat = Viewer(np.zeros((32, 32), np.uint8))
    assert "2D image" in panel(flat, tiny_model, mode="ortho").errors["mode"]
    assert "model_source" in InferencePanel(viewer).errors


def test_2d_run_writes_one_undoable_slice_confined_to_the_visible_area(viewer, tiny_model):
    p = panel(viewer, tiny_model, mode="2d", **ALL)
    viewer.view_box = [0, viewer.slice_index, 8, 16, 40, 48]  # as the browser reports it
    p.set(confine_to_visible=True)
    labels = p.run(background=False)
    data = viewer.layer("prediction").data
    assert labels[8:40, 16:48].all() and not labels[:8].any() and not labels[:, 48:].any()
    np.testing.assert_array_equal(data[viewer.slice_index], labels)
    assert not np.delete(data, viewer.slice_index, axis=0).any()
    assert viewer.undo() and not viewer.layer("prediction").data.any()


def test_stack_runs_in_the_background_with_progress(viewer, tiny_model, tmp_path):
    p = panel(viewer, tiny_model, mode="stack", axis="xz", out=str(tmp_path / "s.zarr"), chunks="2,16,16", **ALL)
    seen = []
    report = p._on_progress
    p._on_progress = lambda e: (seen.append(e), report(e))
    p.run().join(120)
    assert p.error is None and "segmented the volume" in p.status, p.status
    assert {e["stage"] for e in seen} == {"xz: infer"} and seen[-1]["done"] == seen[-1]["total"] == 64
    assert p.progress == {"stage": "xz: infer", "done": 64, "total": 64}
    z = zarr.open_array(str(tmp_path / "s.zarr"), mode="r")
    assert tuple(z.chunks) == (2, 16, 16) and z[:].all()
    assert viewer.layer("prediction").data.all()


def test_cancel_stops_between_slices_and_writes_nothing(viewer, tiny_model, tmp_path):
    p = panel(viewer, tiny_model, mode="stack", out=str(tmp_path / "c.zarr"), **ALL)
    p._on_progress = lambda e: p.cancel() if e["done"] >= 1 else None
    p.run().join(120)
    assert p.status == "inference cancelled" and not p.running
    assert not (tmp_path / "c.zarr").exists()
    with pytest.raises(KeyError):
        viewer.layer("prediction")


def test_ortho_keeps_planes_confined_to_regions_with_zarr_output(viewer, tiny_model, tmp_path):
    viewer.add_region([[8, 8], [24, 28]], shape="rectangle", all_slices=True)
    p = panel(viewer, tiny_model, mode="ortho", keep_planes=True, erode=1, dilate=1, vote=2, **dict(ALL, batch_size=32))
    p.set(confine_to_regions=True, out=str(tmp_path / "o.zarr"), chunks="4,32,32")
    p.run(background=False)
    mask = viewer.context_mask()
    for name in ("prediction", "prediction xy", "prediction xz", "prediction yz"):
        data = viewer.layer(name).data
        assert data.shape == (4, 64, 64) and data[mask].any() and not data[~mask].any(), name
    assert set(p.planes) == {"xy", "xz", "yz"}
    z = zarr.open_array(str(tmp_path / "o.zarr"), mode="r")
    assert z.shape == (4, 64, 64) and tuple(z.chunks) == (4, 32, 32) and not z[:][~mask].any()
