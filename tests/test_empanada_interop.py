"""empanada's model format against empanada-dl 0.1.7 itself (run in its own venv, benchmarks/peer_venv.py).

The peer builds random-init MitoNet_v1 (PanopticDeepLabPR) and MitoNet_v1_mini (PanopticBiFPNPR)
models, exports them as empanada does and runs them through its PanopticDeepLabEngine on a real
128x128 crop; we load the same files into our eager modules and compare raw outputs and panoptic
labels (ours: panoptic_postprocess with empanada's engine settings on our own outputs). The reverse
direction runs our export_model files in the peer's engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

import empanada_nb as enb
from empanada_nb import empanada_format as ef
from empanada_nb import published

ROOT = Path(__file__).resolve().parents[1]
# as tests/conftest.py (not imported from there: tests/browser/conftest.py shadows the module name)
SHARED_DATA = Path(os.environ.get("EMPANADA_NB_DATA", ROOT / ".." / "shared" / "data"))
sys.path.append(str(ROOT / "benchmarks"))  # appended: a benchmark must never shadow a package
from peer_venv import PeerUnavailable, peer_python  # noqa: E402

PEER = Path(__file__).resolve().parent / "peer" / "empanada_peer.py"
NORMS = {"mean": 0.57571, "std": 0.12765}
# empanada's PanopticDeepLabEngine settings in MitoNet's FINETUNE.engine_params, in our terms
PP = dict(thing_list=[1], label_divisor=1000, seg_thr=0.5, center_thr=0.1, nms_kernel=7, stuff_area=64)
KEYS = ("sem_logits", "ctr_hmp", "offsets")


def _peer(*args) -> str:
    try:
        py = peer_python(quiet=True)
    except PeerUnavailable as e:
        pytest.skip(f"empanada-dl peer venv cannot be built, package registry unreachable: {e}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([str(py), str(PEER), *map(str, args)], capture_output=True, text=True, env=env, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _labels(out: dict) -> np.ndarray:
    return enb.panoptic_postprocess(
        out["sem_logits"][0], out["ctr_hmp"][0], out["offsets"][0], fine_boundaries=True, **PP
    ).numpy()


def _ref(folder: Path, name: str) -> dict:
    return {k: np.load(folder / f"{name}_{k}.npy") for k in (*KEYS, "pan")}


def _compare(ours: dict, ref: dict) -> dict:
    """Max abs output differences (relative to the output's range) and label agreement."""
    res = {}
    for k in KEYS:
        a, b = ours[k].detach().numpy(), ref[k]
        assert a.shape == b.shape, k
        res[k] = float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))
    res["labels"] = float((_labels(ours) == ref["pan"]).mean())
    return res


