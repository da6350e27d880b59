"""The viewer's image source (widgets/source.py): planes of numpy, TIFF, zarr and dask volumes; contrast."""

import numpy as np
import pytest
import tifffile

from empanada_nb.widgets import Viewer, VolumeSource


@pytest.fixture
def vol(rng):
    return rng.integers(0, 255, size=(12, 64, 96)).astype(np.uint8)


def test_source_numpy_planes(vol):
    s = VolumeSource(vol)
    assert s.shape == (12, 64, 96) and s.ndim == 3 and s.dtype == np.uint8
    np.testing.assert_array_equal(s.plane("xy", 4), vol[4])
    np.testing.assert_array_equal(s.plane("xz", 7), vol[:, 7])
    np.testing.assert_array_equal(s.plane("yz", 9), vol[:, :, 9])
    assert s.plane("xz", 7).flags.c_contiguous
    with pytest.raises(IndexError):
        s.plane("xy", 12)
    s2 = VolumeSource(vol[0])
    assert s2.shape == (1, 64, 96) and s2.ndim == 2
    np.testing.assert_array_equal(s2.plane("xy", 0), vol[0])
    assert VolumeSource(vol[None]).shape == (12, 64, 96)  # singleton axes squeezed
    with pytest.raises(ValueError):
        VolumeSource(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError):
        VolumeSource(np.array(["a", "b"]).reshape(1, 2))


def test_source_tiff_lazy_and_memmap(tmp_path, vol):
    comp = tmp_path / "c.tif"
    tifffile.imwrite(comp, vol, compression="zlib")
    s = VolumeSource(comp)
    assert s.shape == vol.shape and s.ndim == 3 and s.lazy
    np.testing.assert_array_equal(s.plane("xy", 5), vol[5])
    assert len(s.data._cache) == 1  # one page read for one xy slice
    np.testing.assert_array_equal(s.plane("yz", 3), vol[:, :, 3])
    raw = tmp_path / "r.tif"
    tifffile.imwrite(raw, vol)
    s = VolumeSource(raw)
    assert isinstance(s.data, np.memmap)
    np.testing.assert_array_equal(s.plane("xz", 2), vol[:, 2])
    tifffile.imwrite(tmp_path / "2d.tif", vol[0], compression="zlib")
    s = VolumeSource(tmp_path / "2d.tif")
    assert s.ndim == 2 and s.shape == (1, 64, 96)
    np.testing.assert_array_equal(s.plane("xy", 0), vol[0])
    with pytest.raises(FileNotFoundError):
        VolumeSource(tmp_path / "missing.tif")


def test_source_zarr_and_dask(tmp_path, vol):
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    z = zarr.open(str(tmp_path / "v.zarr"), mode="w", shape=vol.shape, chunks=(1, 64, 96), dtype=vol.dtype)
    z[:] = vol
    s = VolumeSource(tmp_path / "v.zarr")
    np.testing.assert_array_equal(s.plane("xz", 3), vol[:, 3])
    d = VolumeSource(da.from_array(vol, chunks=(2, 32, 32)))
    np.testing.assert_array_equal(d.plane("yz", 5), vol[:, :, 5])
    v = Viewer(da.from_array(vol, chunks=(2, 32, 32)))
    assert v.shape == [12, 64, 96]
