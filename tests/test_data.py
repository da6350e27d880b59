import numpy as np
import pytest
import tifffile
import torch

import empanada_nb as enb
from empanada_nb.data import (
    AugmentConfig,
    PanopticDataset,
    find_pairs,
    group_weights,
    instance_centers,
    intensity_range,
    normalize_image,
    panoptic_targets,
    random_patch,
)


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr)


def _layout(root, names, sub="vol1"):
    for n in names:
        _write(root / sub / "images" / n, np.zeros((32, 32), np.uint8))
        _write(root / sub / "masks" / n, np.zeros((32, 32), np.uint16))


def test_pairs_by_name_not_order(tmp_path):
    _layout(tmp_path, ["b.tif", "a.tif", "c.tiff"])
    # a nested group at a deeper level is found too
    _layout(tmp_path, ["x.tif"], sub="deep/er/vol2")
    pairs = find_pairs(tmp_path)
    assert [(p.image.name, p.mask.name) for p in pairs if p.group == "vol1"] == [
        ("a.tif", "a.tif"),
        ("b.tif", "b.tif"),
        ("c.tiff", "c.tiff"),
    ]
    assert {p.group for p in pairs} == {"vol1", "deep/er/vol2"}
    assert all(p.image.parent.parent == p.mask.parent.parent for p in pairs)


def test_unpaired_files_are_all_listed_in_one_error(tmp_path):
    _layout(tmp_path, ["a.tif", "b.tif"])
    _write(tmp_path / "vol1" / "images" / "only_image.tif", np.zeros((4, 4), np.uint8))
    _write(tmp_path / "vol1" / "masks" / "only_mask.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError) as e:
        find_pairs(tmp_path)
    assert "only_image.tif" in str(e.value) and "only_mask.tif" in str(e.value) and "2 problem" in str(e.value)


def test_stray_files_ignored_with_warning(tmp_path):
    _layout(tmp_path, ["a.tif"])
    (tmp_path / "vol1" / "images" / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "vol1" / "masks" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "vol1" / "images" / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match="notes.txt"):
        pairs = find_pairs(tmp_path)
    assert len(pairs) == 1


def test_empty_or_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_pairs(tmp_path / "nope")
    with pytest.raises(ValueError, match="images"):
        find_pairs(tmp_path)


def test_group_weights_follow_inverse_count_power(tmp_path):
    _layout(tmp_path, [f"{i}.tif" for i in range(4)], sub="big")
    _layout(tmp_path, ["0.tif"], sub="small")
    pairs = find_pairs(tmp_path)
    w = group_weights(pairs, gamma=1.0)
    assert np.isclose(sum(w[i] for i, p in enumerate(pairs) if p.group == "big"), 0.5)
    w0 = group_weights(pairs, gamma=0.0)
    assert np.allclose(w0, 0.2)


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255), (np.uint16, 4000), (np.int32, 100000), (np.float32, 1.0)])
def test_normalize_every_dtype_keeps_contrast(dtype, scale, rng):
    base = rng.random((64, 64))
    img = (base * scale).astype(dtype)
    x = normalize_image(img, {"mean": 0.0, "std": 1.0})
    assert x.dtype == np.float32
    # not zeroed (empanada's int32 bug) and monotone with the input
    assert x.std() > 0.2
    assert np.corrcoef(x.ravel(), base.ravel())[0, 1] > 0.99


def test_intensity_range_uint8_is_full_range():
    assert intensity_range(np.array([[3, 7]], np.uint8)) == (0.0, 255.0)


def test_targets_centers_inside_curved_objects():
    m = np.zeros((64, 64), np.int32)
    m[10:50, 10:20] = 4  # U shape: its centroid falls in the hole
    m[40:50, 10:50] = 4
    m[10:50, 40:50] = 4
    ids, c = instance_centers(m)
    assert ids.tolist() == [4] and m[c[0, 0], c[0, 1]] == 4
    t = panoptic_targets(m, sigma=3)
    # every thing pixel's offset points at the center, which is inside the object
    yy, xx = np.nonzero(m)
    assert np.all(yy + t["offsets"][0][m > 0] == c[0, 0]) and np.all(xx + t["offsets"][1][m > 0] == c[0, 1])
    assert t["ctr_hmp"][0, c[0, 0], c[0, 1]] == pytest.approx(1.0)
    assert np.all(t["offsets"][:, m == 0] == 0)


def test_targets_heatmap_peaks_per_instance_and_sigma():
    m = np.zeros((80, 80), np.int32)
    m[5:15, 5:15] = 1
    m[50:70, 50:70] = 2
    t = panoptic_targets(m, sigma=4)
    h = t["ctr_hmp"][0]
    _, c = instance_centers(m)
    assert np.abs(c - [[9.5, 9.5], [59.5, 59.5]]).max() <= 0.5  # a pixel at the centroid of a square
    assert h[c[:, 0], c[:, 1]] == pytest.approx([1.0, 1.0])
    assert h[c[0, 0], c[0, 1] + 4] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma away
    assert t["sem"].max() == 1 and t["thing"].sum() == 500


