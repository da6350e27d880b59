"""Label layers and slice edits with an undo/redo history, independent of any widget.

A ``LabelLayer`` holds an integer label array of the image's shape (edited in place when it is
a writable numpy array, else copied once). Edits (a brush stroke, a fill, a replaced slice
(``diff_slice``), a whole-volume operation (``diff_volume``)) are applied in place and
returned as ``Edit`` diffs, which a ``History`` undoes and redoes.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.ignore import ignore_value, max_label
from ..geometry import check_axis, plane_index, plane_shape

_uids = itertools.count(1)


class LabelLayer:
    """A label overlay: ``data`` (the user's array), ``name``, ``opacity``, ``visible``, ``editable``.

    ``plane=(axis, index)`` makes a slice-only layer: ``data`` is 2D and shown on that slice only
    (used for live previews of a prediction on the current slice).
    """

    def __init__(
        self,
        data: Any,
        name: str,
        shape: Sequence[int],
        opacity: float = 0.5,
        visible: bool = True,
        editable: bool = True,
        plane: tuple[str, int] | None = None,
    ):
        self.uid = next(_uids)
        self.name = str(name)
        self.opacity = float(opacity)
        self.visible = bool(visible)
        self.editable = bool(editable)
        self.plane = (check_axis(plane[0]), int(plane[1])) if plane is not None else None
        self.version = 0
        self._shape3 = tuple(int(s) for s in shape)
        self.set_data(data)

    def set_data(self, data: Any) -> None:
        if hasattr(data, "compute"):
            data = data.compute()
        if not isinstance(data, np.ndarray):
            data = np.array(data)  # zarr arrays, lists, ...: one in-memory copy that edits go to
        if data.dtype == bool:
            data = data.astype(np.uint32)
        if data.dtype.kind not in "ui":
            if data.dtype.kind == "f" and data.size and np.all(np.mod(data, 1) == 0):
                data = data.astype(np.int64 if data.min() < 0 else np.uint32)
            else:
                raise TypeError(f"label layer {self.name!r}: labels must be integers, got dtype {data.dtype}")
        if not data.flags.writeable:
            data = data.copy()
        if self.plane is not None:
            want = plane_shape(self._shape3, self.plane[0])
            if data.shape != want:
                raise ValueError(f"slice layer {self.name!r}: expected shape {want}, got {data.shape}")
            vol = data
        else:
            want2 = self._shape3[1:] if self._shape3[0] == 1 else None
            if data.shape == self._shape3:
                vol = data
            elif want2 is not None and data.shape == tuple(want2):
                vol = data[None]
            else:
                raise ValueError(
                    f"label layer {self.name!r}: shape {data.shape} does not match the image "
                    f"shape {self._shape3 if want2 is None else tuple(want2)}"
                )
        self.data = data
        self._vol = vol
        self._max: int | None = None
        self.version += 1

    @property
    def volume(self) -> np.ndarray:
        """The labels as ``(Z, Y, X)`` (a view of ``data``); 2D for slice layers."""
        return self._vol

    def plane_view(self, axis: str, index: int) -> np.ndarray | None:
        """A view of slice ``index`` along ``axis`` (None where a slice layer has no data)."""
        if self.plane is not None:
            return self._vol if self.plane == (axis, int(index)) else None
        return self._vol[plane_index(axis, index)]

    def region_index(self, axis: str, index: int, r0: int, r1: int, c0: int, c1: int) -> tuple:
        if self.plane is not None:
            return (slice(r0, r1), slice(c0, c1))
        return plane_index(axis, index, slice(r0, r1), slice(c0, c1))

    def max_label(self) -> int:
        """The largest id in the layer; the unlabelled value (sparse labels) is no id."""
        if self._max is None:
            self._max = max_label(self._vol)
        return self._max

    def note_label(self, label: int) -> None:
        if label == self.ignore_value:
            return
        if self._max is not None and label > self._max:
            self._max = int(label)

    @property
    def ignore_value(self) -> int:
        """The value that marks unlabelled pixels in this layer's dtype (``ignore_value``)."""
        return ignore_value(self._vol.dtype)

    def forget_max(self) -> None:
        self._max = None

    def check_label(self, label: int) -> None:
        info = np.iinfo(self._vol.dtype)
        if not info.min <= int(label) <= info.max:
            raise ValueError(f"label {label} does not fit in layer {self.name!r} of dtype {self._vol.dtype}")

    def meta(self) -> dict:
        return {
            "uid": self.uid,
            "name": self.name,
            "opacity": self.opacity,
            "visible": self.visible,
            "editable": self.editable,
            "version": self.version,
            "plane": list(self.plane) if self.plane is not None else None,
            "dtype": str(self._vol.dtype),
            "unlabelled": self.ignore_value,  # drawn hatched grey by the browser
        }


class Edit:
    """One undoable change of a layer: a box (index, before, after) or sparse voxels (flat, before, after)."""

    def __init__(
        self,
        layer: LabelLayer,
        before: np.ndarray,
        after: np.ndarray,
        index: tuple | None = None,
        flat: np.ndarray | None = None,
        where: dict | None = None,
    ):
        self.layer = layer
        self.index = index
        self.flat = flat
        self.before = before
        self.after = after
        self.where = where or {}  # {"axis", "index", "r0", "c0", "h", "w"} for slice edits

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes + (self.flat.nbytes if self.flat is not None else 0)

    def _put(self, values: np.ndarray) -> None:
        vol = self.layer.volume
        if self.flat is not None:
            vol[np.unravel_index(self.flat, vol.shape)] = values
        else:
            vol[self.index] = values
        self.layer.forget_max()

    def undo(self) -> None:
        self._put(self.before)

    def redo(self) -> None:
        self._put(self.after)


def diff_volume(layer: LabelLayer, new: np.ndarray) -> Edit | None:
    """Replace ``layer``'s labels by ``new`` (same shape) in place; returns the sparse Edit (None if equal)."""
    vol = layer.volume
    new = np.asarray(new)
    if new.shape != vol.shape:
        if new.shape == vol.shape[1:] and vol.shape[0] == 1:
            new = new[None]
        else:
            raise ValueError(f"new labels of shape {new.shape} do not match the layer's {vol.shape}")
    changed = np.flatnonzero(vol != new)
    if changed.size == 0:
        return None
    idx = np.unravel_index(changed, vol.shape)
    before = vol[idx].copy()
    after = new[idx].astype(vol.dtype)
    vol[idx] = after
    layer.forget_max()
    return Edit(layer, before, after, flat=changed)


def diff_slice(layer: LabelLayer, axis: str, index: int, new: np.ndarray) -> Edit | None:
    """Replace slice ``index`` along ``axis`` of ``layer`` by ``new`` in place.

    Parameters
    ----------
    layer : LabelLayer
        The layer to change.
    axis : str
        ``"xy"``, ``"xz"`` or ``"yz"``.
    index : int
        The slice along ``axis``.
    new : numpy.ndarray
        Labels of the slice's shape.

    Returns
    -------
    Edit or None
        The bounding box of the changed pixels (None when nothing changed).

    Examples
    --------
    >>> layer = LabelLayer(np.zeros((2, 4, 4), np.uint32), "l", (2, 4, 4))
    >>> new = np.zeros((4, 4), np.uint32); new[1, 2] = 5
    >>> diff_slice(layer, "xy", 1, new).where
    {'axis': 'xy', 'index': 1, 'r0': 1, 'c0': 2, 'h': 1, 'w': 1}
    """
    view = layer.plane_view(axis, index)
    if view is None:
        raise ValueError(f"layer {layer.name!r} has no slice {index} along {axis}")
    new = np.asarray(new)
    if new.shape != view.shape:
        raise ValueError(f"slice labels of shape {new.shape} do not match the slice's {view.shape}")
    new = new.astype(view.dtype, copy=False)
    diff = view != new
    if not diff.any():
        return None
    rows, cols = np.nonzero(diff)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    idx = layer.region_index(axis, index, r0, r1, c0, c1)
    before = layer.volume[idx].copy()
    after = new[r0:r1, c0:c1].copy()
    layer.volume[idx] = after
    layer.forget_max()
    where = {"axis": axis, "index": int(index), "r0": r0, "c0": c0, "h": r1 - r0, "w": c1 - c0}
    return Edit(layer, before, after, index=idx, where=where)


class History:
    """Undo and redo stacks of ``Edit`` (``max_steps`` undo steps, oldest dropped first)."""

    def __init__(self, max_steps: int = 50, max_bytes: int = 1 << 30):
        self.max_steps = int(max_steps)
        self.max_bytes = int(max_bytes)
        self._undo: collections.deque[Edit] = collections.deque()
        self._redo: list[Edit] = []

    def record(self, edit: Edit | None) -> None:
        if edit is None:
            return
        self._undo.append(edit)
        self._redo.clear()
        while len(self._undo) > self.max_steps or (
            len(self._undo) > 1 and sum(e.nbytes for e in self._undo) > self.max_bytes
        ):
            self._undo.popleft()

    def undo(self) -> Edit | None:
        if not self._undo:
            return None
        e = self._undo.pop()
        e.undo()
        self._redo.append(e)
        return e

    def redo(self) -> Edit | None:
        if not self._redo:
            return None
        e = self._redo.pop()
        e.redo()
        self._undo.append(e)
        return e

    def drop_layer(self, layer: LabelLayer) -> None:
        self._undo = collections.deque(e for e in self._undo if e.layer is not layer)
        self._redo = [e for e in self._redo if e.layer is not layer]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)


