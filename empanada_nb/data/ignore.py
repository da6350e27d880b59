"""The "unlabelled" value of training masks (sparse labels): pixels that every loss term skips.

One value, ``IGNORE_LABEL = -1``, stored as *all bits set* in the mask's dtype: -1 in signed masks
(and in the int64 masks training works on), the dtype's maximum in unsigned masks (255 for uint8,
65535 for uint16, 4294967295 for uint32). All-bits-set is the one pattern that fits every integer
dtype empanada_nb writes (the Viewer's uint32 layers, uint8/uint16 masks, int32 predictions), never
collides with an instance id a mask of that dtype can otherwise use up to ``max - 1``, and survives
narrowing integer casts (uint32 -> uint8 keeps 255); widening casts do not keep it, so conversions go
through ``cast_labels``. Floating masks use -1.0.

A uint8 mask that marks objects with 255 (a 0/255 binary mask) reads as "unlabelled" under this rule;
``PanopticDataset`` reads 255 as objects when no mask holds anything else (they cannot be sparse then).
Where both kinds are mixed, save binary masks as 0/1, or train with ``TrainConfig(ignore_unlabelled=False)``.
"""

from __future__ import annotations

import numpy as np

#: the mask value of unlabelled pixels; stored as all bits set in the mask's dtype (``ignore_value``)
IGNORE_LABEL = -1


def ignore_value(dtype) -> int:
    """The ignore (unlabelled) value of a label dtype: all bits set.

    Parameters
    ----------
    dtype : numpy.dtype or type
        An integer or floating dtype.

    Returns
    -------
    int
        The dtype's maximum for unsigned integers, -1 for signed integers and floats.

    Raises
    ------
    TypeError
        For boolean or non-numeric dtypes (they cannot hold the value).

    Examples
    --------
    >>> import numpy as np
    >>> ignore_value(np.uint8), ignore_value(np.uint32), ignore_value(np.int32)
    (255, 4294967295, -1)
    """
    dt = np.dtype(dtype)
    if dt.kind == "u":
        return int(np.iinfo(dt).max)
    if dt.kind in "if":
        return IGNORE_LABEL
    raise TypeError(f"label dtype {dt} cannot hold the ignore value; use an integer dtype such as uint32")


def ignore_mask(labels: np.ndarray) -> np.ndarray:
    """Where ``labels`` holds its dtype's ignore value (unlabelled pixels).

    Parameters
    ----------
    labels : numpy.ndarray
        A label array (boolean arrays have no ignore value: all False).

    Returns
    -------
    numpy.ndarray
        Boolean, of ``labels``' shape.

    Examples
    --------
    >>> import numpy as np
    >>> ignore_mask(np.array([0, 1, 255], np.uint8)).tolist()
    [False, False, True]
    """
    labels = np.asarray(labels)
    if labels.dtype == bool or labels.dtype.kind not in "uif":
        return np.zeros(labels.shape, bool)
    return labels == ignore_value(labels.dtype)


def training_mask(labels: np.ndarray, ignore_unlabelled: bool = True) -> np.ndarray:
    """A mask as training uses it: int64 with ``IGNORE_LABEL`` (-1) at unlabelled pixels.

    Parameters
    ----------
    labels : numpy.ndarray
        A mask as read from disk (any integer, boolean or integral float dtype).
    ignore_unlabelled : bool
        Map the dtype's ignore value to ``IGNORE_LABEL``; False keeps it as an ordinary label.

    Returns
    -------
    numpy.ndarray
        int64 labels.

    Examples
    --------
    >>> import numpy as np
    >>> training_mask(np.array([0, 3, 255], np.uint8)).tolist()
    [0, 3, -1]
    >>> training_mask(np.array([0, 3, 255], np.uint8), ignore_unlabelled=False).tolist()
    [0, 3, 255]
    """
    labels = np.asarray(labels)
    ign = ignore_mask(labels) if ignore_unlabelled else None
    out = labels.astype(np.int64)
    if ign is not None and ign.any():
        out[ign] = IGNORE_LABEL
    return out


def cast_labels(labels: np.ndarray, dtype) -> np.ndarray:
    """Convert labels to ``dtype`` keeping unlabelled pixels unlabelled (the target dtype's ignore value).

    Parameters
    ----------
    labels : numpy.ndarray
        Integer, boolean or integral float labels (floats: -1 is the ignore value).
    dtype : numpy.dtype or type
        The integer dtype to write.

    Returns
    -------
    numpy.ndarray
        The labels in ``dtype``.

    Raises
    ------
    ValueError
        When a label id does not fit in ``dtype`` next to its ignore value (it would wrap around
        or read as unlabelled).

    Examples
    --------
    >>> import numpy as np
    >>> cast_labels(np.array([0, 7, 2**32 - 1], np.uint32), np.uint8).tolist()
    [0, 7, 255]
    >>> cast_labels(np.array([0, 7, 255], np.uint8), np.uint32).tolist()
    [0, 7, 4294967295]
    """
    labels = np.asarray(labels)
    dt = np.dtype(dtype)
    ign = ignore_mask(labels)
    ids = labels[~ign] if ign.any() else labels
    if dt.kind in "ui" and ids.size:
        info = np.iinfo(dt)
        lo, hi = (int(ids.min()), int(ids.max())) if labels.dtype != bool else (0, 1)
        top = info.max - 1 if dt.kind == "u" else info.max  # an unsigned dtype's maximum is the ignore value
        if lo < 0 or hi > top:
            raise ValueError(
                f"label ids {lo}..{hi} do not fit {dt} (ids 0..{top}; {ignore_value(dt)} marks unlabelled); "
                "choose a wider mask dtype such as uint32"
            )
    out = labels.astype(dt)
    if ign.any():
        out[ign] = ignore_value(dt)
    return out


def max_label(labels: np.ndarray) -> int:
    """The largest label id, unlabelled pixels (the ignore value) left out; 0 for no labels.

    Parameters
    ----------
    labels : numpy.ndarray
        A label array.

    Returns
    -------
    int

    Examples
    --------
    >>> import numpy as np
    >>> max_label(np.array([0, 7, 255], np.uint8))
    7
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return 0
    top = int(labels.max())
    if labels.dtype == bool or labels.dtype.kind not in "uif" or top != ignore_value(labels.dtype):
        return max(top, 0)
    return max(int(labels[labels != top].max(initial=0)), 0)
