"""The foreground threshold fitted on labelled images and folded into the semantic head's bias."""

import math
import warnings

import numpy as np
import pytest
import torch
import yaml

import empanada_nb as enb
from empanada_nb.postprocess import harden_semantic
from empanada_nb.training import calibrate, checkpoint_path, load_checkpoint
from empanada_nb.training.calibrate import (
    foreground_iou_by_threshold,
    semantic_predictor,
    shift_semantic_bias,
)

TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", patch_size=64, batch_size=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    enb.make_synthetic_dataset(root, n_images=6, size=96, seed=1)
    return root


def _spread_model(num_classes: int = 1) -> torch.nn.Module:
    """A random model whose foreground logits on the test image have mean 0 and std 1.5 per channel."""
    torch.manual_seed(0)
    model = enb.build_model("PanopticDeepLab", "resnet18", num_classes=num_classes).eval()
    conv = semantic_predictor(model)
    with torch.no_grad():
        z = _logits(model, IMAGE) - conv.bias[:, None, None]
        mean, std = z.mean(dim=(1, 2)), z.std(dim=(1, 2))
        conv.weight.mul_((1.5 / std)[:, None, None, None])  # initialised at std 0.001: logits near 0 otherwise
        conv.bias.copy_(-mean * 1.5 / std)
    return model


def _logits(model, image):
    x = torch.from_numpy(enb.normalize_image(image, model.norms, (0, 255)))[None, None]
    with torch.no_grad():
        return model.eval()(x)["sem_logits"][0]


IMAGE = enb.synthetic_image(96, n_objects=4, seed=3)[0]


def test_iou_by_threshold_pools_images_and_skips_unlabelled():
    p1 = np.array([[0.1, 0.4, 0.6, 0.9]])
    m1 = np.array([[0, 1, 1, -1]])  # the last pixel is unlabelled: predicted or not, it counts for nothing
    p2 = np.array([[0.45, 0.2]])
    m2 = np.array([[0, 0]])
    s = foreground_iou_by_threshold([p1, p2], [m1, m2], [0.3, 0.5, 0.95])
    assert s[0.3] == pytest.approx(2 / 3)  # 0.4, 0.6 right; 0.45 of image 2 a false positive
    assert s[0.5] == pytest.approx(1 / 2)
    assert s[0.95] == 0.0


def test_the_fit_finds_a_planted_threshold_and_0_5_then_gives_it():
    model = _spread_model()
    image = IMAGE
    p = torch.sigmoid(_logits(model, image)[0]).numpy()
    assert np.mean(p < 0.35) > 0.1 and np.mean(p >= 0.35) > 0.1, "the probabilities must straddle the plant"
    truth = (p >= 0.35).astype(np.uint16)  # the segmentation a threshold of 0.35 gives
    bias = semantic_predictor(model).bias.item()
    fit = enb.calibrate_threshold(model, [image], [truth])
    assert fit["threshold"] == 0.35 and fit["applied"] and fit["iou"] == pytest.approx(1.0)
    assert fit["iou_at_0.5"] < 0.99
    # folded in: 0.5 now gives what 0.35 gave, through the public segmentation
    _, probs = enb.segment_image(model, image, return_probs=True, semantic_only=True, irange=(0, 255))
    agree = np.mean((probs >= 0.5) == truth.astype(bool))
    assert agree > 0.999
    assert semantic_predictor(model).bias.item() == pytest.approx(bias - math.log(0.35 / 0.65), abs=1e-5)


def test_no_gain_keeps_0_5_and_apply_false_changes_nothing():
    model = _spread_model()
    image = IMAGE
    p = torch.sigmoid(_logits(model, image)[0]).numpy()
    before = semantic_predictor(model).bias.clone()
    fit = enb.calibrate_threshold(model, [image], [(p >= 0.5).astype(np.uint8)])
    assert fit["threshold"] == 0.5 and not fit["applied"]
    fit = enb.calibrate_threshold(model, [image], [(p >= 0.3).astype(np.uint8)], apply=False)
    assert fit["threshold"] == 0.3 and not fit["applied"]
    assert torch.equal(semantic_predictor(model).bias, before)


def test_binary_0_255_masks_are_objects_and_bad_input_is_refused():
    model = _spread_model()
    image = IMAGE
    p = torch.sigmoid(_logits(model, image)[0]).numpy()
    binary = np.where(p >= 0.4, 255, 0).astype(np.uint8)  # a common export: 255 is objects, not "unlabelled"
    assert enb.calibrate_threshold(model, [image], [binary], apply=False)["threshold"] == 0.4
    with pytest.raises(ValueError, match="no labelled foreground"):
        enb.calibrate_threshold(model, [image], [np.zeros_like(binary)])
    with pytest.raises(ValueError, match="as many masks as images"):
        enb.calibrate_threshold(model, [image, image], [binary])
    with pytest.raises(ValueError, match="mask 0 has shape"):
        enb.calibrate_threshold(model, [image], [binary[:10]])


