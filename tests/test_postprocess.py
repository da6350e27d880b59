import numpy as np
import pytest
import torch

from empanada_nb.postprocess import (
    fill_instance_holes,
    find_centers,
    harden_semantic,
    panoptic_postprocess,
    panoptic_postprocess_batch,
    split_fragments,
)


def synthetic_outputs(shape, disks, classes=None, sigma=4.0, n_classes=1):
    """Model outputs for disks ((cy, cx, r), ...): exact offsets, Gaussian center peaks of height 1.

    Later disks paint over earlier ones where they overlap, so touching disks stay separable.
    With n_classes > 1 the logits are (n_classes + 1) channels, disk k voting for classes[k].
    """
    H, W = shape
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    owner = np.full(shape, -1)
    hmp = np.zeros(shape, np.float32)
    for k, (cy, cx, r) in enumerate(disks):
        owner[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
        hmp = np.maximum(hmp, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)))
    ctr = np.array([(cy, cx) for cy, cx, _ in disks], np.float32).reshape(-1, 2)
    fg = owner >= 0
    off = np.zeros((2, H, W), np.float32)
    off[0][fg] = ctr[owner[fg], 0] - yy[fg]
    off[1][fg] = ctr[owner[fg], 1] - xx[fg]
    if n_classes == 1:
        sem = np.where(fg, 10.0, -10.0).astype(np.float32)[None]
    else:
        sem = np.full((n_classes + 1, H, W), -10.0, np.float32)
        sem[0] = 10.0
        sem[0][fg] = -10.0
        for k, c in enumerate(classes):
            sem[c][owner == k] = 10.0
    return torch.from_numpy(sem), torch.from_numpy(hmp[None]), torch.from_numpy(off), owner


def assert_same_partition(pan, owner):
    """Each object maps to one distinct panoptic id and background to 0."""
    pan = np.asarray(pan)
    assert (pan[owner < 0] == 0).all()
    ids = []
    for k in range(owner.max() + 1):
        vals = np.unique(pan[owner == k])
        assert vals.size == 1 and vals[0] != 0, f"object {k} got ids {vals}"
        ids.append(vals[0])
    assert len(set(ids)) == len(ids)


DISKS = [(20, 20, 9), (20, 60, 12), (64, 40, 15), (100, 100, 10), (90, 20, 8)]


@pytest.mark.parametrize("fine", [True, False])
def test_exact_recovery(fine):
    sem, hmp, off, owner = synthetic_outputs((128, 128), DISKS)
    pan = panoptic_postprocess(sem, hmp, off, fine_boundaries=fine).numpy()
    assert_same_partition(pan, owner)
    assert sorted(np.unique(pan[pan > 0])) == [1001, 1002, 1003, 1004, 1005]
    assert pan.dtype == np.int64


def test_batch_dim_and_numpy_inputs():
    sem, hmp, off, owner = synthetic_outputs((64, 64), [(20, 20, 8), (40, 44, 9)])
    a = panoptic_postprocess(sem[None], hmp[None], off[None], fine_boundaries=True)
    b = panoptic_postprocess(sem.numpy(), hmp.numpy(), off.numpy(), fine_boundaries=True)
    assert a.shape == (64, 64)
    assert torch.equal(a, b)
    assert_same_partition(a, owner)


def test_touching_objects_separated():
    # two disks overlapping: boundary lies where the offsets change target
    disks = [(32, 24, 14), (32, 46, 14)]
    sem, hmp, off, owner = synthetic_outputs((64, 72), disks)
    for fine in (True, False):
        pan = panoptic_postprocess(sem, hmp, off, fine_boundaries=fine).numpy()
        assert len(np.unique(pan[pan > 0])) == 2
        if fine:
            assert_same_partition(pan, owner)
        else:
            # coarse cells blur the boundary by at most one 4-pixel cell
            agree = max((pan[owner == 0] == v).mean() for v in np.unique(pan[pan > 0]))
            assert agree > 0.9


