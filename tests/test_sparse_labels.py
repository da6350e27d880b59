"""Sparse labels: the unlabelled value through targets, loss, sampling, augmentation, save_patches,
training and the Viewer's Python side (the browser tool is in tests/browser/test_browser_viewer.py)."""

import warnings

import numpy as np
import pytest
import tifffile
import torch

import empanada_nb as enb
from empanada_nb import patches as P
from empanada_nb.data import (
    IGNORE_LABEL,
    PanopticDataset,
    cast_labels,
    find_pairs,
    ignore_value,
    load_pair,
    panoptic_targets,
    random_patch,
    training_mask,
)
from empanada_nb.losses import PanopticLoss
from empanada_nb.widgets._serialization import UNLABELLED_COLOR, label_color


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr)


def test_ignore_value_is_all_bits_set_and_survives_casts():
    assert [ignore_value(d) for d in (np.uint8, np.uint16, np.uint32, np.int32, np.int64)] == [
        255,
        65535,
        2**32 - 1,
        -1,
        -1,
    ]
    lab = np.array([0, 3, 2**32 - 1], np.uint32)
    for dt in (np.uint8, np.uint16, np.int32, np.int64, np.uint64):
        back = cast_labels(lab, dt)
        assert back.dtype == dt and back.tolist()[:2] == [0, 3] and back[2] == ignore_value(dt)
        assert training_mask(back).tolist() == [0, 3, IGNORE_LABEL]
    with pytest.raises(ValueError, match="do not fit uint8"):
        cast_labels(np.array([0, 255], np.uint32), np.uint8)  # 255 would read as unlabelled
    assert training_mask(np.array([0, 255], np.uint8), ignore_unlabelled=False).tolist() == [0, 255]
    assert enb.next_label(np.array([0, 4, 2**32 - 1], np.uint32)) == 5


def _outputs(n, s, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    out = {
        "sem_logits": torch.randn(n, s, h, w, generator=g),
        "ctr_hmp": torch.rand(n, 1, h, w, generator=g),
        "offsets": torch.randn(n, 2, h, w, generator=g) * 5,
    }
    return {k: v.requires_grad_() for k, v in out.items()}


@pytest.mark.parametrize("channels", [1, 3])
def test_loss_is_the_dense_loss_of_the_labelled_pixels(channels):
    n, h, w = 2, 40, 48
    g = torch.Generator().manual_seed(1)
    sem = torch.randint(0, max(2, channels), (n, h, w), generator=g)
    thing = (sem > 0) & (torch.rand(n, h, w, generator=g) > 0.3)
    hmp = torch.rand(n, 1, h, w, generator=g)
    off = torch.randn(n, 2, h, w, generator=g) * 4
    rows, cols = slice(6, 30), slice(10, 41)  # the labelled box; everything else is unlabelled
    box = torch.zeros(h, w, dtype=torch.bool)
    box[rows, cols] = True
    sparse = {
        "sem": torch.where(box, sem, torch.full_like(sem, IGNORE_LABEL)),
        "ctr_hmp": hmp,
        "ctr_valid": box.expand(n, h, w).clone(),
        "offsets": off,
        "thing": thing & box,
    }
    dense = {
        "sem": sem[:, rows, cols],
        "ctr_hmp": hmp[..., rows, cols],
        "offsets": off[..., rows, cols],
        "thing": thing[:, rows, cols],
    }
    loss_fn = PanopticLoss(top_k_percent=0.2)
    out = _outputs(n, channels, h, w, 0)
    total, terms = loss_fn(out, sparse)
    crop = {k: v[..., rows, cols] for k, v in out.items()}
    total_dense, terms_dense = loss_fn(crop, dense)
    for k in ("ce", "mse", "l1"):  # the bootstrapped top k is over the labelled pixels only
        assert terms[k] == pytest.approx(terms_dense[k], rel=1e-5), k
    assert total.item() == pytest.approx(total_dense.item(), rel=1e-5)
    # predictions inside the unlabelled region change neither the loss nor get a gradient
    total.backward()
    for k, v in out.items():
        assert float(v.grad[..., ~box].abs().max()) == 0.0, k
        assert float(v.grad[..., box].abs().max()) > 0, k
    out2 = {k: v.detach().clone() for k, v in out.items()}
    for v in out2.values():
        v[..., ~box] = torch.randn_like(v[..., ~box]) * 100
    assert loss_fn(out2, sparse)[0].item() == pytest.approx(total.item(), rel=1e-6)


def test_pointrend_points_on_unlabelled_pixels_do_not_count():
    n, h, w, p = 1, 16, 16, 6
    sem = torch.zeros(n, h, w, dtype=torch.long)
    sem[:, :, 8:] = IGNORE_LABEL  # right half unlabelled
    sem[:, 2:6, 2:6] = 1
    coords = torch.tensor([[[0.2, 0.2], [0.25, 0.25], [0.1, 0.9], [0.9, 0.6], [0.8, 0.8], [0.3, 0.7]]])  # (x, y)
    on_ignored = torch.tensor([False, False, False, True, True, False])
    out = _outputs(n, 1, h, w, 2)
    pts = torch.randn(n, 1, p, requires_grad=True)
    target = {"sem": sem, "ctr_hmp": torch.zeros(n, 1, h, w), "offsets": torch.zeros(n, 2, h, w)}
    loss_fn = PanopticLoss()
    total, terms = loss_fn(dict(out, sem_points=pts, point_coords=coords), target)
    total.backward()
    assert float(pts.grad[0, 0, on_ignored].abs().max()) == 0 and float(pts.grad[0, 0, ~on_ignored].abs().min()) > 0
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        pts[0, 0, ~on_ignored], torch.tensor([1.0, 1.0, 0.0, 0.0])
    )
    assert terms["pointrend_ce"] == pytest.approx(want.item(), rel=1e-5)
    # nothing labelled: every term is 0, nothing is NaN
    empty = dict(target, sem=torch.full_like(sem, IGNORE_LABEL))
    total, terms = loss_fn(dict(out, sem_points=pts, point_coords=coords), empty)
    assert total.item() == 0 and all(v == 0 for v in terms.values())


