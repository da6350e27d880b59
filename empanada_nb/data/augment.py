"""Joint image/mask augmentation: one affine resampling does scale, rotation, crop and pad.

Sampling the output patch through a single inverse affine map costs O(patch) whatever the
source size, and keeps image and mask geometrically identical (linear for the image, nearest
for the mask, so label values, the unlabelled value ``IGNORE_LABEL`` included, stay exact). Photometric
jitter follows.

Where the rotated or scaled patch reaches beyond the source, the image is mirrored (so the model sees
no artificial edge) and the mask is ``IGNORE_LABEL``, unlabelled: the labels of mirrored content are
not known (a mirrored object would need its own id), and calling it background would teach the model
that mirrored objects are background. Objects cut by that border are then cut objects for the
targets (no false centre, see ``targets.py``). Everything draws from the generator it is given, so
a seed makes a batch reproducible.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .ignore import IGNORE_LABEL


@dataclasses.dataclass
class AugmentConfig:
    scale: tuple[float, float] = (0.75, 1.25)
    rotate: bool = True
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2


def random_patch(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    rng: np.random.Generator,
    cfg: AugmentConfig | None = None,
    augment: bool = True,
    center: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` patch of (image in [0,1] float32, mask int) with random geometry.

    Images smaller than the patch, and the parts of a rotated or scaled patch beyond the image, are
    padded: the image by reflection, the mask with ``IGNORE_LABEL`` (unlabelled). ``center``, a
    source pixel ``(row, col)``, fixes where the patch is: its pixel ``(size // 2, size // 2)`` shows
    exactly that pixel (the sampler uses it to be sure a patch holds a labelled pixel).
    """
    cfg = cfg if cfg is not None else AugmentConfig()
    if mask.dtype.kind != "i":  # the padding value -1 needs a signed mask (ids kept: a wider signed type)
        mask = mask.astype({1: np.int16, 2: np.int32}.get(mask.dtype.itemsize, np.int64))
    h, w = image.shape
    s = rng.uniform(*cfg.scale) if augment else 1.0
    theta = rng.uniform(0, 2 * np.pi) if (augment and cfg.rotate) else 0.0
    # source footprint half-extent of the rotated, scaled patch, to choose a center that keeps it inside when possible
    half = size / (2 * s)
    ext = half * (abs(np.cos(theta)) + abs(np.sin(theta)))
    cy = rng.uniform(ext, h - ext) if h > 2 * ext else h / 2
    cx = rng.uniform(ext, w - ext) if w > 2 * ext else w / 2
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / s
    if augment and cfg.flip:
        if rng.random() < 0.5:
            rot[:, 0] *= -1
        if rng.random() < 0.5:
            rot[:, 1] *= -1
    c = (size - 1) / 2
    if center is not None:  # an integer source pixel onto an integer patch pixel: nearest sampling is exact there
        cy, cx, c = int(center[0]), int(center[1]), size // 2
    offset = np.array([cy, cx]) - rot @ np.array([c, c])
    if not augment and h >= size and w >= size:
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
        if center is not None:
            y0, x0 = min(max(cy - c, 0), h - size), min(max(cx - c, 0), w - size)
        img = image[y0 : y0 + size, x0 : x0 + size].astype(np.float32)
        msk = mask[y0 : y0 + size, x0 : x0 + size]
    else:
        img = ndimage.affine_transform(
            image.astype(np.float32, copy=False), rot, offset, (size, size), order=1, mode="mirror"
        )
        msk = ndimage.affine_transform(mask, rot, offset, (size, size), order=0, mode="constant", cval=IGNORE_LABEL)
    if augment:
        img = _photometric(img, rng, cfg)
    return img, msk


def _photometric(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    if cfg.contrast:
        mean = img.mean()
        img = (img - mean) * np.float32(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)) + mean
    if cfg.brightness:
        img = img + np.float32(rng.uniform(-cfg.brightness, cfg.brightness) / 2)
    return np.clip(img, 0, 1, out=img).astype(np.float32, copy=False)