def test_fine_groups_exactly_at_boundary_coarse_close():
    disks = [(32, 24, 14), (32, 46, 14)]
    sem, hmp, off, owner = synthetic_outputs((64, 72), disks)
    fine = panoptic_postprocess(sem, hmp, off, fine_boundaries=True).numpy()
    coarse = panoptic_postprocess(sem, hmp, off, fine_boundaries=False).numpy()
    assert (fine > 0).sum() == (coarse > 0).sum()  # both ANDed with the same semantic mask
    # coarse may differ from fine only within a few pixels of the boundary column
    cols = np.nonzero(fine != coarse)[1]
    assert cols.size == 0 or (np.abs(cols - 32) <= 4).all()


def test_min_distance_merges_close_peaks():
    # two peaks 6 px apart: kernel 3 keeps both, kernel 15 keeps one
    sem, hmp, off, _ = synthetic_outputs((64, 64), [(32, 29, 3), (32, 35, 3)], sigma=1.5)
    hmp = hmp.clone()
    hmp[..., 33:] *= 0.8  # unequal peaks, so NMS has a single winner
    c3 = find_centers(hmp, 0.1, 3)
    c15 = find_centers(hmp, 0.1, 15)
    assert c3.tolist() == [[32, 29], [32, 35]]
    assert c15.shape[0] == 1
    n3 = len(np.unique(panoptic_postprocess(sem, hmp, off, fine_boundaries=True, min_distance=3))) - 1
    n15 = len(np.unique(panoptic_postprocess(sem, hmp, off, fine_boundaries=True, nms_kernel=15))) - 1
    assert (n3, n15) == (2, 1)


def test_find_centers_threshold_topk_even_kernel():
    h = torch.zeros(1, 16, 16)
    h[0, 3, 3], h[0, 10, 12], h[0, 12, 4] = 0.9, 0.5, 0.05
    assert find_centers(h, 0.1, 3).tolist() == [[3, 3], [10, 12]]
    assert find_centers(h, 0.1, 3, top_k=1).tolist() == [[3, 3]]
    assert find_centers(h, 0.01, 4).tolist() == [[3, 3], [10, 12], [12, 4]]
    assert find_centers(torch.zeros(8, 8), 0.1, 3).shape == (0, 2)


def test_stuff_area_filter():
    # class 1 thing, classes 2 and 3 stuff; class 3 too small
    H, W = 64, 64
    sem, hmp, off, owner = synthetic_outputs((H, W), [(20, 20, 8)], classes=[1], n_classes=3)
    sem = sem.clone()
    sem[0, 40:60, 40:60] = -10.0
    sem[2, 40:60, 40:60] = 10.0  # 400 px of class 2
    sem[0, 2:8, 50:56] = -10.0
    sem[3, 2:8, 50:56] = 10.0  # 36 px of class 3
    pan = panoptic_postprocess(sem, hmp, off, thing_list=(1,), stuff_area=64, fine_boundaries=True).numpy()
    assert set(np.unique(pan)) == {0, 1001, 2000}
    assert (pan[40:60, 40:60] == 2000).all()
    assert (pan[2:8, 50:56] == 0).all()
    pan = panoptic_postprocess(sem, hmp, off, thing_list=(1,), stuff_area=10, fine_boundaries=True).numpy()
    assert (pan[2:8, 50:56] == 3000).all()


def test_multiclass_majority_vote_and_numbering():
    disks = [(20, 20, 9), (20, 60, 9), (60, 40, 12)]
    sem, hmp, off, owner = synthetic_outputs((80, 80), disks, classes=[1, 2, 1], n_classes=2)
    sem = sem.clone()
    # a minority of object 2 (class 1) predicted as class 2: the instance still votes class 1
    band = (owner == 2) & (np.arange(80)[:, None] > 66)
    assert 0 < band.sum() < (owner == 2).sum() / 2
    sem[1][torch.from_numpy(band)] = -10.0
    sem[2][torch.from_numpy(band)] = 10.0
    pan = panoptic_postprocess(sem, hmp, off, thing_list=(1, 2), fine_boundaries=True).numpy()
    assert np.unique(pan[owner == 0]).tolist() == [1001]
    assert np.unique(pan[owner == 1]).tolist() == [2001]
    assert np.unique(pan[owner == 2]).tolist() == [1002]