def test_softmax_models_shift_the_background_logit():
    model = _spread_model(num_classes=2)  # 3 channels: background + two classes
    image = IMAGE
    z = _logits(model, image)
    t = 0.3
    shift_semantic_bias(model, t)
    z2 = _logits(model, image)
    before = harden_semantic(z, seg_thr=t)
    after = harden_semantic(z2, seg_thr=0.5)
    assert before.float().mean() > 0  # something is foreground at 0.3
    # same pixels, same classes (up to float rounding at the boundary)
    assert (before == after).float().mean() > 0.999


def test_pointrend_models_are_not_calibrated():
    model = enb.build_model("PanopticBiFPN", "resnet18", pointrend=True)
    assert semantic_predictor(model) is None
    image, truth = enb.synthetic_image(64, n_objects=3, seed=1)
    with pytest.raises(ValueError, match="no semantic predictor"):
        enb.calibrate_threshold(model, [image], [truth])


def test_training_ends_calibrated_and_the_checkpoint_keeps_the_trained_bias(dataset, tmp_path, monkeypatch):
    # plant the fit's scores: 0.3 wins, so the plumbing (bias, card, event, checkpoint) is what is tested
    monkeypatch.setattr(
        calibrate,
        "foreground_iou_by_threshold",
        lambda probs, masks, ts: {float(t): (0.9 if t == 0.3 else 0.5) for t in ts},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(dataset, out=tmp_path / "m.pth", iterations=6, **TINY)
    fits = h.events("calibration")
    assert len(fits) == 1 and fits[0]["threshold"] == 0.3 and fits[0]["applied"]
    assert fits[0]["source"] == "training images" and fits[0]["images"] == 6
    card = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert card["calibration"]["threshold"] == 0.3
    saved = enb.load_model(tmp_path / "m.pth").state_dict()["semantic_head.head.1.bias"]
    ckpt = load_checkpoint(checkpoint_path(tmp_path / "m.pth"))["model"]["state_dict"]["semantic_head.head.1.bias"]
    assert saved.item() == pytest.approx(ckpt.item() - math.log(0.3 / 0.7), abs=1e-5)


def test_a_failed_fit_warns_and_saves_the_model_unchanged(dataset, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(calibrate, "_probabilities", broken)
    with pytest.warns(UserWarning, match="could not be fitted .planted failure"):
        h = enb.train(dataset, out=tmp_path / "m.pth", iterations=3, val_fraction=0.34, **TINY)
    assert h.events("calibration") == [] and h.events("end")[-1]["stopped"] is False
    saved = enb.load_model(tmp_path / "m.pth").state_dict()["semantic_head.head.1.bias"]
    ckpt = load_checkpoint(checkpoint_path(tmp_path / "m.pth"))["model"]["state_dict"]["semantic_head.head.1.bias"]
    assert torch.equal(saved, ckpt)
    assert yaml.safe_load((tmp_path / "m.yaml").read_text())["calibration"] == {}


def test_calibrate_false_fits_nothing(dataset, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(dataset, out=tmp_path / "m.pth", iterations=3, calibrate=False, **TINY)
    assert h.events("calibration") == [] and h.model.card.calibration == {}


def _plant(monkeypatch, best: float, gain: float) -> None:
    monkeypatch.setattr(
        calibrate,
        "foreground_iou_by_threshold",
        lambda probs, masks, ts: {float(t): (0.5 + gain if t == best else 0.5) for t in ts},
    )


def test_training_images_move_the_threshold_only_for_a_large_gain(dataset, tmp_path, monkeypatch):
    _plant(monkeypatch, 0.3, 0.03)  # enough on validation images, not on training images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(dataset, out=tmp_path / "m.pth", iterations=2, **TINY)
    fit = h.events("calibration")[-1]
    assert fit["source"] == "training images" and fit["threshold"] == 0.5 and not fit["applied"]


def test_the_calibrated_model_is_validated_again(dataset, tmp_path, monkeypatch):
    _plant(monkeypatch, 0.3, 0.03)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(dataset, out=tmp_path / "m.pth", iterations=4, val_fraction=0.34, **TINY)
    fit = h.events("calibration")[-1]
    assert fit["source"] == "validation images" and fit["images"] == 2 and fit["applied"]
    vals = h.events("validation")
    assert vals[-1].get("calibrated") is True and "calibrated" not in vals[-2]
    assert vals[-1]["iteration"] == vals[-2]["iteration"] == 4
    card = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert card["history_summary"]["iou"] == round(vals[-1]["iou"], 4) == h.summary()["iou"]
