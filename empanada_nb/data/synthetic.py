"""Synthetic EM-like images with labelled organelles, for the demo and the unit tests.

Not a substitute for real data (accuracy claims are made on ../shared/data): it has the
ingredients a model must learn to separate, i.e. a textured cytoplasm, cell membranes
(Voronoi edges), and ellipsoidal mitochondria with a dark double membrane, a grey matrix
and cristae stripes, plus shot-like noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from .io import write_tiff

#: smallest side of a synthetic image: the largest object (semi-axis 22, margin 2) must fit
MIN_SIZE = 48


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def synthetic_volume(
    shape: tuple[int, int, int] = (16, 256, 256), n_objects: int = 12, seed: int = 0, dtype=np.uint8
) -> tuple[np.ndarray, np.ndarray]:
    """A (Z, Y, X) EM-like volume and its instance labels.

    Parameters
    ----------
    shape : tuple of int
        ``(Z, Y, X)`` size of the volume.
    n_objects : int
        Number of ellipsoidal "mitochondria" to place (fewer when they do not fit).
    seed : int
        Seed of the random generator; the same seed gives the same volume.
    dtype : numpy dtype
        ``np.uint8`` (0-255), ``np.uint16`` (about 200-4200) or a float dtype (0-1).

    Raises
    ------
    ValueError
        When a slice is smaller than ``MIN_SIZE`` (48) pixels on a side: the objects do not fit.

    Returns
    -------
    image : numpy.ndarray
        The volume, of ``dtype``.
    labels : numpy.ndarray
        int32 instance labels, ids ``1..n`` and 0 for background.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> image, labels = enb.synthetic_volume((4, 64, 64), n_objects=3, seed=0)
    >>> image.shape, image.dtype, labels.dtype
    ((4, 64, 64), dtype('uint8'), dtype('int32'))
    >>> int(labels.max())
    3
    """
    z, h, w = (int(v) for v in shape)
    if min(h, w) < MIN_SIZE or z < 1:
        raise ValueError(
            f"synthetic data needs at least {MIN_SIZE} x {MIN_SIZE} pixels per slice (objects are up to 48 "
            f"pixels across), got shape {tuple(shape)}"
        )
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    # membranes: edges of a 2.5D Voronoi partition
    n_cells = max(3, (h * w) // 20000)
    seeds = rng.uniform([0, 0], [h, w], size=(n_cells, 2))
    d = np.stack([(yy[0] - sy) ** 2 + (xx[0] - sx) ** 2 for sy, sx in seeds])
    cell = np.argmin(d, 0)
    edges = (ndimage.grey_dilation(cell, 3) != ndimage.grey_erosion(cell, 3)).astype(np.float32)
    img = 0.62 + 0.05 * _smooth_noise(rng, shape, 2.0)
    img -= 0.3 * ndimage.gaussian_filter(edges, 1.0)[None]
    labels = np.zeros(shape, np.int32)
    placed = 0
    for _ in range(n_objects * 20):
        if placed == n_objects:
            break
        a, b = rng.uniform(8, 22), rng.uniform(5, 11)  # semi-axes in y/x plane
        c = rng.uniform(3, max(3.5, z / 2))
        cy, cx, cz = rng.uniform(a + 2, h - a - 2), rng.uniform(a + 2, w - a - 2), rng.uniform(0, z)
        t = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)
        v = -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
        r = (u / a) ** 2 + (v / b) ** 2 + ((zz - cz) / c) ** 2
        obj = r <= 1
        if not obj.any() or labels[ndimage.binary_dilation(obj, iterations=2)].any():
            continue
        placed += 1
        labels[obj] = placed
        rim = obj & (r > 0.72)
        cristae = obj & (np.sin(u * 1.1 + rng.uniform(0, 6)) > 0.6)
        img[obj] = 0.45
        img[cristae] = 0.58
        img[rim] = 0.2
    img = ndimage.gaussian_filter(img, (0, 0.8, 0.8))
    img += 0.045 * rng.standard_normal(shape).astype(np.float32)
    img = np.clip(img, 0, 1)
    if dtype == np.uint8:
        return (img * 255).astype(np.uint8), labels
    if dtype == np.uint16:
        return (img * 4000 + 200).astype(np.uint16), labels
    return img.astype(dtype), labels


def synthetic_image(
    size: int = 256, n_objects: int = 10, seed: int = 0, dtype=np.uint8
) -> tuple[np.ndarray, np.ndarray]:
    """A 2D EM-like image and its instance labels (one slice of ``synthetic_volume``).

    Parameters
    ----------
    size : int
        Height and width in pixels.
    n_objects : int
        Number of organelles to place (fewer when they do not fit).
    seed : int
        Seed of the random generator.
    dtype : numpy dtype
        ``np.uint8``, ``np.uint16`` or a float dtype.

    Returns
    -------
    image : numpy.ndarray
        ``(size, size)`` image of ``dtype``.
    labels : numpy.ndarray
        ``(size, size)`` int32 instance labels (0 is background).

    Examples
    --------
    >>> import empanada_nb as enb
    >>> image, labels = enb.synthetic_image(64, n_objects=3)
    >>> image.shape, labels.shape
    ((64, 64), (64, 64))
    """
    img, lab = synthetic_volume((1, size, size), n_objects, seed, dtype)
    return img[0], lab[0]


def make_synthetic_dataset(
    root: str | os.PathLike, n_images: int = 16, size: int = 256, groups: int = 2, seed: int = 0, dtype=np.uint8
) -> Path:
    """Write ``n_images`` synthetic image/mask pairs in the training layout under ``root``.

    Files go to ``root/synthetic<g>/images/img<i>.tif`` and ``root/synthetic<g>/masks/img<i>.tif``
    (the layout ``find_pairs`` and ``train`` read), spread over ``groups`` subfolders.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset folder (created when missing).
    n_images : int
        Number of image/mask pairs.
    size : int
        Height and width of each image.
    groups : int
        Number of ``synthetic<g>`` subfolders.
    seed : int
        Seed; image ``i`` uses ``seed * 1000 + i``.
    dtype : numpy dtype
        dtype of the images (masks are int32).

    Returns
    -------
    pathlib.Path
        ``root``.

    Examples
    --------
    >>> import tempfile
    >>> import empanada_nb as enb
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = enb.make_synthetic_dataset(tmp, n_images=2, size=64)
    ...     len(enb.find_pairs(root))
    2
    """
    root = Path(root)
    for i in range(n_images):
        g = root / f"synthetic{i % groups}"
        img, lab = synthetic_image(size, n_objects=max(3, size * size // 6000), seed=seed * 1000 + i, dtype=dtype)
        write_tiff(g / "images" / f"img{i:03d}.tif", img, overwrite=True)
        write_tiff(g / "masks" / f"img{i:03d}.tif", lab, overwrite=True)
    return root