def test_no_centre_for_an_object_touching_the_unlabelled_region():
    m = np.zeros((64, 64), np.int64)
    m[8:20, 8:20] = 1  # whole object, far from the unlabelled region
    m[40:52, 20:34] = 2  # cut: its right edge touches the unlabelled band
    m[:, 34:40] = IGNORE_LABEL
    sigma = 3
    t = panoptic_targets(m, sigma=sigma)
    assert t["sem"][45, 36] == IGNORE_LABEL and t["sem"][45, 25] == 1 and t["sem"][5, 60] == 0
    # object 1: centre peak 1 at its middle, offsets pointing at it, heatmap target known around it
    assert t["ctr_hmp"][0, 13:15, 13:15].max() == pytest.approx(1.0) and t["thing"][m == 1].all()
    assert t["ctr_valid"][8:20, 8:20].all()
    # object 2: no centre anywhere on it, no offsets, heatmap target unknown on it
    assert t["ctr_hmp"][0][m == 2].max() < 1e-3
    assert not t["thing"][m == 2].any() and not t["ctr_valid"][m == 2].any()
    # background next to the unlabelled band: semantic target kept, heatmap unknown within 2 sigma
    assert (t["sem"][:, 30:34][m[:, 30:34] == 0] == 0).all()
    assert not t["ctr_valid"][0:5, 34 - 2 * sigma : 34].any() and t["ctr_valid"][0:5, 34 - 2 * sigma - 2].all()
    # without unlabelled pixels the targets are the dense ones
    dense = panoptic_targets(np.where(m == IGNORE_LABEL, 0, m), sigma=sigma)
    assert dense["ctr_valid"].all() and dense["thing"][m == 2].all()


def test_augmentation_keeps_the_unlabelled_value_exact(rng):
    img = rng.random((80, 90)).astype(np.float32)
    msk = np.zeros((80, 90), np.int64)
    msk[10:40, 10:40] = 7
    msk[50:70, :] = IGNORE_LABEL
    for seed in range(6):
        _, m = random_patch(img, msk, 64, np.random.default_rng(seed))
        assert set(np.unique(m).tolist()) <= {IGNORE_LABEL, 0, 7}
    # beyond the image (padding of a small image) the mask is unlabelled, not background
    _, m = random_patch(img[:20, :20], msk[:20, :20], 48, np.random.default_rng(0))
    assert (m == IGNORE_LABEL).mean() > 0.5 and (m == 7).any()
    # a crop drawn around a pixel shows that pixel at its centre, whatever the rotation and scale
    for seed in range(4):
        _, m = random_patch(img, msk, 32, np.random.default_rng(seed), center=(12, 37))
        assert m[16, 16] == 7
    # compact masks (uint8 without unlabelled pixels, int8 with them) keep their ids, 255 included
    _, m = random_patch(img, np.where(msk < 0, 255, msk).astype(np.uint8), 64, np.random.default_rng(1))
    assert set(np.unique(m).tolist()) <= {IGNORE_LABEL, 0, 7, 255}
    _, m = random_patch(img, msk.astype(np.int8), 64, np.random.default_rng(1))
    assert set(np.unique(m).tolist()) <= {IGNORE_LABEL, 0, 7}


def test_sampling_never_yields_an_unlabelled_patch(tmp_path):
    img = (np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8)
    sparse = np.full((128, 128), 255, np.uint8)
    sparse[100:116, 100:116] = 0  # a small labelled corner: most random crops hold nothing labelled
    sparse[104:110, 104:110] = 1
    _write(tmp_path / "v" / "images" / "a.tif", img)
    _write(tmp_path / "v" / "masks" / "a.tif", sparse)
    _write(tmp_path / "v" / "images" / "b.tif", img)
    _write(tmp_path / "v" / "masks" / "b.tif", np.full((128, 128), 255, np.uint8))  # nothing labelled
    with pytest.warns(UserWarning, match="left out 1 mask"):
        ds = PanopticDataset(find_pairs(tmp_path), patch_size=32, batch_size=8, iterations=12, seed=1)
    assert len(ds.masks) == 1
    for i in range(len(ds)):
        b = ds[i]
        labelled = (b["sem"] != IGNORE_LABEL).flatten(1).any(1)
        assert labelled.all(), f"batch {i} holds a patch with nothing labelled"
        assert set(torch.unique(b["sem"]).tolist()) <= {IGNORE_LABEL, 0, 1}


