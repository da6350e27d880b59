"""Inference speed-ups keep the outputs: BatchNorm folding, channels-last, the stack's prefetch thread,
and the precision option (bf16 fast path, its fp32 fallback, and its way to the CLI and the panel)."""

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn as nn

import empanada_nb as enb
from empanada_nb import inference, precision, volume
from empanada_nb.cli import _segment_args
from empanada_nb.inference import Predictor
from empanada_nb.models.fuse import fold_batchnorm

# defined here: tests/browser/conftest.py shadows 'conftest' when the whole suite is collected
SHARED_DATA = Path(os.environ.get("EMPANADA_NB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _nontrivial(model: nn.Module, seed: int = 0, calibrate: np.ndarray | None = None) -> nn.Module:
    """Random BatchNorm statistics and affine terms (so folding changes every conv) and heads with
    outputs far from 0. With ``calibrate`` (a normalized 2D image) the head biases are set so that
    half its pixels are foreground and its top 2 % heatmap values are centers: labels with many
    instances, from an untrained network."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.8 + 0.4 * torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
        for head, gain in ((model.semantic_head, 3000.0), (model.ins_center, 1000.0), (model.ins_xy, 3000.0)):
            head.head[1].weight.mul_(gain)
        if calibrate is not None:
            model.eval()
            out = model(torch.from_numpy(calibrate.astype(np.float32))[None, None])
            model.semantic_head.head[1].bias.sub_(out["sem_logits"].median())
            model.ins_center.head[1].bias.sub_(out["ctr_hmp"].quantile(0.98) - 0.2)
    return model


@pytest.mark.parametrize(
    "arch,kw",
    [("PanopticDeepLab", {}), ("PanopticBiFPN", {"pointrend": True}), ("PanopticBiFPN", {"bifpn": "empanada"})],
)
def test_folded_model_equals_unfolded(arch, kw):
    torch.manual_seed(0)
    model = _nontrivial(enb.build_model(arch, "resnet18", **kw)).train()
    fused = enb.fuse_for_inference(model)
    assert fused is not model and not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert model.training and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 10  # untouched
    x = torch.randn(1, 1, 128, 128)
    model.eval()
    with torch.inference_mode():
        ref, out = model(x), fused(x)
    for k in ref:
        scale = ref[k].abs().max().item()
        assert torch.allclose(ref[k], out[k], atol=1e-4 * scale, rtol=1e-4), (k, (ref[k] - out[k]).abs().max())
    assert enb.fuse_for_inference(model) is fused  # cached
    with torch.no_grad():
        model.semantic_head.head[1].bias.add_(1.0)  # weights changed: a new copy, with the new bias
    again = enb.fuse_for_inference(model)
    assert again is not fused
    assert torch.equal(again.semantic_head.head[1].bias, model.semantic_head.head[1].bias)


def test_fold_batchnorm_counts_and_keeps_plain_modules():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(2, 2)).eval()
    assert fold_batchnorm(m) == 1 and isinstance(m[1], nn.Identity)
    plain = nn.Sequential(nn.Conv2d(1, 1, 1))
    assert enb.fuse_for_inference(plain) is plain  # nothing to fold: the model itself


@pytest.fixture(scope="module")
def real_crop():
    path = SHARED_DATA / "lucchipp_train_image.tif"
    if not path.exists():
        pytest.skip(f"{path} not found; set EMPANADA_NB_DATA")
    with tifffile.TiffFile(path) as tif:
        return np.stack([tif.pages[i].asarray()[200:328, 300:428] for i in range(3)])


def _old_path(monkeypatch):
    """Inference as before the speed-ups: the user's model itself (NCHW, BatchNorm), no prefetch thread."""
    monkeypatch.setattr(inference, "fuse_for_inference", lambda m: m)
    monkeypatch.setattr(volume, "prefetch", lambda items, depth=1: iter(items))


def test_inference_outputs_unchanged_on_a_real_crop(real_crop, monkeypatch):
    torch.manual_seed(1)
    norm = enb.normalize_image(real_crop[0], {"mean": 0.5, "std": 0.5}, (0.0, 255.0))
    model = _nontrivial(enb.build_model("PanopticDeepLab", "resnet18"), seed=1, calibrate=norm).eval()
    kw = dict(irange=(0.0, 255.0), progress=False, min_size=0, min_extent=0, batch_size=2)
    new_2d, new_probs = enb.segment_image(model, real_crop[0], irange=(0.0, 255.0), return_probs=True)
    new_3d = enb.segment_stack(model, real_crop, **kw)
    with monkeypatch.context() as mp:
        _old_path(mp)
        old_2d, old_probs = enb.segment_image(model, real_crop[0], irange=(0.0, 255.0), return_probs=True)
        old_3d = enb.segment_stack(model, real_crop, **kw)
    assert np.abs(new_probs - old_probs).max() < 1e-4
    assert len(np.unique(old_2d)) > 3 and len(np.unique(old_3d)) > 3  # the test sees instances
    # float32 rounding of the folded weights may flip a pixel sitting exactly on a threshold
    assert (new_2d == old_2d).mean() > 0.999
    assert (new_3d == old_3d).mean() > 0.999
    assert len(np.unique(new_2d)) == len(np.unique(old_2d))


def test_prefetch_stops_and_reraises():
    from empanada_nb._prefetch import prefetch

    def items():
        yield 1
        yield 2
        raise RuntimeError("read failed")

    got = []
    with pytest.raises(RuntimeError, match="read failed"):
        for x in prefetch(items()):
            got.append(x)
    assert got == [1, 2]
    gen = prefetch(iter(range(10**6)), depth=2)
    assert next(gen) == 0
    gen.close()  # the producer thread stops instead of running to the end


def test_bf16_falls_back_to_fp32_where_unsupported(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(precision, "_WARNED", set())
    cpu = torch.device("cpu")
    with pytest.warns(RuntimeWarning, match="not native") as rec:
        assert precision.resolve_precision("bf16", cpu).name == "fp32"
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve_precision("bf16", cpu).dtype is None  # warned once only
        assert precision.resolve_precision("auto", cpu).name == "fp32"  # auto never warns
    with pytest.warns(RuntimeWarning, match="CUDA only"):
        assert precision.resolve_precision("fp16", cpu).name == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("int4", cpu)
    model = enb.build_model("PanopticDeepLab", "resnet18")
    image, _ = enb.synthetic_image(64, n_objects=3)
    fb = enb.segment_image(model, image, precision="bf16")
    assert np.array_equal(fb, enb.segment_image(model, image, precision="fp32"))


def test_bf16_close_to_fp32_where_native(real_crop):
    if not precision.native_bf16_cpu():
        pytest.skip("this CPU has no native bfloat16 (AMX/AVX512-BF16)")
    torch.manual_seed(2)
    norm = enb.normalize_image(real_crop[0], {"mean": 0.5, "std": 0.5}, (0.0, 255.0))
    model = _nontrivial(enb.build_model("PanopticDeepLab", "resnet18"), seed=2, calibrate=norm).eval()
    x = torch.from_numpy(real_crop[:1, None].astype(np.float32) / 255.0)
    p32, pbf = Predictor(model), Predictor(model, precision="bf16")
    assert pbf.precision.name == "bf16"
    a, b = p32._forward(x), pbf._forward(x)
    assert b.dtype == torch.float32 and a.shape == b.shape
    # bf16 keeps 8 mantissa bits: probabilities within a few hundredths, offsets within a pixel or so
    assert (a[:, :2] - b[:, :2]).abs().mean() < 0.02
    labels32 = enb.segment_image(model, real_crop[0], irange=(0.0, 255.0))
    labels16 = enb.segment_image(model, real_crop[0], irange=(0.0, 255.0), precision="bf16")
    assert labels16.shape == labels32.shape and labels16.dtype == labels32.dtype
    # the heads' 1000-3000x gains amplify bf16 rounding far beyond a trained model's; the accuracy
    # of bf16 on a trained model is measured by benchmarks/compare.py
    iou = ((labels32 > 0) & (labels16 > 0)).sum() / max(1, ((labels32 > 0) | (labels16 > 0)).sum())
    assert iou > 0.75


def test_precision_reaches_the_cli_and_the_panel():
    assert enb.SegmentOptions().precision == "fp32"
    spec = {s["name"]: s for s in enb.SegmentOptions.form("widget")}["precision"]
    assert spec["choices"] == list(enb.PRECISIONS) and spec["kind"] == "choice"
    p = argparse.ArgumentParser()
    _segment_args.add_options(p)
    opts = _segment_args.options_from(p.parse_args(["--precision", "bf16"]), "stack")
    assert opts.kwargs()["precision"] == "bf16"
    with pytest.raises(SystemExit):
        p.parse_args(["--precision", "int4"])
    assert "precision must be one of" in enb.SegmentOptions(precision="int4").problems()["precision"]
    panel = enb.InferencePanel(precision="auto")
    assert panel.options.precision == "auto" and panel.options.kwargs("ortho")["precision"] == "auto"
