"""Checks of the training data against the model, run before the first iteration."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.ignore import IGNORE_LABEL

#: a mask with no object is called "probably not annotated" when the other masks' median foreground
#: is at least this fraction of their labelled pixels: an unannotated image among well-filled masks
#: trains as "nothing here". The VNC stack in ../shared/data has three such slices (no mitochondria in
#: its semantic mask, 5-7 % in its multi-class map, as on every other slice); two of them among 15
#: training slices kept a 15-minute model's foreground probabilities under 0.52
UNANNOTATED_FOREGROUND = 0.01


def classes_present(masks: Sequence[np.ndarray], label_divisor: int | None) -> set[int]:
    """Class ids the masks hold: ``mask // label_divisor``, or {1} for instance masks (label_divisor None)."""
    present: set[int] = set()
    for m in masks:
        if label_divisor is None:
            if (m > 0).any():
                present.add(1)
        else:
            present.update(int(c) for c in np.unique(m // label_divisor) if c > 0)
    return present


def check_classes(
    masks: Sequence[np.ndarray],
    label_divisor: int | None,
    num_classes: int,
    card,
    is_finetune: bool,
    train_dir: str | os.PathLike,
) -> None:
    """One-line errors when the data and the model disagree on classes.

    Finetuning cannot add classes (empanada's finetuning guide), so masks with classes the model
    lacks are refused with the fix (train a new model). A model with more classes than the data
    would learn the missing ones as never present: refused when training from scratch, and when
    finetuning on instance masks (which carry no class); a warning when finetuning on panoptic masks
    that leave a class out (it may be forgotten).
    """
    present = classes_present(masks, label_divisor)
    if not present:
        return
    extra = sorted(c for c in present if c > num_classes)
    if extra:
        if is_finetune:
            known = ", ".join(f"{c}: {n}" for c, n in sorted(card.class_names.items()))
            raise ValueError(
                f"masks in {train_dir} hold class {extra} but the model knows only classes 1..{num_classes} "
                f"({known}); finetuning cannot add classes: train a new model with num_classes={max(present)}"
            )
        raise ValueError(
            f"masks in {train_dir} hold class {extra} beyond num_classes={num_classes} "
            f"(label_divisor={label_divisor}); set num_classes={max(present)} or check label_divisor"
        )
    missing = [c for c in range(1, num_classes + 1) if c not in present]
    if not missing:
        return
    names = ", ".join(str(card.class_names.get(c, c)) for c in missing)
    if label_divisor is None:
        fix = "give masks with class * label_divisor + instance ids and set label_divisor"
        if not is_finetune:
            fix += ", or train with num_classes=1"
        raise ValueError(
            f"the model has {num_classes} classes but the masks in {train_dir} are instance masks "
            f"(label_divisor=None), so every object is class 1 and class {missing} ({names}) never appears; {fix}"
        )
    if not is_finetune:
        raise ValueError(
            f"num_classes={num_classes} but the masks in {train_dir} never hold class {missing} ({names}); "
            f"set num_classes={max(present)} or add masks of those classes"
        )
    warnings.warn(
        f"the masks in {train_dir} hold no class {missing} ({names}); finetuning may make the model forget them",
        stacklevel=4,
    )


def warn_unannotated(masks: Sequence[np.ndarray], names: Sequence[str]) -> list[int]:
    """Warn when some masks hold no object while the others are well filled: probably unannotated images.

    An image nobody annotated, exported as an all-zero mask beside annotated ones (a stack where only
    some slices were labelled, a lost annotation file), teaches the model that the organelles in it are
    background. Images that truly hold no organelle are fine as negative examples; the warning says how
    to tell the model which is which (leave the image out, or mark its pixels unlabelled). Masks with
    unlabelled pixels are sparse labels whose background was drawn on purpose: never warned about.

    Parameters
    ----------
    masks : sequence of numpy.ndarray
        Training masks as loaded (objects > 0, background 0, unlabelled ``IGNORE_LABEL``).
    names : sequence of str
        The mask files, in the same order, for the message.

    Returns
    -------
    list of int
        Indices of the masks warned about (empty when there is no warning).

    Examples
    --------
    >>> import numpy as np, warnings
    >>> full = np.zeros((10, 10), np.int64)
    >>> full[2:6, 2:6] = 1
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_unannotated([full, full, np.zeros((10, 10), np.int64)], ["a.tif", "b.tif", "c.tif"])
    [2]
    >>> "c.tif" in str(w[0].message)
    True
    """
    fractions = [float((m > 0).sum()) / max(1, int((m != IGNORE_LABEL).sum())) for m in masks]
    # a mask with unlabelled pixels and no object was drawn as background on purpose (sparse labels)
    empty = [i for i, (f, m) in enumerate(zip(fractions, masks)) if f == 0.0 and not (m == IGNORE_LABEL).any()]
    filled = [f for f in fractions if f > 0.0]
    if not empty or not filled or float(np.median(filled)) < UNANNOTATED_FOREGROUND:
        return []
    shown = ", ".join(Path(str(names[i])).name for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
    warnings.warn(
        f"{len(empty)} of {len(masks)} training masks hold no object ({shown}) while the others are "
        f"{100 * float(np.median(filled)):.1f} % foreground (median): if those images were not annotated, "
        "leave them out or mark their pixels unlabelled, else they teach the model that nothing is there",
        stacklevel=4,
    )
    return empty
