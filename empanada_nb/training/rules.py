"""empanada's training and finetuning rules, kept exactly: the advice the loop warns with and the form shows.

Source: empanada-napari's "Training Best Practices" and "Finetuning Best Practices" guides (copies in the
project's ``../shared/notes/empanada-guide-training.rst`` and ``empanada-guide-finetuning.rst``):

- batch size 16 "is verified to be safe. Going lower may make the BatchNorm parameters in the model unstable";
- the training patch size "should be set to be the same size or smaller than the patch size chosen for the
  training data";
- "a finetuned model can't be given new capabilities ... New tasks call for training new models";
- PanopticBiFPN has about 50% fewer parameters than PanopticDeepLab (29 vs 55 million): in resource constrained
  environments "always opt for PanopticBiFPN";
- for finetuning, "using stage4 ... tends to be the best choice between the two extremes".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: the guides' safe batch size: below it BatchNorm statistics become unstable
BN_SAFE_BATCH = 16

#: one-line hint per architecture, as the training guide says
ARCHITECTURE_HINTS = {
    "PanopticDeepLab": "about 55 M parameters (MitoNet_v1); patch size a multiple of 16",
    "PanopticBiFPN": "the lighter model: about half the parameters (29 M, MitoNet_v1_mini); "
    "use it when memory or compute is tight; patch size a multiple of 128",
}

#: one-line hint per finetunable-layers value, as the finetuning guide says
LAYER_HINTS = {
    "none": "decoder and heads only: fastest, may underfit; with PanopticBiFPN the choice for very tight resources",
    "stage4": "+ the deepest encoder stage: usually the best choice for finetuning",
    "stage3": "+ encoder stages 3-4",
    "stage2": "+ encoder stages 2-4",
    "stage1": "+ encoder stages 1-4",
    "all": "everything: the usual choice for a new model; slow and may overfit when finetuning",
}


def batch_size_warning(batch_size: int) -> str | None:
    """The guides' BatchNorm warning for a batch size below 16, else None.

    Parameters
    ----------
    batch_size : int
        Images per training step.

    Returns
    -------
    str or None
        The warning, or None when the batch size is safe.

    Examples
    --------
    >>> batch_size_warning(16) is None
    True
    """
    if int(batch_size) >= BN_SAFE_BATCH:
        return None
    return (
        f"batch size {batch_size} < {BN_SAFE_BATCH}: BatchNorm becomes unstable below {BN_SAFE_BATCH} images "
        f"per batch (empanada's guides); use {BN_SAFE_BATCH} where memory allows"
    )


def smallest_image_side(pairs: Iterable[Any]) -> tuple[int, str] | None:
    """The smallest height or width among the images of ``pairs`` (read from TIFF headers) and its file.

    Parameters
    ----------
    pairs : iterable of Pair
        Training pairs (``find_pairs``); only ``pair.image`` is read, header only.

    Returns
    -------
    (int, str) or None
        The side in pixels and the image's path, or None without pairs.

    Examples
    --------
    >>> smallest_image_side([]) is None
    True
    """
    import tifffile

    best: tuple[int, str] | None = None
    for p in pairs:
        with tifffile.TiffFile(p.image) as tf:
            shape = tf.pages[0].shape
        side = int(min(shape[:2]))
        if best is None or side < best[0]:
            best = (side, str(p.image))
    return best


def patch_size_warning(patch_size: int, pairs: Sequence[Any] | int) -> str | None:
    """Warn when the training patch is larger than the saved patches (they would be padded), else None.

    Parameters
    ----------
    patch_size : int
        The training patch size.
    pairs : sequence of Pair, or int
        The training pairs (``find_pairs``), or the smallest image side already known.

    Returns
    -------
    str or None
        The warning (naming the smallest image when pairs are given), or None.

    Examples
    --------
    >>> patch_size_warning(256, 200)[:50]
    'patch size 256 is larger than the saved patches (s'
    """
    small = (int(pairs), "") if isinstance(pairs, int) else smallest_image_side(pairs)
    if small is None or small[0] >= int(patch_size):
        return None
    side, path = small
    where = f", {Path(path).name}" if path else ""
    return (
        f"patch size {patch_size} is larger than the saved patches (smallest side {side} px{where}): "
        f"they will be padded; use a patch size of at most {side} or save larger patches"
    )


def pairs_of(dirs: Sequence[str | os.PathLike]) -> list:
    """Every training pair of several dataset folders (empanada's ``train_dir`` + ``additional_train_dirs``).

    Parameters
    ----------
    dirs : sequence of path
        Dataset folders in the training layout.

    Returns
    -------
    list of Pair
        The pairs of all folders, in order; a subfolder's group is prefixed with its folder's index when
        several folders are given, so per-group sampling weights stay per subfolder.

    Examples
    --------
    >>> pairs_of([])
    []
    """
    import dataclasses

    from ..data.dataset import find_pairs

    out = []
    for i, d in enumerate(dirs):
        pairs = find_pairs(d)
        if len(dirs) > 1:
            pairs = [dataclasses.replace(p, group=f"{i}:{p.group}") for p in pairs]
        out += pairs
    return out


def check_finetune_classes(card: Any, requested: dict[str, Any]) -> None:
    """Refuse to finetune a model for classes it does not have (empanada: "New tasks call for training new models").

    Parameters
    ----------
    card : ModelCard
        The card of the model to finetune.
    requested : dict
        The class settings asked for: any of ``num_classes``, ``class_names``, ``thing_list``.

    Returns
    -------
    None
        Raises ValueError naming the difference when the request differs from the model.

    Examples
    --------
    >>> from empanada_nb.model_io import ModelCard
    >>> check_finetune_classes(ModelCard(), {"num_classes": 1})
    """
    have = {
        "num_classes": int(card.num_classes),
        "class_names": {int(k): str(v) for k, v in card.class_names.items()},
        "thing_list": sorted(int(c) for c in card.thing_list),
    }
    for key, value in requested.items():
        if value is None or key not in have:
            continue
        if key == "class_names":
            value = {int(k): str(v) for k, v in value.items()}
        elif key == "thing_list":
            value = sorted(int(c) for c in value)
        else:
            value = int(value)
        if value != have[key]:
            raise ValueError(
                f"the model has {key}={have[key]}, not {value}: finetuning cannot give a model new classes; "
                "train a new model for them (train() / mode 'train')"
            )
