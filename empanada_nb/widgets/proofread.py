"""Proofreading actions of the viewer, wired to ``empanada_nb.labels``.

Each operation works on the current slice (``scope="slice"``) or on the whole label volume
(``scope="volume"``) of the active layer and is recorded as one undoable edit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .. import labels as L
from .editing import LabelLayer

#: the operations :func:`run` knows, in the order the viewer's panel lists them
OPS = ("merge", "split", "delete", "morph", "filter")
MORPHS = {
    "dilate": "dilate",
    "erode": "erode",
    "open": "open",
    "close": "close",
    "fill holes": "fill_holes",
    "fill_holes": "fill_holes",
}


def _ids(selection: Sequence[dict]) -> list[int]:
    out: list[int] = []
    for s in selection:
        i = int(s["id"] if isinstance(s, dict) else s)
        if i and i not in out:
            out.append(i)
    return out


def run(
    layer: LabelLayer,
    op: str,
    selection: Sequence[dict],
    axis: str,
    index: int,
    scope: str,
    apply: Callable[[LabelLayer, str | None, int | None, np.ndarray], bool],
    morph: str = "dilate",
    radius: int = 1,
    min_size: int = 64,
    min_distance: int = 10,
):
    """Run ``op`` (merge, delete, split, morph, filter); returns ``(changed, message)``.

    ``apply(layer, axis, index, new)`` records the result: ``axis=None`` for the whole volume.
    """
    if scope not in ("slice", "volume"):
        raise ValueError(f"scope must be 'slice' or 'volume', got {scope!r}")
    ids = _ids(selection)
    if scope == "slice":
        view = layer.plane_view(axis, index)
        if view is None:
            raise ValueError(f"layer {layer.name!r} has no slice {index} along {axis}")
        arr = np.ascontiguousarray(view)
        where = f"on {axis} slice {index}"
    else:
        arr = layer.volume
        where = "in the volume"

    def need(n: int, what: str):
        if len(ids) < n:
            raise ValueError(f"{op}: select {what} with the select tool (S) first")

    if op == "merge":
        need(2, "at least two labels")
        new = L.merge_labels(arr, ids)
        msg = f"merged {ids} into {min(ids)} {where}"
    elif op == "delete":
        need(1, "the labels to delete")
        new = L.delete_labels(arr, ids)
        msg = f"deleted {ids} {where}"
    elif op == "split":
        need(1, "the label to split")
        new = arr
        nxt = max(layer.max_label(), int(arr.max(initial=0))) + 1
        split = []
        for i in ids:
            if not (new == i).any():
                continue
            new = L.split_label(new, i, min_distance=min_distance, new_label=nxt)
            after = int(new.max(initial=0))
            if after >= nxt:
                split.append(i)
                nxt = after + 1
        msg = f"split {split} {where}" if split else f"nothing to split for {ids} {where}"
    elif op == "morph":
        need(1, "the labels")
        mop = MORPHS.get(morph)
        if mop is None:
            raise ValueError(f"unknown morphological operation {morph!r}")
        new = arr
        for i in ids:
            if (new == i).any():
                new = L.morph_label(new, i, mop, radius=int(radius))
        msg = f"{morph} (radius {radius}) on {ids} {where}"
    elif op == "filter":
        new = L.filter_labels(arr, min_size=int(min_size))
        msg = f"removed labels smaller than {min_size} {where}"
    else:
        raise ValueError(f"unknown proofreading operation {op!r}")
    if new is arr:
        return False, msg + " (no change)"
    changed = apply(layer, axis if scope == "slice" else None, index if scope == "slice" else None, new)
    return changed, msg if changed else msg + " (no change)"
