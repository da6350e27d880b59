"""The smallest plausible object, learned from the training masks: the 2D ``min_area`` a model's card keeps.

Most false positives of a briefly trained model are small specks, and dropping instances under a
minimum area is the cheapest cure (``segment_image(min_area=)``). The right minimum depends on the
pixel size and the organelle, which the model cannot know; its training masks do. So training
records, on the card, a low percentile of the areas of the training objects (the connected pieces
of their 2D instances): ``min_area = percentile(areas, AREA_PERCENTILE)``. Inference uses it whenever
``min_area`` is not given; a model without one (trained before, or on fewer than ``MIN_OBJECTS``
objects) gets ``inference.MIN_AREA``.

The 5th percentile was chosen among the 1st, 2nd, 5th, half the 5th and half the 10th on the
validation blocks of ``benchmarks/accuracy.py`` (15-minute CPU models), F1@0.5 at 128 px -> learned:
Lucchi++ 0.848 -> 0.872 (371 px), CDeep3M 0.606 -> 0.639 (324 px), VNC 0.704 -> 0.749 (681 px). The best
fixed area of 128-768 differs by dataset (768, 384, 768 px); the learned one came within 0.002 of it on
CDeep3M and VNC, and below it on Lucchi++ (0.900 at 768). Figures in ``docs/best_practices.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..postprocess import split_fragments

#: the percentile of the training objects' areas taken as the minimum: 1 object in 20 is smaller
AREA_PERCENTILE = 5.0
#: fewer training objects than this give no minimum (a percentile of a handful is noise)
MIN_OBJECTS = 20


def instance_areas(masks: Sequence[np.ndarray], label_divisor: int | None, thing_list: Sequence[int]) -> np.ndarray:
    """Pixel counts of every connected piece of every object (a thing instance) in 2D training masks.

    Pieces, not ids: a binary mask trained without ``connected_components`` holds all its objects
    under one id, whose total area would say nothing about the size of one; and an object cut by the
    section into two pieces is two objects to 2D inference. Touching objects stay apart by their ids.

    Parameters
    ----------
    masks : sequence of numpy.ndarray
        2D masks as training holds them: instance ids (``label_divisor`` None, one class) or panoptic
        ids ``class * label_divisor + instance``; negative values are unlabelled.
    label_divisor : int or None
        None: every positive id is one object.
    thing_list : sequence of int
        The classes with instances (with ``label_divisor``).

    Returns
    -------
    numpy.ndarray
        One area per piece, in pixels.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[1, 1, 0, 1], [2, 0, 0, -1]])
    >>> sorted(instance_areas([m], None, [1]).tolist())
    [1, 1, 2]
    >>> instance_areas([np.array([[1001, 1001, 0, 2000]])], 1000, [1]).tolist()
    [2]
    """
    out = [np.zeros(0, np.int64)]
    for m in masks:
        m = np.where(m > 0, m, 0).astype(np.int64)  # unlabelled (negative) is no object
        if label_divisor is not None:  # stuff and classes without instances are no object either
            m[~np.isin(m // label_divisor, list(thing_list)) | (m % label_divisor == 0)] = 0
        pieces = split_fragments(m)  # each connected piece of an id gets its own (touching ids stay apart)
        out.append(np.unique(pieces[pieces > 0], return_counts=True)[1])
    return np.concatenate(out)


def min_area_from_objects(areas: np.ndarray) -> int | None:
    """The 2D minimum object area learned from training objects' ``areas`` (None for too few).

    Parameters
    ----------
    areas : numpy.ndarray
        Areas of the training objects (``instance_areas``).

    Returns
    -------
    int or None
        The ``AREA_PERCENTILE`` percentile, at least 1; None with fewer than ``MIN_OBJECTS`` objects.

    Examples
    --------
    >>> import numpy as np
    >>> min_area_from_objects(np.arange(100, 2100, 20))
    199
    >>> min_area_from_objects(np.array([500, 600])) is None
    True
    """
    if len(areas) < MIN_OBJECTS:
        return None
    return max(1, int(np.percentile(areas, AREA_PERCENTILE)))