@pytest.fixture(scope="module")
def peer_models(tmp_path_factory):
    """(folder, x): the peer's exported models and engine outputs on a normalized real crop."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found; set EMPANADA_NB_DATA")
    img = tifffile.imread(SHARED_DATA / "empanada_testdata_panoptic_image.tiff")[64:192, 64:192]
    x = enb.normalize_image(img, NORMS)[None, None].astype(np.float32)
    folder = tmp_path_factory.mktemp("peer")
    np.save(folder / "x.npy", x)
    _peer("build", folder, folder / "x.npy")
    return folder, torch.from_numpy(x)


_LOADED: dict = {}


def _load(path: Path) -> torch.nn.Module:
    """load_model once per file and module run (ResNet-50 models take seconds to build)."""
    if path not in _LOADED:
        _LOADED[path] = enb.load_model(path)
    return _LOADED[path]


@pytest.fixture(autouse=True)
def _hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # archive unpacking and URL downloads


@pytest.mark.parametrize("name,suffix", [("MitoNet_v1", ".yaml"), ("MitoNet_v1_mini", ".empanada")])
def test_empanada_models_load_with_the_peers_outputs_and_labels(peer_models, name, suffix):
    folder, x = peer_models
    model = _load(folder / f"{name}{suffix}")
    assert model.architecture == ("PanopticDeepLab" if name == "MitoNet_v1" else "PanopticBiFPN")
    if name == "MitoNet_v1":  # empanada's mmm_panoptic_deeplab_pointrend.yaml
        assert model.arch_kwargs["low_level_stages"] == [1] and model.arch_kwargs["low_level_project"] == [32]
    else:  # mmm_panoptic_bifpn_pointrend.yaml
        assert model.arch_kwargs == {"fpn_dim": 160, "fpn_layers": 3, "bifpn": "empanada", "ins_decoder": True}
    assert model.card.class_names == {1: "mito"} and model.card.thing_list == [1]
    assert model.norms == NORMS and model.card.label_divisor == 1000
    assert "random-init" in model.card.description
    with torch.no_grad():
        ours = model(x)
    ref = _ref(folder, name)
    got = _compare(ours, ref)
    print(name, got, "instances:", len(np.unique(ref["pan"])) - 1)
    assert max(got[k] for k in KEYS) < 1e-4, got
    assert got["labels"] == 1.0
    assert len(np.unique(ref["pan"])) >= 2  # the comparison sees labelled pixels, not just background
    # the same outputs through both postprocessors give the same labels
    ref_t = {k: torch.from_numpy(ref[k]) for k in KEYS}
    assert (_labels(ref_t) == ref["pan"]).all()


def test_finetuning_a_fused_empanada_model_keeps_its_unfused_batchnorms(peer_models, tmp_path):
    """empanada's files hold conv+BN fused; the BatchNorms that stand for those biases stay identities."""
    folder, _ = peer_models
    model = enb.load_model(folder / "MitoNet_v1.yaml")  # its own copy: finetuning below changes it
    fixed = model.card.fixed_bn
    assert len(fixed) > 20 and all(n.startswith("encoder.") or "." in n for n in fixed)
    data = tmp_path / "ds"
    enb.make_synthetic_dataset(data, n_images=4, size=64, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.finetune(model, data, layers="all", out=tmp_path / "ft.pth", iterations=1, patch_size=64,
                         batch_size=2, min_bn_batch=2, checkpoint_interval=100)  # fmt: skip
    bns = dict(h.model.named_modules())
    for name in fixed:  # in train mode these would have taken the batch's mean and variance
        assert torch.count_nonzero(bns[name].running_mean) == 0, name
        assert torch.all(bns[name].running_var == 1), name
    again = enb.load_model(tmp_path / "ft.pth")
    assert again.card.fixed_bn == fixed


def test_our_export_runs_in_empanadas_engine(peer_models, tmp_path):
    folder, x = peer_models
    exported, ours = [], {}
    for name in ("MitoNet_v1", "MitoNet_v1_mini"):
        model = _load(folder / f"{name}.yaml" if name == "MitoNet_v1" else folder / f"{name}.empanada")
        with torch.no_grad():
            ours[name] = model(x)
        y = enb.export_model(model, tmp_path / f"nb_{name}.yaml")
        exported.append(y.with_suffix(".pth"))
        cfg = yaml.safe_load(y.read_text())
        assert set(ef.REQUIRED_KEYS) <= set(cfg) and cfg["FINETUNE"]["engine"] == "PanopticDeepLabEngine"
    _peer("run", folder / "x.npy", tmp_path, *exported)
    _peer("train", exported[1], folder / "x.npy", tmp_path)  # empanada-napari finetunes the TorchScript itself
    step = json.loads((tmp_path / "train_step.json").read_text())
    assert {"sem_logits", "sem_points", "point_coords", "ctr_hmp", "offsets"} <= set(step["keys"])
    assert np.isfinite(step["loss"]) and step["decoder_moved"] and not step["encoder_moved"]
    for name in ("MitoNet_v1", "MitoNet_v1_mini"):
        got = _compare(ours[name], _ref(tmp_path, f"nb_{name}"))
        print("export", name, got)
        assert max(got[k] for k in KEYS) < 1e-4, got
        assert got["labels"] == 1.0


def test_quantized_file_runs_or_falls_back_to_fp32(peer_models, monkeypatch):
    folder, x = peer_models
    cfg = ef.read_empanada_config(folder / "MitoNet_v1_mini.yaml")
    if not cfg.get("model_quantized"):
        pytest.skip("the peer could not quantize on this CPU (no fbgemm); nothing to load")
    q = ef.load_empanada_model(folder / "MitoNet_v1_mini.yaml", quantized=True)
    if isinstance(q, ef.QuantizedModel):
        labels = enb.segment_image(q, (x[0, 0].numpy() * 40 + 128).clip(0, 255).astype(np.uint8))
        assert labels.shape == (128, 128)
    real_load = torch.jit.load

    def no_engine(path, *a, **k):  # what a platform without a quantized engine raises
        if "quantized" in str(path):
            raise RuntimeError("Didn't find engine for operation quantized::conv2d_prepack NoQEngine")
        return real_load(path, *a, **k)

    monkeypatch.setattr(torch.jit, "load", no_engine)
    ef._WARNED.clear()
    with pytest.warns(UserWarning, match="using the fp32 model"):
        m = ef.load_empanada_model(folder / "MitoNet_v1_mini.yaml", quantized=True)
    assert not isinstance(m, ef.QuantizedModel)
    with torch.no_grad():
        np.testing.assert_allclose(m(x)["offsets"].numpy(), _ref(folder, "MitoNet_v1_mini")["offsets"], atol=1e-3)


def _mitonet_like(arch: str) -> torch.nn.Module:
    """A resnet18 model in empanada's layouts, exported and reloaded as an empanada model would be."""
    torch.manual_seed(0)
    kw = (
        dict(low_level_stages=(1,), low_level_project=(32,), decoder_channels=64)
        if arch == "PanopticDeepLab"
        else dict(fpn_dim=32, fpn_layers=1, bifpn="empanada")
    )
    return enb.build_model(arch, "resnet18", pointrend=True, **kw).eval()


def test_loaded_models_segment_finetune_with_every_layer_option_and_save(tmp_path):
    base = _mitonet_like("PanopticDeepLab")
    arc = enb.export_model(base, tmp_path / "mini.empanada")
    with zipfile.ZipFile(arc) as z:
        assert sorted(z.namelist()) == ["mini.pth", "mini.yaml"]  # as empanada-napari's Export Model writes
        assert yaml.safe_load(z.read("mini.yaml"))["model"] == "mini.pth"
    model = enb.load_model(arc)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x))
    img = (np.random.default_rng(0).random((2, 64, 64)) * 255).astype(np.uint8)
    assert enb.segment_image(model, img[0]).shape == (64, 64)
    assert enb.segment_stack(model, img).shape == (2, 64, 64)
    data = tmp_path / "ds"
    enb.make_synthetic_dataset(data, n_images=4, size=64, seed=1)
    for layers in enb.FINETUNABLE_LAYERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = enb.finetune(model, data, layers=layers, out=tmp_path / f"ft_{layers}.pth", iterations=1,
                             patch_size=64, batch_size=2, checkpoint_interval=100)  # fmt: skip
        again = enb.load_model(tmp_path / f"ft_{layers}.pth")
        assert again.card.finetunable_layers == layers and again.arch_kwargs == model.arch_kwargs
        for k, v in h.model.state_dict().items():
            torch.testing.assert_close(again.state_dict()[k], v.cpu(), msg=k)
    # and back out to empanada's format
    back = enb.load_model(enb.export_model(again, tmp_path / "ft.yaml"))
    with torch.no_grad():
        torch.testing.assert_close(back(x), again.eval()(x))


