"""empanada_nb.patches: picks, regions, random patches and writing a training dataset."""

import json

import numpy as np
import pytest
import tifffile

from empanada_nb import patches as P


def test_make_pick_clamps_inside_volume():
    shape = (10, 100, 200)
    p = P.make_pick("xy", 3, 5.7, 190.2, 64, shape)
    assert p == {"axis": "xy", "z": 3, "y": 32, "x": 168, "size": 64}
    assert P.pick_box(p, shape) == ("xy", 3, 0, 64, 136, 200)
    p = P.make_pick("xz", 50, 2, 100, 64, shape)  # z extent 10 < 64: whole extent, centre in the middle
    assert (p["y"], p["z"], p["x"]) == (50, 5, 100)
    assert P.pick_box(p, shape) == ("xz", 50, 0, 10, 68, 132)
    with pytest.raises(IndexError):
        P.make_pick("yz", 200, 0, 0, 8, shape)
    with pytest.raises(ValueError):
        P.make_pick("zz", 0, 0, 0, 8, shape)


@pytest.mark.parametrize("axis", ["xy", "xz", "yz"])
def test_crop_pick_along_each_axis(axis, rng):
    vol = rng.integers(0, 1000, size=(40, 50, 60)).astype(np.uint16)
    p = P.make_pick(axis, 7, 20, 25, 16, vol.shape)
    crop = P.crop_pick(vol, p)
    assert crop.shape == (16, 16) and crop.dtype == np.uint16
    axis_, index, r0, r1, c0, c1 = P.pick_box(p, vol.shape)
    expected = {"xy": vol[index, r0:r1, c0:c1], "xz": vol[r0:r1, index, c0:c1], "yz": vol[r0:r1, c0:c1, index]}[axis]
    np.testing.assert_array_equal(crop, expected)
    assert (p["z"], p["y"], p["x"])[{"xy": 0, "xz": 1, "yz": 2}[axis]] == 7


def test_crop_pick_2d():
    img = np.arange(100 * 80).reshape(100, 80)
    p = P.make_pick("xy", 0, 50, 40, 20, img.shape)
    assert p["z"] == 0
    np.testing.assert_array_equal(P.crop_pick(img, p), img[40:60, 30:50])


def test_patch_filename_encodes_location():
    p = {"axis": "xz", "z": 12, "y": 340, "x": 560, "size": 256}
    assert P.patch_filename("mito", p) == "mito_xz_z0012_y0340_x0560_s256.tif"