def test_multiclass_seg_thr_on_foreground_probability():
    logits = torch.zeros(3, 1, 3)
    # p(bg) = 0.4, p(1) = 0.35, p(2) = 0.25 -> foreground prob 0.6
    p = torch.tensor([0.4, 0.35, 0.25]).log()
    logits[:, 0, 0] = p
    logits[:, 0, 1] = torch.tensor([0.9, 0.05, 0.05]).log()
    logits[:, 0, 2] = torch.tensor([0.1, 0.2, 0.7]).log()
    assert harden_semantic(logits, 0.5)[0].tolist() == [1, 0, 2]
    assert harden_semantic(logits, 0.7)[0].tolist() == [0, 0, 2]
    assert harden_semantic(torch.tensor([[[0.0, 1.0, -1.0]]]), 0.5)[0].tolist() == [1, 1, 0]


def test_semantic_only():
    sem, hmp, off, owner = synthetic_outputs((64, 64), [(20, 20, 8), (40, 44, 9)])
    pan = panoptic_postprocess(sem, hmp, off, semantic_only=True).numpy()
    assert set(np.unique(pan)) == {0, 1000}
    assert ((pan == 1000) == (owner >= 0)).all()


@pytest.mark.parametrize("fine", [True, False])
def test_empty_inputs_give_zeros(fine):
    z = torch.zeros
    pan = panoptic_postprocess(z(1, 32, 32) - 5, z(1, 32, 32), z(2, 32, 32), fine_boundaries=fine)
    assert pan.shape == (32, 32) and not pan.any()
    # foreground but no center above threshold -> void, like empanada
    pan = panoptic_postprocess(z(1, 32, 32) + 5, z(1, 32, 32), z(2, 32, 32), fine_boundaries=fine)
    assert not pan.any()


def test_odd_size_coarse():
    sem, hmp, off, owner = synthetic_outputs((61, 75), [(20, 20, 8), (40, 50, 12), (55, 70, 5)])
    pan = panoptic_postprocess(sem, hmp, off).numpy()
    assert pan.shape == (61, 75)
    assert_same_partition(pan, owner)


def test_batch():
    a = synthetic_outputs((48, 48), [(20, 20, 8)])
    b = synthetic_outputs((48, 48), [(10, 10, 5), (30, 30, 9)])
    out = panoptic_postprocess_batch(*(torch.stack([x, y]) for x, y in zip(a[:3], b[:3])), fine_boundaries=True)
    assert out.shape == (2, 48, 48)
    assert_same_partition(out[0], a[3])
    assert_same_partition(out[1], b[3])


def test_fill_holes():
    sem, hmp, off, owner = synthetic_outputs((64, 64), [(32, 32, 14)])
    sem = sem.clone()
    sem[0, 30:34, 30:34] = -10.0  # a hole in the middle of the object
    pan = panoptic_postprocess(sem, hmp, off, fine_boundaries=True).numpy()
    assert (pan[30:34, 30:34] == 0).all()
    pan = panoptic_postprocess(sem, hmp, off, fine_boundaries=True, fill_holes=True).numpy()
    assert (pan[30:34, 30:34] == 1001).all()
    assert (pan[owner < 0] == 0).all()


def test_fill_instance_holes_only_single_enclosing_label():
    lab = np.zeros((12, 20), np.int32)
    lab[1:8, 1:8] = 5
    lab[3:5, 3:5] = 0  # hole of 5
    lab[1:8, 10:14] = 6
    lab[1:8, 14:18] = 7
    lab[3:5, 13:15] = 0  # gap between 6 and 7: not a hole of one label
    lab[9:12, 2:6] = 8
    lab[10:12, 3:5] = 0  # touches the border: not a hole
    out = fill_instance_holes(lab)
    assert (out[3:5, 3:5] == 5).all()
    assert (out[3:5, 13:15] == 0).all()
    assert (out[10:12, 3:5] == 0).all()
    assert out.dtype == lab.dtype and (lab[3:5, 3:5] == 0).all()
    # 3D
    vol = np.zeros((5, 7, 7), np.uint16)
    vol[1:4, 1:6, 1:6] = 3
    vol[2, 3, 3] = 0
    assert fill_instance_holes(vol)[2, 3, 3] == 3