def test_loaded_archive_runs_ortho_the_viewer_and_the_dashboard(tmp_path):
    """Issue 8: an .empanada model runs through segment_ortho, the Viewer's InferencePanel and the dashboard."""
    base = _mitonet_like("PanopticDeepLab")  # padding 16: the 4-voxel-high xz/yz slices stay small
    arc = enb.export_model(base, tmp_path / "mini.empanada")
    model = enb.load_model(arc)
    vol = (np.random.default_rng(1).random((4, 32, 32)) * 255).astype(np.uint8)
    # every voxel labelled, so the layers are filled, not just shaped; batches of 16 keep the 64 xz/yz slices quick
    every = dict(semantic_only=True, seg_thr=0.0, batch_size=16)
    labels, planes = enb.segment_ortho(model, vol, keep_planes=True, progress=False, **every)
    assert labels.shape == (4, 32, 32) and labels.all()
    assert {k: v.shape for k, v in planes.items()} == {"xy": (4, 32, 32), "xz": (4, 32, 32), "yz": (4, 32, 32)}
    viewer = enb.Viewer(vol)
    viewer.send = lambda content, buffers=None: None  # no browser: drop the messages
    d = enb.TrainingDashboard(viewer, model=model)
    d.inference.send = lambda content, buffers=None: None
    d.inference.set(**every)
    sl = d.segment_slice()
    layer = viewer.layer("prediction")
    assert sl.shape == (32, 32) and sl.all() and layer.data.shape == (4, 32, 32)
    np.testing.assert_array_equal(layer.data[viewer.slice_index], sl)
    # the archive's path typed into the panel loads through load_model too
    panel = enb.InferencePanel(viewer, model=str(arc), mode="ortho", **every)
    panel.send = lambda content, buffers=None: None
    panel.run()
    out = panel.wait(300)
    assert panel.error is None and "segmented the volume" in panel.status, panel.status
    np.testing.assert_array_equal(out, labels)  # the panel's ortho run is the API's
    np.testing.assert_array_equal(viewer.layer("prediction").data, labels)


