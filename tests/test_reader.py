"""The one volume opener (reader.py): TIFF memmap / page reader / zarr view, zarr arrays and groups."""

import numpy as np
import pytest
import tifffile
import zarr

from empanada_nb.reader import TiffPages, open_volume
from empanada_nb.widgets import VolumeSource


def test_open_volume_tiff_zarr_and_errors(tmp_path):
    vol = np.arange(4 * 20 * 30, dtype=np.uint16).reshape(4, 20, 30)
    tifffile.imwrite(tmp_path / "c.tif", vol, compression="zlib", photometric="minisblack")
    tifffile.imwrite(tmp_path / "u.tif", vol, photometric="minisblack")
    lazy = open_volume(tmp_path / "c.tif")
    assert not isinstance(lazy, np.ndarray) and lazy.shape == vol.shape
    np.testing.assert_array_equal(lazy[:, 5, :], vol[:, 5, :])
    mm = open_volume(tmp_path / "u.tif")
    assert isinstance(mm, np.memmap)
    np.testing.assert_array_equal(mm[2], vol[2])
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("0", shape=vol.shape, dtype=vol.dtype)[:] = vol
    np.testing.assert_array_equal(open_volume(tmp_path / "g.zarr")[3], vol[3])
    with pytest.raises(FileNotFoundError):
        open_volume(tmp_path / "missing.tif")
    (tmp_path / "x.tif").write_text("not a tiff")
    with pytest.raises(ValueError, match="not a readable TIFF"):
        open_volume(tmp_path / "x.tif")


@pytest.mark.realdata
def test_open_volume_reads_real_compressed_tiff_lazily(shared_data):
    path = shared_data / "vnc_stack1_image.tif"
    vol = open_volume(path)
    assert not isinstance(vol, np.ndarray) and vol.shape == (20, 1024, 1024) and vol.dtype == np.uint8
    np.testing.assert_array_equal(vol[7], tifffile.imread(path, key=7))
    xz = vol[:, 500, :]
    assert xz.shape == (20, 1024)
    np.testing.assert_array_equal(xz[3], tifffile.imread(path, key=3)[500])


def test_compressed_tiff_is_read_page_by_page_with_a_cache(tmp_path):
    vol = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    tifffile.imwrite(tmp_path / "c.tif", vol, compression="zlib")
    pages = open_volume(tmp_path / "c.tif")
    assert isinstance(pages, TiffPages) and pages.shape == (5, 6, 7) and pages.ndim == 3 and len(pages) == 5
    np.testing.assert_array_equal(pages[2], vol[2])
    assert list(pages._cache) == [2]  # one xy slice decodes one page
    np.testing.assert_array_equal(pages[:, 3], vol[:, 3])
    assert len(pages._cache) == 5  # an xz slice touches every page; they stay cached
    np.testing.assert_array_equal(pages[..., 4], vol[..., 4])
    np.testing.assert_array_equal(pages[1:4:2, :2, -1], vol[1:4:2, :2, -1])
    np.testing.assert_array_equal(pages[[0, 4]], vol[[0, 4]])
    np.testing.assert_array_equal(np.asarray(pages), vol)
    assert not pages[0].flags.writeable  # cached pages are shared: nobody may change them
    tifffile.imwrite(tmp_path / "2d.tif", vol[0], compression="zlib")
    page = open_volume(tmp_path / "2d.tif")
    assert page.shape == (6, 7) and page.ndim == 2
    np.testing.assert_array_equal(page[...], vol[0])
    np.testing.assert_array_equal(page[:, 3], vol[0, :, 3])


def test_tiff_that_is_not_a_page_stack_gets_the_zarr_view(tmp_path):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", compression="zlib")
    arr = open_volume(tmp_path / "rgb.tif")
    assert not isinstance(arr, TiffPages) and arr.shape == (4, 5, 3)  # the CLI then refuses the colour axis
    np.testing.assert_array_equal(arr[:], rgb)


def test_zarr_group_picks_array_0_or_its_only_array(tmp_path):
    vol = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    ome = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    ome.create_array("1", shape=(3, 2, 2), dtype=vol.dtype)
    ome.create_array("0", shape=vol.shape, dtype=vol.dtype)[:] = vol
    assert open_volume(tmp_path / "ome.zarr").shape == vol.shape  # OME-Zarr full resolution
    one = zarr.open_group(str(tmp_path / "one.zarr"), mode="w")
    one.create_array("raw", shape=vol.shape, dtype=vol.dtype)[:] = vol
    np.testing.assert_array_equal(open_volume(tmp_path / "one.zarr")[1], vol[1])
    two = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    two.create_array("a", shape=vol.shape, dtype=vol.dtype)
    two.create_array("b", shape=vol.shape, dtype=vol.dtype)
    with pytest.raises(ValueError, match=r"arrays \['a', 'b'\]; pass the array folder"):
        open_volume(tmp_path / "two.zarr")
    np.testing.assert_array_equal(open_volume(tmp_path / "one.zarr" / "raw")[2], vol[2])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError):
        open_volume(tmp_path / "empty")


def test_viewer_source_and_inference_open_paths_alike(tmp_path):
    vol = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    tifffile.imwrite(tmp_path / "u.tif", vol, photometric="minisblack")
    tifffile.imwrite(tmp_path / "c.tif", vol, compression="zlib", photometric="minisblack")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("1", shape=(3, 2, 2), dtype=vol.dtype)
    g.create_array("0", shape=vol.shape, dtype=vol.dtype)[:] = vol
    for name in ("u.tif", "c.tif", "g.zarr"):
        src = VolumeSource(tmp_path / name)
        assert type(src.data) is type(open_volume(tmp_path / name)) and src.shape == vol.shape
        np.testing.assert_array_equal(src.plane("yz", 2), vol[:, :, 2])
    with pytest.raises(ValueError, match="not a readable TIFF"):
        VolumeSource(tmp_path / "g.zarr" / "zarr.json")  # a file that is neither TIFF nor zarr


def test_page_cache_is_small_for_inference_and_large_for_the_viewer(tmp_path):
    vol = np.zeros((40, 256, 256), np.uint8)  # 64 KiB pages
    tifffile.imwrite(tmp_path / "c.tif", vol, compression="zlib", photometric="minisblack")
    small = open_volume(tmp_path / "c.tif", page_cache_mb=0.5)
    small[:, 0]
    assert len(small._cache) == 8  # bounded: stack inference keeps its own blocks
    src = VolumeSource(tmp_path / "c.tif")
    src.plane("xz", 0)
    assert len(src.data._cache) == 40  # the viewer keeps every page for the next xz/yz slice