def stroke_mask(points: Sequence[Sequence[float]], size: float, plane_shape: tuple[int, int]):
    """Pixels within ``size / 2`` of the polyline through ``points`` (continuous ``[row, col]``).

    Returns ``(r0, c0, mask)`` with ``mask`` the bounding box of the stroke clipped to the slice,
    or None when the stroke lies outside. Pixel ``(r, c)`` is painted when its centre
    ``(r + 0.5, c + 0.5)`` is within ``size / 2`` of the stroke, like the browser's preview (a line
    with round caps of width ``size``); a brush of size 1 paints at least the pixel under each point.
    """
    from scipy.ndimage import distance_transform_edt

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if pts.size == 0:
        return None
    radius = max(0.5, float(size) / 2.0)
    # points every 0.5 px along the polyline -> the pixels they fall in
    seq = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = int(np.ceil(np.hypot(*(b - a)) / 0.5))
        if n > 0:
            t = np.arange(1, n + 1)[:, None] / n
            seq.append(a + (b - a) * t)
    dense = np.floor(np.concatenate(seq)).astype(np.int64)
    pad = int(np.ceil(radius)) + 1
    lo = dense.min(0) - pad
    hi = dense.max(0) + pad + 1
    h, w = plane_shape
    r0, c0 = max(0, int(lo[0])), max(0, int(lo[1]))
    r1, c1 = min(h, int(hi[0])), min(w, int(hi[1]))
    if r0 >= r1 or c0 >= c1:
        return None
    # seeds in a frame padded beyond the clip so that distances near the border stay right
    fr0, fc0 = int(lo[0]), int(lo[1])
    seed = np.ones((int(hi[0] - lo[0]), int(hi[1] - lo[1])), dtype=bool)
    seed[dense[:, 0] - fr0, dense[:, 1] - fc0] = False
    dist = distance_transform_edt(seed)
    mask = dist <= radius + 1e-6
    mask = mask[r0 - fr0 : r1 - fr0, c0 - fc0 : c1 - fc0]
    if not mask.any():
        return None
    return r0, c0, mask