def test_published_name_loads_through_empanadas_real_loader_once(peer_models, server, online, monkeypatch):
    """load_model("MitoNet_v1_mini"): the peer-built weights served as Zenodo would, loaded, then cached."""
    folder, x = peer_models
    monkeypatch.setattr(published, "PUBLISHED_BASE", server.url)
    rel = published.PUBLISHED["MitoNet_v1_mini"]["config"]["model"].split("?")[0]
    (server.www / rel).parent.mkdir(parents=True)
    shutil.copyfile(folder / "MitoNet_v1_mini.pth", server.www / rel)
    model = enb.load_model("MitoNet_v1_mini")
    assert server.hits == {"/" + rel: 1}
    assert model.architecture == "PanopticBiFPN" and model.arch_kwargs["bifpn"] == "empanada"
    assert model.norms == NORMS and model.padding_factor == 128 and model.card.class_names == {1: "mito"}
    assert model.card.description.startswith("MitoNet_v1_mini was trained")  # the published config, not the peer's
    direct = _load(folder / "MitoNet_v1_mini.yaml")
    again = enb.load_model("MitoNet_v1_mini")
    assert server.hits == {"/" + rel: 1}  # the second call reads the cache
    with torch.no_grad():
        ref = direct(x)
        for m in (model, again):
            out = m(x)
            for k in KEYS:
                torch.testing.assert_close(out[k], ref[k], rtol=0, atol=0, msg=k)


def test_bifpn_empanada_layout_ties_fusion_convs_and_round_trips(tmp_path):
    base = _mitonet_like("PanopticBiFPN")
    td = base.semantic_fpn.bifpns[0].top_down_fpn.after_combines
    assert td[0] is td[1]  # empanada's (tied) layout
    model = enb.load_model(enb.export_model(base, tmp_path / "b.yaml"))
    x = torch.randn(1, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x))
    own = enb.build_model("PanopticBiFPN", "resnet18", fpn_dim=32, fpn_layers=1)
    assert own.semantic_fpn.layers[0].td[0] is not own.semantic_fpn.layers[0].td[1]  # ours stays the default


def test_yaml_over_http_and_bad_files(tmp_path, server, online):
    y = enb.export_model(_mitonet_like("PanopticDeepLab"), server.www / "m.yaml")
    cfg = yaml.safe_load(y.read_text())
    cfg["model"] = "m.pth"  # relative to the YAML's URL
    y.write_text(yaml.safe_dump(cfg))
    m = enb.load_model(f"{server.url}/m.yaml")
    assert server.hits["/m.pth"] == 1
    assert m.arch_kwargs["low_level_stages"] == [1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("class_names: {1: mito}\nmodel: x.pth\n")
    with pytest.raises(ValueError, match="lacks thing_list"):
        enb.load_model(bad)
    junk = tmp_path / "junk.empanada"
    junk.write_bytes(os.urandom(100))
    with pytest.raises(ValueError, match=r"not an \.empanada archive|not a model file"):
        enb.load_model(junk)
    cfg["model"] = str(tmp_path / "junk.pth")
    (tmp_path / "junk.pth").write_bytes(b"PK" + os.urandom(100))
    y.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=r"not a TorchScript model file|truncated"):
        enb.load_model(y)
