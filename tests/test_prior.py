import math
import warnings

import numpy as np
import pytest
import tifffile
import torch

import empanada_nb as enb
from empanada_nb.training.calibrate import semantic_predictor
from empanada_nb.training.prior import PRIOR_MIN, class_prior, init_semantic_prior

FT = dict(patch_size=64, batch_size=4, calibrate=False)
TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", **FT)


def test_class_prior_counts_labelled_pixels_per_class():
    m = np.full((10, 10), -1, np.int64)  # unlabelled pixels count for nothing
    m[:2] = 0
    m[2] = 1005
    m[3] = 2001
    np.testing.assert_allclose(class_prior([m], 1000, 2), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(class_prior([m], None, 1), [0.5, 0.5])  # instance masks: every object is class 1
    absent = class_prior([m], 1000, 3)  # a class the masks lack still gets a finite bias
    assert absent[3] == pytest.approx(PRIOR_MIN, rel=0.01) and absent.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(class_prior([np.full((4, 4), -1)], None, 1), [0.5, 0.5])


def test_softmax_head_starts_at_the_prior_and_pointrend_is_left_alone():
    torch.manual_seed(0)
    model = enb.build_model("PanopticDeepLab", "resnet18", num_classes=2).eval()
    assert init_semantic_prior(model, np.array([0.7, 0.2, 0.1]))
    with torch.no_grad():
        p = torch.softmax(model(torch.zeros(1, 1, 64, 64))["sem_logits"], 1).mean((0, 2, 3))
    np.testing.assert_allclose(p.numpy(), [0.7, 0.2, 0.1], atol=0.01)
    pr = enb.build_model("PanopticDeepLab", "resnet18", pointrend=True)
    before = pr.semantic_head.head[1].bias.clone()
    assert not init_semantic_prior(pr, np.array([0.9, 0.1]))
    assert torch.equal(pr.semantic_head.head[1].bias, before)


def test_training_starts_at_the_prior_and_finetune_keeps_the_parent(tmp_path):
    enb.make_synthetic_dataset(tmp_path / "ds", n_images=4, size=96, seed=3)
    masks = [tifffile.imread(f) for f in sorted((tmp_path / "ds").rglob("masks/*.tif"))]
    fg = float(np.mean([(m > 0).mean() for m in masks]))
    assert 0.01 < fg < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = enb.train(tmp_path / "ds", out=tmp_path / "m.pth", iterations=1, lr=1e-9, **TINY)
    bias = float(semantic_predictor(run.model).bias)
    assert bias == pytest.approx(math.log(fg / (1 - fg)), abs=1e-3)  # not the zero a fresh head has
    parent = run.model
    with torch.no_grad():
        semantic_predictor(parent).bias.fill_(2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ft = enb.finetune(parent, tmp_path / "ds", out=tmp_path / "ft.pth", iterations=1, lr=1e-9, **FT)
    assert float(semantic_predictor(ft.model).bias) == pytest.approx(2.0, abs=1e-3)
