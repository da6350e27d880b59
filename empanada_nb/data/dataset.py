"""The training layout and the dataset that samples patches from it.

Layout (as empanada's): ``DATASET/<name>/images/*.tif(f)`` and ``DATASET/<name>/masks/*.tif(f)``
with identical file names, any number of ``<name>`` subfolders at any depth. Files are paired by
name (never by listing order, which is what empanada's glob pairing relied on).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .augment import AugmentConfig, random_patch
from .ignore import IGNORE_LABEL, training_mask
from .io import IMAGE_SUFFIXES, intensity_range, read_image
from .targets import panoptic_targets

IGNORED = {"thumbs.db", ".ds_store", "desktop.ini"}


@dataclasses.dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    group: str  # the <name> folder, for per-group sampling weights


def find_pairs(root: str | os.PathLike) -> list[Pair]:
    """All (image, mask) pairs under ``root``, paired by file name within each images/masks folder.

    The layout is empanada's: ``root/<name>/images/*.tif(f)`` beside ``root/<name>/masks/*.tif(f)``
    with identical file names, any number of ``<name>`` folders at any depth (or ``root/images``
    itself). Non-image files are ignored with a warning; unpaired files are all listed in one error.

    Parameters
    ----------
    root : str or os.PathLike
        The dataset folder.

    Returns
    -------
    list of Pair
        ``Pair(image, mask, group)`` records sorted by folder then name; ``group`` is the
        ``<name>`` folder relative to ``root`` (used for per-group sampling weights).

    Raises
    ------
    FileNotFoundError
        When ``root`` is not a folder.
    ValueError
        When an image has no mask (or a mask no image), an ``images/`` folder has no sibling
        ``masks/``, or no pair is found.

    Examples
    --------
    >>> import tempfile
    >>> import empanada_nb as enb
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = enb.make_synthetic_dataset(tmp, n_images=2, size=64, groups=1)
    ...     [(p.image.name, p.mask.name, p.group) for p in enb.find_pairs(tmp)]
    [('img000.tif', 'img000.tif', 'synthetic0'), ('img001.tif', 'img001.tif', 'synthetic0')]
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    pairs: list[Pair] = []
    problems: list[str] = []
    ignored: list[str] = []
    image_dirs = sorted(p for p in root.rglob("images") if p.is_dir())
    if (root / "images").is_dir() and root / "images" not in image_dirs:
        image_dirs.insert(0, root / "images")
    for idir in image_dirs:
        mdir = idir.parent / "masks"
        if not mdir.is_dir():
            problems.append(f"{idir} has no sibling masks/ folder")
            continue
        group = str(idir.parent.relative_to(root)) if idir.parent != root else root.name

        def listing(d: Path) -> dict[str, Path]:
            out = {}
            for f in d.iterdir():
                if f.is_dir():
                    continue
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    out[f.stem] = f
                else:
                    ignored.append(str(f))
            return out

        imgs, msks = listing(idir), listing(mdir)
        for stem in sorted(set(imgs) - set(msks)):
            problems.append(f"image {imgs[stem]} has no mask {mdir / imgs[stem].name}")
        for stem in sorted(set(msks) - set(imgs)):
            problems.append(f"mask {msks[stem]} has no image {idir / msks[stem].name}")
        pairs += [Pair(imgs[s], msks[s], group) for s in sorted(set(imgs) & set(msks))]
    visible = [f for f in ignored if Path(f).name.lower() not in IGNORED]
    if ignored:
        warnings.warn(
            f"ignoring {len(ignored)} non-TIFF file(s) in {root}" + (f": {', '.join(visible[:5])}" if visible else ""),
            stacklevel=2,
        )
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in dataset {root}:\n  " + "\n  ".join(problems))
    if not pairs:
        raise ValueError(
            f"no image/mask pairs found under {root}; expected {root}/<name>/images/*.tif "
            f"and {root}/<name>/masks/*.tif with identical file names"
        )
    return pairs


#: tries at drawing a crop with a labelled pixel before a batch takes an unlabelled one (its loss is 0)
CROP_TRIES = 10


