"""Create and merge tiles (empanada_nb.tiles): round trips, seams, edits, empanada-napari's layout."""

import json

import numpy as np
import pytest
import tifffile

from empanada_nb.data import synthetic_image
from empanada_nb.tiles import create_tiles, merge_tiles, read_tiles, tile_corners, write_tile_masks


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b label the same objects (ids may differ): a one-to-one map between ids."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return (pairs[0] > 0).sum() == len(np.unique(a[a > 0])) == (pairs[1] > 0).sum() == len(np.unique(b[b > 0]))


@pytest.fixture
def scene():
    img, lab = synthetic_image(300, n_objects=25, seed=3)
    return img[:, :260], lab[:, :260].astype(np.uint32)


def test_round_trip_joins_objects_across_seams(tmp_path, scene):
    img, lab = scene
    meta = create_tiles(img, tmp_path / "t", tile_size=128, overlap=32, labels=lab)
    assert meta["original_image_shape"] == [300, 260] and meta["mask_available"]
    assert len(meta["tiles"]) == len(tile_corners((300, 260), 128, 32)[0]) * 3
    assert np.array_equal(merge_tiles(tmp_path / "t", kind="im"), img)
    out = merge_tiles(tmp_path / "t", tmp_path / "merged.tif")
    assert out.shape == lab.shape and same_partition(out, lab)
    assert np.array_equal(tifffile.imread(tmp_path / "merged.tif"), out)
    # the plain paste keeps the ids as they are
    assert np.array_equal(merge_tiles(tmp_path / "t", relabel=False), lab)
    with pytest.raises(FileExistsError, match="already holds tiles"):
        create_tiles(img, tmp_path / "t", tile_size=128, overlap=32)
    with pytest.raises(ValueError, match="2D"):
        create_tiles(np.zeros((2, 8, 8)), tmp_path / "u")


def test_edited_tiles_are_stitched(tmp_path, scene):
    img, lab = scene
    create_tiles(img, tmp_path, tile_size=128, overlap=32)  # no labels yet: label the tiles
    stack, names = read_tiles(tmp_path)
    assert stack.shape == (9, 128, 128) and names[0] == "0_0.tif"
    masks = np.zeros(stack.shape, np.uint16)
    masks[0, 10:20, 10:20] = 3  # tile 0_0 owns this box
    masks[4, 40:60, 40:60] = 3  # 96_96 owns rows/cols 112..208: 136..156; same id, another object
    write_tile_masks(tmp_path, masks, names)
    out = merge_tiles(tmp_path)
    assert set(np.unique(out)) == {0, 1, 2} and out[15, 15] != out[150, 150]
    assert (out > 0).sum() == 100 + 400


def test_label_divisor_keeps_classes(tmp_path):
    lab = np.zeros((100, 100), np.uint32)
    lab[40:60, 10:90] = 2001  # crosses the seams
    lab[5:15, 5:15] = 1007
    create_tiles(np.zeros((100, 100), np.uint8), tmp_path, tile_size=64, overlap=16, labels=lab)
    out = merge_tiles(tmp_path, label_divisor=1000)
    assert sorted(np.unique(out).tolist()) == [0, 1001, 2001]
    assert same_partition(out, lab)


def test_merges_empanada_napari_tiles(tmp_path):
    # the layout empanada-napari's Create Tiles writes: no overlap, no tile_size in the metadata
    lab = np.arange(40 * 40, dtype=np.uint32).reshape(40, 40) % 7
    for r in (0, 32):
        for c in (0, 32):
            t = np.zeros((32, 32), np.uint32)
            part = lab[r : r + 32, c : c + 32]
            t[: part.shape[0], : part.shape[1]] = part
            (tmp_path / "msk").mkdir(exist_ok=True)
            tifffile.imwrite(tmp_path / "msk" / f"{r}_{c}.tif", t)
    meta = {"original_image_shape": [40, 40], "padded_image_shape": [64, 64], "mask_available": True}
    tifffile.imwrite(tmp_path / "metadata.tif", np.zeros((1, 1), np.uint8), description=json.dumps(meta))
    assert np.array_equal(merge_tiles(tmp_path, relabel=False), lab)
