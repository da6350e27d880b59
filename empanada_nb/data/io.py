"""Reading images and volumes, and normalizing intensities of any dtype."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from .._atomic import atomic_path

IMAGE_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D image from TIFF with a clear error when it is not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        img = tifffile.imread(path)
    except Exception as e:  # tifffile raises several types for non-TIFF input
        raise ValueError(f"{path}: not a readable TIFF image ({e.__class__.__name__}: {e})") from None
    return img


def write_tiff(path: str | os.PathLike, array: np.ndarray, compression: str | None = "zlib") -> None:
    """Write a TIFF atomically (temp file + rename)."""
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        tifffile.imwrite(tmp, array, compression=compression, photometric="minisblack")


def intensity_range(image: np.ndarray, percentiles: tuple[float, float] = (0.1, 99.9)) -> tuple[float, float]:
    """The range that maps to [0, 1] for ``image``'s dtype.

    uint8 uses the full 0-255 range (what empanada's MitoNet norms assume). Other dtypes (uint16,
    int32, float) use robust percentiles of the data, because their occupied range varies from
    microscope to microscope; for volumes compute it once (on a subsample) and pass it to every
    slice so that slices stay consistent.
    """
    if image.dtype == np.uint8:
        return 0.0, 255.0
    if image.dtype == bool:
        return 0.0, 1.0
    sample = np.asarray(image).ravel()
    if sample.size > 4_000_000:
        sample = sample[:: sample.size // 4_000_000]
    lo, hi = np.percentile(sample.astype(np.float64), percentiles)
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def normalize_image(
    image: np.ndarray, norms: dict[str, float] | None = None, irange: tuple[float, float] | None = None
) -> np.ndarray:
    """Map ``image`` to float32: rescale ``irange`` to [0, 1], clip, then (x - mean) / std.

    empanada casts to uint8 semantics and zeroes int32 images; here every dtype is rescaled
    from its own range (see :func:`intensity_range`).
    """
    if image.ndim < 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    norms = norms or {"mean": 0.5, "std": 0.5}
    lo, hi = irange if irange is not None else intensity_range(image)
    x = (np.asarray(image, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    np.clip(x, 0.0, 1.0, out=x)
    x -= np.float32(norms["mean"])
    x /= np.float32(norms["std"])
    return x
