"""Points files, flipbooks and multiscale levels of empanada_nb.patches, and their Viewer wrappers."""

import numpy as np
import pytest
import tifffile

from empanada_nb import patches as P
from empanada_nb.widgets import Viewer


def test_points_file_round_trip(tmp_path):
    shape = (10, 64, 80)
    picks = [P.make_pick("xy", 3, 20, 30, 16, shape), P.make_pick("yz", 40, 5, 33, 8, shape)]
    path = P.save_points(picks, tmp_path / "pts.csv")
    assert path.read_text().splitlines()[1:] == ["xy,3,20,30,16", "yz,40,5,33,8"]
    assert P.load_points(path, shape) == picks
    with pytest.raises(FileExistsError, match="overwrite"):
        P.save_points(picks, path)
    # without a size column the default applies; centres are clamped inside the volume
    (tmp_path / "nosize.csv").write_text("axis,index,row,col\nxy,99,0,0\n")
    assert P.load_points(tmp_path / "nosize.csv", shape, size=16) == [
        {"axis": "xy", "z": 9, "y": 8, "x": 8, "size": 16}
    ]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="unknown columns"):
        P.load_points(tmp_path / "bad.csv", shape)


def test_napari_points_csv_2d_and_3d(tmp_path):
    (tmp_path / "n3.csv").write_text("index,axis-0,axis-1,axis-2\n0,4.0,30.2,41.7\n1,1,60,70\n")
    picks = P.load_points(tmp_path / "n3.csv", (10, 64, 80), size=8)
    assert [(p["z"], p["y"], p["x"]) for p in picks] == [(4, 30, 41), (1, 60, 70)]
    (tmp_path / "n2.csv").write_text("index,axis-0,axis-1\n0,30,40\n")
    assert P.load_points(tmp_path / "n2.csv", (64, 80), size=8, scale=2) == [
        {"axis": "xy", "z": 0, "y": 15, "x": 20, "size": 8}
    ]


def test_flipbooks(tmp_path):
    vol = np.arange(12 * 16 * 16, dtype=np.uint16).reshape(12, 16, 16)
    pick = P.make_pick("xy", 11, 8, 8, 8, vol.shape)
    assert P.flipbook_range(pick, vol.shape) == (7, 12)  # clamped at the last slice
    fb = P.crop_flipbook(vol, pick)
    assert fb.shape == (5, 8, 8) and np.array_equal(fb, vol[7:12, 4:12, 4:12])
    side = P.make_pick("xz", 8, 6, 8, 4, vol.shape)  # slices along y
    assert np.array_equal(P.crop_flipbook(vol, side, depth=3), vol[4:8, 7:10, 6:10].transpose(1, 0, 2))
    res = P.save_flipbooks(vol, [pick, side], tmp_path, "ds", depth=3)
    assert len(res["written"]) == 2
    saved = tifffile.imread(tmp_path / "ds" / "flipbooks" / P.patch_filename("ds", pick))
    assert np.array_equal(saved, vol[9:12, 4:12, 4:12])
    assert P.save_flipbooks(vol, [pick], tmp_path, "ds", depth=3)["skipped"] == [P.patch_filename("ds", pick)]
    with pytest.raises(ValueError, match="3D"):
        P.save_flipbooks(vol[0], [pick], tmp_path, "ds")


def test_pyramid_levels_zarr_group(tmp_path):
    zarr = pytest.importorskip("zarr")
    g = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    base = np.arange(4 * 32 * 32, dtype=np.uint8).reshape(4, 32, 32)
    create = getattr(g, "create_array", None) or g.create_dataset  # zarr 3, zarr 2
    create("s0", data=base)
    create("s1", data=base[:, ::2, ::2])
    g.attrs["multiscales"] = [{"datasets": [{"path": "s0"}, {"path": "s1"}]}]
    arr, scale = P.pyramid_level(str(tmp_path / "img.zarr"), 1)
    assert arr.shape == (4, 16, 16) and scale == (1.0, 2.0, 2.0)
    with pytest.raises(IndexError, match="2 level"):
        P.pyramid_level(g, 2)


def test_viewer_multiscale_points_and_flipbooks(tmp_path):
    base = (np.arange(6 * 64 * 64) % 251).astype(np.uint8).reshape(6, 64, 64)
    v = Viewer([base, base[:, ::2, ::2]], level=1, patch_size=8)
    assert v.shape == [6, 32, 32] and v.n_levels == 2 and v.level == 1 and v.pyramid_scale == (1.0, 2.0, 2.0)
    (tmp_path / "full.csv").write_text("index,axis-0,axis-1,axis-2\n0,2,40,20\n")
    assert v.load_points(tmp_path / "full.csv", full_resolution=True)[0] == {
        "axis": "xy",
        "z": 2,
        "y": 20,
        "x": 10,
        "size": 8,
    }
    v.save_points(tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == "xy,2,20,10,8"
    v.flipbook = 3
    res = v.save_patches(tmp_path / "ds", name="lv1")
    fb = tifffile.imread(tmp_path / "ds" / "lv1" / "flipbooks" / res["flipbooks"][0])
    assert np.array_equal(fb, base[1:4, 32:48:2, 12:28:2])  # the patch of level 1, on slices 1..3
    # a list of equal shapes without a level stays a stack of slices
    assert Viewer([base[0], base[1]]).shape == [2, 64, 64]