def test_panoptic_masks_with_stuff_classes():
    m = np.zeros((40, 40), np.int32)
    m[:10] = 1001  # stuff class 1
    m[20:30, 20:30] = 2003  # thing class 2
    t = panoptic_targets(m, label_divisor=1000, thing_list=[2], num_classes=2)
    assert set(np.unique(t["sem"])) == {0, 1, 2}
    peaks = np.argwhere(t["ctr_hmp"][0] == 1.0)
    assert t["thing"].sum() == 100 and len(peaks) == 1 and m[tuple(peaks[0])] == 2003  # no center for stuff
    with pytest.raises(ValueError, match="beyond num_classes"):
        panoptic_targets(m, label_divisor=1000, thing_list=[2], num_classes=1)


def test_augmentation_is_deterministic_and_geometric(rng):
    img = rng.random((100, 90)).astype(np.float32)
    msk = np.zeros((100, 90), np.int64)
    msk[30:60, 20:50] = 7
    a1, m1 = random_patch(img, msk, 64, np.random.default_rng(5))
    a2, m2 = random_patch(img, msk, 64, np.random.default_rng(5))
    assert np.array_equal(a1, a2) and np.array_equal(m1, m2)
    assert set(np.unique(m1)) <= {0, 7}
    # geometry only (no photometric jitter): the object's image pixels come along with its mask pixels
    plain = AugmentConfig(brightness=0, contrast=0)
    img2 = np.where(msk > 0, 1.0, 0.0).astype(np.float32)
    a, m = random_patch(img2, msk, 48, np.random.default_rng(1), plain)
    inner = (m == 7) & (np.abs(np.gradient(a)[0]) + np.abs(np.gradient(a)[1]) == 0)
    assert a[inner].min() > 0.99
    # small images are padded up to the patch size
    a, m = random_patch(img[:20, :20], msk[:20, :20], 64, np.random.default_rng(0))
    assert a.shape == (64, 64) and m.shape == (64, 64)


def test_dataset_batches_reproducible_by_iteration(tmp_path):
    enb.make_synthetic_dataset(tmp_path, n_images=3, size=96)
    ds = PanopticDataset(find_pairs(tmp_path), patch_size=64, batch_size=4, iterations=10, seed=3)
    b1, b2, b3 = ds[2], ds[2], ds[3]
    assert torch.equal(b1["image"], b2["image"]) and not torch.equal(b1["image"], b3["image"])
    assert b1["image"].shape == (4, 1, 64, 64) and b1["offsets"].shape == (4, 2, 64, 64)
    assert b1["sem"].dtype == torch.int64 and b1["thing"].dtype == torch.bool


def test_binary_masks_warn_unless_connected_components(tmp_path):
    img = np.zeros((64, 64), np.uint8)
    msk = np.zeros((64, 64), np.uint8)
    msk[5:15, 5:15] = 1
    msk[40:50, 40:50] = 1
    _write(tmp_path / "v" / "images" / "a.tif", img)
    _write(tmp_path / "v" / "masks" / "a.tif", msk)
    with pytest.warns(UserWarning, match="connected_components=True"):
        PanopticDataset(find_pairs(tmp_path), patch_size=64, batch_size=1, iterations=1)
    ds = PanopticDataset(find_pairs(tmp_path), patch_size=64, batch_size=1, iterations=1, connected_components=True)
    assert ds.masks[0].max() == 2


def test_bad_images_get_clear_errors(tmp_path):
    _write(tmp_path / "v" / "images" / "rgb.tif", np.zeros((16, 16, 3), np.uint8))
    _write(tmp_path / "v" / "masks" / "rgb.tif", np.zeros((16, 16), np.uint8))
    _write(tmp_path / "w" / "images" / "shape.tif", np.zeros((16, 16), np.uint8))
    _write(tmp_path / "w" / "masks" / "shape.tif", np.zeros((8, 16), np.uint8))
    (tmp_path / "x" / "images").mkdir(parents=True)
    (tmp_path / "x" / "masks").mkdir(parents=True)
    (tmp_path / "x" / "images" / "fake.tif").write_text("not a tiff")
    (tmp_path / "x" / "masks" / "fake.tif").write_text("not a tiff")
    for sub, msg in [("v", "channel axis"), ("w", "does not match"), ("x", "not a readable TIFF")]:
        with pytest.raises(ValueError, match=msg):
            PanopticDataset(find_pairs(tmp_path / sub), patch_size=16, batch_size=1, iterations=1)


def test_synthetic_data_has_labelled_organelles():
    img, lab = enb.synthetic_image(128, n_objects=5, seed=1)
    assert img.dtype == np.uint8 and lab.max() == 5
    # organelles are darker than the cytoplasm around them
    assert img[lab > 0].mean() < img[lab == 0].mean() - 20
