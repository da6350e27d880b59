"""Reading images and volumes, and normalizing intensities of any dtype."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from .._atomic import MARKER, atomic_path, claim

IMAGE_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image (or volume) from a TIFF file, with a clear error when it is not one.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` file.

    Returns
    -------
    numpy.ndarray
        The array as stored (dtype and shape unchanged).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When ``path`` is not a readable TIFF.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import tifffile
    >>> import empanada_nb as enb
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tifffile.imwrite(Path(tmp) / "a.tif", np.zeros((32, 48), np.uint8))
    ...     enb.read_image(Path(tmp) / "a.tif").shape
    (32, 48)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        img = tifffile.imread(path)
    except Exception as e:  # tifffile raises several types for non-TIFF input
        raise ValueError(f"{path}: not a readable TIFF image ({e.__class__.__name__}: {e})") from None
    return img


def write_tiff(
    path: str | os.PathLike, array: np.ndarray, compression: str | None = "zlib", overwrite: bool = False
) -> None:
    """Write a TIFF atomically (temporary file + rename); missing parent folders are created.

    The TIFF is marked as written by empanada_nb (Software tag), and an existing ``path`` is
    replaced only with ``overwrite=True`` and only when empanada_nb wrote it.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    array : numpy.ndarray
        The image or stack, stored greyscale (``minisblack``) with its dtype.
    compression : str, optional
        tifffile compression (default ``"zlib"``); None stores uncompressed (memory-mappable).
    overwrite : bool
        Replace an existing ``path`` that empanada_nb wrote; others are always refused.

    Returns
    -------
    None

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False, or it is not a file of empanada_nb.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from empanada_nb.data import read_image, write_tiff
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_tiff(Path(tmp) / "masks" / "a.tif", np.ones((4, 16, 16), np.uint16))
    ...     read_image(Path(tmp) / "masks" / "a.tif").shape
    (4, 16, 16)
    """
    claim(path, overwrite)
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        tifffile.imwrite(tmp, array, compression=compression, photometric="minisblack", software=MARKER)


def intensity_range(image: np.ndarray, percentiles: tuple[float, float] = (0.1, 99.9)) -> tuple[float, float]:
    """The range that maps to [0, 1] for ``image``'s dtype.

    uint8 uses the full 0-255 range (what empanada's MitoNet norms assume). Other dtypes (uint16,
    int32, float) use robust percentiles of the data, because their occupied range varies from
    microscope to microscope; for volumes compute it once (on a subsample) and pass it to every
    slice so that slices stay consistent.

    Parameters
    ----------
    image : numpy.ndarray
        An image or volume (subsampled to about 4 million values).
    percentiles : tuple of float
        Low and high percentiles for dtypes other than uint8 and bool.

    Returns
    -------
    tuple of float
        ``(lo, hi)`` with ``hi > lo``.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb.data import intensity_range
    >>> intensity_range(np.zeros((8, 8), np.uint8))
    (0.0, 255.0)
    >>> intensity_range(np.arange(1001, dtype=np.uint16), percentiles=(10, 90))
    (100.0, 900.0)
    """
    if image.dtype == np.uint8:
        return 0.0, 255.0
    if image.dtype == bool:
        return 0.0, 1.0
    sample = np.asarray(image).ravel()
    if sample.size > 4_000_000:
        sample = sample[:: sample.size // 4_000_000]
    sample = sample.astype(np.float64)
    if sample.dtype.kind == "f":
        # NaN/inf pixels are missing data: they take no part in the range (normalize_image fills them)
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            raise ValueError("the image has no finite values (all NaN or inf); nothing to segment")
    lo, hi = np.percentile(sample, percentiles)
    if hi <= lo:
        hi = lo + 1.0  # a constant image: any range maps it to one value
    return float(lo), float(hi)


def normalize_image(
    image: np.ndarray, norms: dict[str, float] | None = None, irange: tuple[float, float] | None = None
) -> np.ndarray:
    """Map ``image`` to float32: rescale ``irange`` to [0, 1], clip, then ``(x - mean) / std``.

    empanada casts to uint8 semantics and zeroes int32 images; here every dtype is rescaled
    from its own range (see ``intensity_range``: uint8 uses 0-255, other dtypes robust percentiles).
    NaN and inf pixels of float images are treated as missing: excluded from the range and
    filled with the normalisation mean (0 after normalising).

    Parameters
    ----------
    image : numpy.ndarray
        An image of at least 2 dimensions, any numeric dtype.
    norms : dict, optional
        ``{"mean": float, "std": float}`` applied after rescaling (a model's ``model.norms``);
        default ``{"mean": 0.5, "std": 0.5}``.
    irange : tuple of float, optional
        ``(lo, hi)`` intensity range mapped to [0, 1]; default: computed from ``image``. For a
        volume compute it once and pass it to every slice so that slices stay consistent.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.

    Raises
    ------
    ValueError
        When ``image`` has fewer than 2 dimensions, or ``irange`` does not have low < high.

    Examples
    --------
    >>> import numpy as np
    >>> import empanada_nb as enb
    >>> enb.normalize_image(np.array([[0, 255]], np.uint8))
    array([[-1.,  1.]], dtype=float32)
    >>> enb.normalize_image(np.array([[100, 300]], np.uint16), irange=(100, 300), norms={"mean": 0.0, "std": 1.0})
    array([[0., 1.]], dtype=float32)
    """
    if image.ndim < 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    norms = norms or {"mean": 0.5, "std": 0.5}
    lo, hi = irange if irange is not None else intensity_range(image)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"intensity range ({lo}, {hi}) must have finite ends with low < high")
    x = (np.asarray(image, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    if x.dtype.kind == "f" and image.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            # missing pixels get the normalisation mean (0 after normalising): neutral for the network
            x[bad] = np.float32(norms["mean"])
    np.clip(x, 0.0, 1.0, out=x)
    x -= np.float32(norms["mean"])
    x /= np.float32(norms["std"])
    return x