def apply_stroke(
    layer: LabelLayer,
    axis: str,
    index: int,
    points,
    size: float,
    label: int,
    erase: bool = False,
    preserve_labels: bool = False,
) -> Edit | None:
    """Paint (or erase) a stroke on slice ``index`` along ``axis``; returns the Edit (None if nothing changed)."""
    view = layer.plane_view(axis, index)
    if view is None:
        raise ValueError(f"layer {layer.name!r} has no slice {index} along {axis}")
    label = 0 if erase else int(label)
    layer.check_label(label)
    res = stroke_mask(points, size, view.shape)
    if res is None:
        return None
    r0, c0, mask = res
    h, w = mask.shape
    idx = layer.region_index(axis, index, r0, r0 + h, c0, c0 + w)
    box = layer.volume[idx]
    before = box.copy()
    after = before.copy()
    if preserve_labels and not erase:
        mask = mask & (before == 0)
    after[mask] = label
    if np.array_equal(before, after):
        return None
    layer.volume[idx] = after
    if erase:
        layer.forget_max()
    else:
        layer.note_label(label)
    return Edit(
        layer, before, after, index=idx, where={"axis": axis, "index": int(index), "r0": r0, "c0": c0, "h": h, "w": w}
    )


def apply_fill(layer: LabelLayer, axis: str, index: int, row: int, col: int, label: int) -> Edit | None:
    """Flood-fill the 4-connected region of equal labels under ``(row, col)`` with ``label``."""
    from skimage.segmentation import flood

    view = layer.plane_view(axis, index)
    if view is None:
        raise ValueError(f"layer {layer.name!r} has no slice {index} along {axis}")
    label = int(label)
    layer.check_label(label)
    row, col = int(row), int(col)
    if not (0 <= row < view.shape[0] and 0 <= col < view.shape[1]):
        return None
    if int(view[row, col]) == label:
        return None
    mask = flood(np.asarray(view), (row, col), connectivity=1)
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    idx = layer.region_index(axis, index, r0, r1, c0, c1)
    before = layer.volume[idx].copy()
    after = before.copy()
    after[mask[r0:r1, c0:c1]] = label
    layer.volume[idx] = after
    layer.forget_max()
    return Edit(
        layer,
        before,
        after,
        index=idx,
        where={"axis": axis, "index": int(index), "r0": int(r0), "c0": int(c0), "h": int(r1 - r0), "w": int(c1 - c0)},
    )