def test_split_fragments():
    lab = np.zeros((10, 12), np.int32)
    lab[1:3, 1:3] = 1001
    lab[6:9, 6:10] = 1001  # bigger piece keeps 1001
    lab[1:3, 8:10] = 1002
    lab[5:6, 0:2] = 2000  # stuff pieces stay whole
    lab[8:9, 0:2] = 2000
    out = split_fragments(lab, label_divisor=1000)
    assert out.dtype == np.int32
    assert (out[6:9, 6:10] == 1001).all()
    assert (out[1:3, 1:3] == 1003).all()
    assert (out[1:3, 8:10] == 1002).all()
    assert (out[5:6, 0:2] == 2000).all() and (out[8:9, 0:2] == 2000).all()
    # no divisor: new id above the maximum; touching different labels stay apart
    lab2 = np.zeros((6, 9), np.uint8)
    lab2[0:2, 0:2] = 3
    lab2[4:6, 4:6] = 3
    lab2[0:2, 2:4] = 4
    out2 = split_fragments(lab2)
    assert sorted(np.unique(out2).tolist()) == [0, 3, 4, 5]
    assert (out2[0:2, 2:4] == 4).all()
    # diagonal touch is connected by default (full connectivity, like empanada), not with connectivity=1
    d = np.zeros((4, 4), np.int64)
    d[0, 0] = d[1, 1] = 7
    assert len(np.unique(split_fragments(d))) == 2
    assert len(np.unique(split_fragments(d, connectivity=1))) == 3
    t = split_fragments(torch.from_numpy(lab))
    assert isinstance(t, torch.Tensor) and len(torch.unique(t)) == 6


def test_split_fragments_overflow_error():
    lab = np.zeros((4, 9), np.int64)
    lab[0, ::2] = 1009
    with pytest.raises(ValueError, match="label_divisor"):
        split_fragments(lab, label_divisor=10)


def test_bad_inputs():
    sem, hmp, off, _ = synthetic_outputs((32, 32), [(10, 10, 5)])
    with pytest.raises(ValueError, match="spatial sizes differ"):
        panoptic_postprocess(sem, hmp[:, :16], off)
    with pytest.raises(ValueError, match="2 channel"):
        panoptic_postprocess(sem, hmp, off[:1])
    with pytest.raises(ValueError, match="panoptic_postprocess_batch"):
        panoptic_postprocess(torch.stack([sem, sem]), hmp, off)
    with pytest.raises(ValueError, match="thing_list"):
        panoptic_postprocess(sem, hmp, off, thing_list=(2,))
    with pytest.raises(ValueError, match=">= 1"):
        panoptic_postprocess(sem, hmp, off, min_distance=0)


def _empanada_find_instance_center(ctr_hmp, threshold, nms_kernel):
    """empanada-dl 0.1.7 inference/postprocess.py::find_instance_center, for reference."""
    ctr_hmp = torch.nn.functional.threshold(ctr_hmp[None], threshold, -1.0)
    pooled = torch.nn.functional.max_pool2d(ctr_hmp, nms_kernel, stride=1, padding=nms_kernel // 2)
    if nms_kernel % 2 == 0:
        pooled = pooled[..., :-1, :-1]
    ctr_hmp[ctr_hmp != pooled] = -1.0
    return torch.nonzero(ctr_hmp.squeeze() > 0)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("thr", [0.05, 0.5, 0.8])
def test_find_centers_matches_empanada(k, thr):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(k)
    h = gaussian_filter(rng.random((64, 80)), 2).astype(np.float32)
    h = (h - h.min()) / (h.max() - h.min())
    h[10, 10:13] = 1.0  # a plateau: every tied pixel is kept, as in empanada
    h = torch.from_numpy(h)[None]
    ref = _empanada_find_instance_center(h.clone(), thr, k)
    assert find_centers(h, thr, k).tolist() == ref.tolist()
    assert ref.shape[0] > 0