def test_region_masks_use_pixel_centres():
    rect = {"name": "r", "axis": "xy", "slice": 0, "shape": "rectangle", "points": [[2, 3], [6, 8]]}
    m = P.region_plane_mask(rect, (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[2:6, 3:8] = True
    np.testing.assert_array_equal(m, expected)
    # corners given in any order
    rect2 = dict(rect, points=[[6, 3], [2, 8]])
    np.testing.assert_array_equal(P.region_plane_mask(rect2, (10, 10)), expected)
    tri = {"shape": "polygon", "points": [[0, 0], [0, 10], [10, 0]]}
    t = P.region_plane_mask(tri, (10, 10))
    assert t[0, 0] and t[2, 2] and not t[9, 9]
    assert 40 <= t.sum() <= 60
    with pytest.raises(ValueError):
        P.region_plane_mask({"shape": "polygon", "points": [[0, 0], [1, 1]]}, (4, 4))
    with pytest.raises(ValueError):
        P.region_plane_mask({"shape": "circle", "points": [[0, 0], [1, 1], [2, 2]]}, (4, 4))


def test_regions_mask_volume_and_all_slices():
    shape = (5, 20, 30)
    a = {"axis": "xy", "slice": 2, "shape": "rectangle", "points": [[0, 0], [10, 10]]}
    b = {"axis": "yz", "slice": 25, "shape": "rectangle", "points": [[1, 5], [3, 15]]}
    c = {"axis": "xz", "slice": 0, "shape": "rectangle", "points": [[0, 26], [5, 30]], "all_slices": True}
    m = P.regions_mask([a, b, c], shape)
    assert m.shape == shape and m.dtype == bool
    assert m[2, :10, :10].all() and not m[1, :10, :10].any()
    assert m[1:3, 5:15, 25].all() and not m[0, 5:15, 25].any()
    assert m[:, :, 26:30].all() and not m[:, :, 20:25].any()  # through every y
    # slice_roi of a region drawn on another axis is the band it cuts
    roi = P.slice_roi([b], shape, "xy", 1)
    assert roi.shape == (20, 30) and roi[5:15, 25].all() and roi.sum() == 10
    assert P.regions_mask([], (20, 30)).shape == (20, 30)
    m2 = P.regions_mask([dict(a, slice=0)], (20, 30))  # 2D image
    assert m2.shape == (20, 30) and m2[:10, :10].all()


def test_random_patches_spread_evenly_and_inside(rng):
    shape = (8, 300, 300)
    r1 = {"name": "a", "axis": "xy", "slice": 1, "shape": "rectangle", "points": [[0, 0], [150, 150]]}
    r2 = {"name": "b", "axis": "xy", "slice": 5, "shape": "rectangle", "points": [[100, 100], [300, 300]]}
    picks = P.random_patches([r1, r2], shape, 7, 32, rng=0, max_overlap=1.0)
    assert len(picks) == 7
    assert sum(p["z"] == 1 for p in picks) == 4 and sum(p["z"] == 5 for p in picks) == 3
    for p in picks:
        axis, index, r0, r1_, c0, c1 = P.pick_box(p, shape)
        assert r1_ - r0 == 32 and c1 - c0 == 32
        if p["z"] == 1:
            assert r1_ <= 150 and c1 <= 150
        else:
            assert r0 >= 100 and c0 >= 100
    assert P.random_patches([r1, r2], shape, 7, 32, rng=0, max_overlap=1.0) == picks  # deterministic
    # overlap control: a region that fits only one patch gets one
    small = {"axis": "xy", "slice": 0, "shape": "rectangle", "points": [[0, 0], [32, 32]]}
    assert len(P.random_patches([small], shape, 5, 32, rng=1)) == 1
    assert len(P.random_patches([small], shape, 5, 32, rng=1, existing=[P.make_pick("xy", 0, 16, 16, 32, shape)])) == 0
    # all_slices regions spread over slices
    through = dict(r1, all_slices=True)
    zs = {p["z"] for p in P.random_patches([through], shape, 6, 16, rng=2)}
    assert len(zs) > 1
    assert P.random_patches([], shape, 5, 16) == []


def _dataset(tmp_path, rng):
    vol = rng.integers(0, 65535, size=(6, 64, 80)).astype(np.uint16)
    lab = np.zeros(vol.shape, np.uint32)
    lab[2, 10:20, 10:30] = 4
    picks = [P.make_pick("xy", 2, 16, 20, 32, vol.shape), P.make_pick("xz", 40, 3, 50, 32, vol.shape)]
    return vol, lab, picks


def test_save_patches_layout_and_append(tmp_path, rng):
    vol, lab, picks = _dataset(tmp_path, rng)
    res = P.save_patches(vol, picks, tmp_path, "mito", labels=lab)
    root = tmp_path / "mito"
    names = sorted(p.name for p in (root / "images").iterdir())
    assert names == sorted(p.name for p in (root / "masks").iterdir()) == sorted(res["written"])
    assert res["skipped"] == []
    assert names[0].startswith("mito_x") and names[0].endswith("_s32.tif")
    img0 = tifffile.imread(root / "images" / P.patch_filename("mito", picks[0]))
    np.testing.assert_array_equal(img0, P.crop_pick(vol, picks[0]))  # raw values, raw dtype
    assert img0.dtype == np.uint16
    m0 = tifffile.imread(root / "masks" / P.patch_filename("mito", picks[0]))
    assert m0.shape == (32, 32) and (m0 == 4).sum() == 200
    meta = json.loads((root / "mito_picks.json").read_text())
    assert [p["file"] for p in meta["picks"]] == res["written"]
    assert meta["picks"][0]["mask_source"] == "labels" and meta["picks"][1]["mask_source"] == "empty"
    assert not list(root.rglob("*.tmp"))
    # appending: clashes are skipped (with a warning), new picks are added, the sidecar grows
    new = P.make_pick("xy", 4, 40, 40, 32, vol.shape)
    with pytest.warns(UserWarning, match="skipped 2"):
        res2 = P.save_patches(vol, picks + [new], tmp_path, "mito", labels=lab)
    assert res2["written"] == [P.patch_filename("mito", new)] and len(res2["skipped"]) == 2
    assert len(json.loads((root / "mito_picks.json").read_text())["picks"]) == 3
    # refusing clashes writes nothing
    newer = P.make_pick("xy", 5, 40, 40, 32, vol.shape)
    with pytest.raises(FileExistsError):
        P.save_patches(vol, [newer] + picks, tmp_path, "mito", labels=lab, on_clash="error")
    assert not (root / "images" / P.patch_filename("mito", newer)).exists()
    with pytest.raises(ValueError):
        P.save_patches(vol, picks, tmp_path, "../evil", labels=lab)


def test_save_patches_uses_model_for_unlabelled(tmp_path, rng, monkeypatch):
    vol, lab, picks = _dataset(tmp_path, rng)
    calls = []

    def fake_segment(model, image, **kw):
        calls.append((model, image.shape))
        return np.full(image.shape, 9, np.int32)

    import empanada_nb.inference as inf

    monkeypatch.setattr(inf, "segment_image", fake_segment)
    res = P.save_patches(vol, picks, tmp_path, "m", labels=lab, model="MODEL")
    assert calls == [("MODEL", (6, 32))]  # only the unlabelled patch (the xz patch of a 6-slice volume)
    m1 = tifffile.imread(tmp_path / "m" / "masks" / res["written"][1])
    assert (m1 == 9).all()
    meta = json.loads((tmp_path / "m" / "m_picks.json").read_text())
    assert meta["picks"][1]["mask_source"] == "model"