def test_binary_0_255_masks_train_as_objects(tmp_path):
    img = np.zeros((32, 32), np.uint8)
    binary255 = np.zeros((32, 32), np.uint8)
    binary255[4:12, 4:12] = 255  # objects marked 255 (a common export): nothing else is labelled
    _write(tmp_path / "v" / "images" / "a.tif", img)
    _write(tmp_path / "v" / "masks" / "a.tif", binary255)
    with pytest.warns(UserWarning, match="read as binary masks"):
        ds = PanopticDataset(find_pairs(tmp_path), patch_size=32, batch_size=1, iterations=1)
    assert not ds.ignore_unlabelled and ds.masks[0].max() == 255 and not (ds.masks[0] == IGNORE_LABEL).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = PanopticDataset(find_pairs(tmp_path), patch_size=32, batch_size=1, iterations=1, ignore_unlabelled=False)
    assert ds.masks[0].max() == 255


def test_save_patches_round_trips_the_unlabelled_value(tmp_path):
    vol = np.random.default_rng(0).integers(0, 255, (2, 40, 40), dtype=np.uint8)
    lab = np.zeros((2, 40, 40), np.uint32)  # as a Viewer layer
    lab[0, 5:15, 5:15] = 3
    lab[0, 20:30, :] = ignore_value(np.uint32)
    pick = P.make_pick("xy", 0, 20, 20, 32, vol.shape)
    res = P.save_patches(vol, [pick], tmp_path, "sparse", labels=lab)
    fn = res["written"][0]
    saved = tifffile.imread(tmp_path / "sparse" / "masks" / fn)
    _, _, r0, r1, c0, c1 = P.pick_box(pick, vol.shape)
    want = lab[0, r0:r1, c0:c1]
    assert saved.dtype == np.uint32 and np.array_equal(saved, want) and (saved == 2**32 - 1).any()
    res8 = P.save_patches(vol, [pick], tmp_path, "sparse8", labels=lab, mask_dtype=np.uint8)
    saved8 = tifffile.imread(tmp_path / "sparse8" / "masks" / res8["written"][0])
    assert saved8.dtype == np.uint8 and np.array_equal(saved8 == 255, want == 2**32 - 1)
    assert np.array_equal(saved8[want != 2**32 - 1], want[want != 2**32 - 1])
    # training reads both back as the same unlabelled pixels
    for name in ("sparse", "sparse8"):
        _, m = load_pair(find_pairs(tmp_path / name)[0])
        assert np.array_equal(m == IGNORE_LABEL, want == 2**32 - 1)


def test_training_and_validation_run_on_sparse_masks(tmp_path):
    enb.make_synthetic_dataset(tmp_path / "data", n_images=3, size=64)
    for f in (tmp_path / "data").rglob("masks/*.tif"):
        m = tifffile.imread(f).astype(np.uint16)
        m[:, 40:] = ignore_value(np.uint16)
        tifffile.imwrite(f, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(
            tmp_path / "data",
            out=tmp_path / "m.pth",
            encoder="resnet18",
            pretrained=None,
            iterations=1,
            batch_size=2,
            patch_size=64,
            val_fraction=0.34,
            val_interval=1,
            device="cpu",
        ).wait()
    assert [e["type"] for e in h.history if e["type"] == "validation"] and all(
        np.isfinite(e["loss"]) for e in h.history if e["type"] == "step"
    )


def test_viewer_paints_unlabelled_with_the_layer_dtype_value():
    from empanada_nb import Viewer

    lab8 = np.zeros((1, 32, 32), np.uint8)
    v = Viewer(np.zeros((1, 32, 32), np.uint8), labels={"a": np.zeros((1, 32, 32), np.uint32), "b": lab8})
    assert v.paint([[10, 2], [10, 30]], size=3, unlabelled=True, layer="a")
    a = v.layer("a").data
    assert int(a[0, 10, 15]) == 2**32 - 1 and set(np.unique(a).tolist()) == {0, 2**32 - 1}
    assert v.paint([[20, 2], [20, 30]], size=3, unlabelled=True, layer="b") and lab8[0, 20, 15] == 255
    assert v.new_label() == 1  # the unlabelled value is no label id
    assert label_color(2**32 - 1, unlabelled=2**32 - 1) == UNLABELLED_COLOR != label_color(2**32 - 1)
    assert v.undo() and lab8.max() == 0


def test_label_counts_leave_out_the_unlabelled_value():
    lab = np.zeros((8, 8), np.uint16)
    lab[1:3, 1:3], lab[5:7, 5:7], lab[0, :] = 4, 9, ignore_value(np.uint16)
    assert enb.count_labels(lab) == {1: 2}
