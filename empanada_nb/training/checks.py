"""Checks of the training data against the model, run before the first iteration."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np


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