def load_pair(pair: Pair, ignore_unlabelled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one pair: 2D, same shape, integer mask; the mask as int64 with ``IGNORE_LABEL``
    (-1) where the file holds its dtype's ignore value (unless ``ignore_unlabelled`` is False)."""
    img, msk = read_image(pair.image), read_image(pair.mask)
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        raise ValueError(f"{pair.image}: has a colour/channel axis {img.shape}; save greyscale 2D images")
    if img.ndim != 2:
        raise ValueError(
            f"{pair.image}: expected a 2D image, got shape {img.shape}; split volumes into 2D slices or patches first"
        )
    if img.dtype.kind in "fc":
        bad = int(np.count_nonzero(~np.isfinite(img)))
        if bad:
            raise ValueError(
                f"{pair.image}: {bad} NaN or inf pixel(s); training needs finite values: "
                "replace them (e.g. numpy.nan_to_num) or crop them out"
            )
    if msk.ndim != 2 or msk.shape != img.shape:
        raise ValueError(f"{pair.mask}: mask shape {msk.shape} does not match image shape {img.shape}")
    if not (np.issubdtype(msk.dtype, np.integer) or msk.dtype == bool):
        if not np.all(np.mod(msk, 1) == 0):
            raise ValueError(f"{pair.mask}: mask has non-integer values ({msk.dtype}); masks hold label ids")
    return img, training_mask(msk, ignore_unlabelled)


def compact_labels(mask: np.ndarray) -> np.ndarray:
    """The mask in the smallest unsigned type that holds its ids (uint8 for most masks, never int64);
    a mask with unlabelled pixels (``IGNORE_LABEL``, -1) in the smallest signed one.

    The dataset keeps every mask in memory and worker processes read them: int64 masks of 165
    slices of 768 x 1024 would take 1 GiB, uint8 ones 130 MiB. Targets are computed per patch.
    """
    top = int(mask.max()) if mask.size else 0
    if int(mask.min(initial=0)) < 0:
        for dt in (np.int8, np.int16, np.int32):
            if top <= np.iinfo(dt).max:
                return mask.astype(dt, copy=False)
        return mask
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return mask.astype(dt, copy=False)
    return mask


def group_weights(pairs: Sequence[Pair], gamma: float = 0.3) -> np.ndarray:
    """Sampling probability per pair: (1/count of its group)^gamma, normalized (empanada's scheme)."""
    groups = [p.group for p in pairs]
    counts = {g: groups.count(g) for g in set(groups)}
    w = np.array([(1.0 / counts[g]) ** gamma for g in groups])
    return w / w.sum()


class PanopticDataset(torch.utils.data.Dataset):
    """Batches of augmented patches with Panoptic-DeepLab targets.

    Item ``i`` is the whole batch of iteration ``i``, drawn from a generator seeded by
    ``(seed, i)``, so batches do not depend on worker count or on where a run resumed.

    Sparse labels: mask pixels holding the ignore value (``IGNORE_LABEL``, see ``data/ignore.py``) are
    unlabelled. Masks with no labelled pixel are left out (with a warning), and a random crop with no
    labelled pixel is drawn again (up to ``CROP_TRIES`` times, then around a labelled pixel), so no
    patch of a batch is spent on nothing.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        patch_size: int,
        batch_size: int,
        iterations: int,
        label_divisor: int | None = None,
        thing_list: Sequence[int] = (1,),
        num_classes: int = 1,
        connected_components: bool = False,
        sigma: float = 8.0,
        augment: AugmentConfig | None = None,
        gamma: float = 0.3,
        seed: int = 0,
        ignore_unlabelled: bool = True,
    ):
        pairs = list(pairs)
        self.patch_size, self.batch_size, self.iterations = patch_size, batch_size, iterations
        self.label_divisor, self.thing_list, self.num_classes = label_divisor, list(thing_list), num_classes
        self.sigma, self.seed = sigma, seed
        self.augment = augment if augment is not None else AugmentConfig()
        self.ignore_unlabelled = bool(ignore_unlabelled)
        unlabelled, no_objects = self._load(pairs, connected_components, label_divisor)
        if self.ignore_unlabelled and no_objects and not any((m > 0).any() for m in self.masks) and not unlabelled:
            # 0/255 binary masks (a common export) hold no object once 255 is read as "unlabelled": with
            # nothing labelled anywhere they cannot be sparse labels, so 255 marks the objects
            warnings.warn(
                f"the masks hold only 0 and their dtype's maximum (e.g. {no_objects[0]}): read as binary "
                "masks (the maximum marks objects, not unlabelled pixels)",
                stacklevel=2,
            )
            self.ignore_unlabelled = False
            unlabelled, no_objects = self._load(pairs, connected_components, label_divisor)
        hint = (
            "the ignore value (255 in uint8 masks, 65535 in uint16, 4294967295 in uint32, -1 in signed) marks "
            "unlabelled pixels; if it marks objects in your masks, save them as 0/1 or set ignore_unlabelled=False"
        )
        if not self.masks:
            raise ValueError(f"all {len(unlabelled)} training mask(s) are unlabelled everywhere: {hint}")
        if unlabelled:
            warnings.warn(
                f"left out {len(unlabelled)} mask(s) with no labelled pixel (e.g. {unlabelled[0]}); {hint}",
                stacklevel=2,
            )
        if no_objects and not any((m > 0).any() for m in self.masks):
            raise ValueError(
                f"the training masks hold only background and unlabelled pixels (e.g. {no_objects[0]}), "
                f"no object to learn: {hint}"
            )
        self.weights = group_weights(self.pairs, gamma)
        if self.masks and not any((m > 0).any() for m in self.masks):
            warnings.warn(
                f"all {len(self.masks)} training mask(s) are background only (all zero): the model can only "
                "learn to find nothing; check that the masks hold the labels",
                stacklevel=2,
            )

    def _load(self, pairs, connected_components: bool, label_divisor) -> tuple[list, list]:
        """Read every pair with ``self.ignore_unlabelled``; returns the masks left out and those without objects."""
        self.pairs, self.images, self.masks = [], [], []
        unlabelled, no_objects = [], []
        for p in pairs:
            img, msk = load_pair(p, self.ignore_unlabelled)
            ignored = msk == IGNORE_LABEL
            if ignored.all():
                unlabelled.append(p.mask)
                continue
            if ignored.any() and not (msk > 0).any():
                no_objects.append(p.mask)
            lo, hi = intensity_range(img)
            self.pairs.append(p)
            self.images.append(np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1))
            if connected_components:
                msk = ndimage.label(msk > 0)[0].astype(np.int64)
                msk[ignored] = IGNORE_LABEL
            elif label_divisor is None and msk.max() == 1 and (msk == 1).sum() > 0:
                n = ndimage.label(msk > 0)[1]
                if n > 1:
                    warnings.warn(
                        f"{p.mask} is a binary mask with {n} separate objects, which would train as one "
                        "instance; pass connected_components=True to make each object an instance",
                        stacklevel=2,
                    )
            self.masks.append(compact_labels(msk))
        return unlabelled, no_objects

    def __len__(self) -> int:
        return self.iterations

    def norms(self) -> dict[str, float]:
        """Mean and std of the training images in [0, 1]: per-image values averaged, as empanada-napari's
        ``train.py`` computes them when no pretrained weights bring their own."""
        return {
            "mean": float(np.mean([im.mean() for im in self.images])),
            "std": float(np.mean([im.std() for im in self.images])),
        }

    def sample(self, rng: np.random.Generator, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """One (image, mask) crop that holds a labelled pixel.

        A crop with no labelled pixel is drawn again, ``CROP_TRIES`` times at most; then the crop is
        drawn around a random labelled pixel of the last image (every kept mask has one), which makes
        sure of it without biasing the common case.
        """
        for _ in range(CROP_TRIES):
            k = int(rng.choice(len(self.pairs), p=self.weights))
            img, msk = random_patch(self.images[k], self.masks[k], self.patch_size, rng, self.augment, augment)
            if (msk != IGNORE_LABEL).any():
                return img, msk
        ys, xs = np.nonzero(self.masks[k] != IGNORE_LABEL)
        j = int(rng.integers(len(ys)))
        return random_patch(
            self.images[k], self.masks[k], self.patch_size, rng, self.augment, augment, center=(ys[j], xs[j])
        )

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(i)])
        n, p = self.batch_size, self.patch_size
        # the batch arrays are filled in place (no per-patch lists stacked into a second copy)
        out = {
            "image": np.empty((n, 1, p, p), np.float32),
            "sem": np.empty((n, p, p), np.int64),
            "ctr_hmp": np.empty((n, 1, p, p), np.float32),
            "offsets": np.empty((n, 2, p, p), np.float32),
            "thing": np.empty((n, p, p), bool),
            "ctr_valid": np.empty((n, p, p), bool),
        }
        for j in range(n):
            img, msk = self.sample(rng)
            t = panoptic_targets(
                msk,
                label_divisor=self.label_divisor,
                thing_list=self.thing_list,
                num_classes=self.num_classes,
                sigma=self.sigma,
            )
            out["image"][j, 0] = img
            for k in ("sem", "ctr_hmp", "offsets", "thing", "ctr_valid"):
                out[k][j] = t[k]
        return {k: torch.from_numpy(v) for k, v in out.items()}
