"""Proofreading actions of the viewer, wired to ``empanada_nb.labels``.

Each operation works on the current slice (``scope="slice"``) or on the whole label volume
(``scope="volume"``) of the active layer and is recorded as one undoable edit (the viewer's one
history, shared with painting and filling). Split takes user-placed markers (``{axis, index, row,
col}``, the viewer's marker tool) as watershed seeds when there are any, else distance-transform peaks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .. import labels as L
from ..geometry import plane_to_volume
from .editing import LabelLayer

#: the operations ``run`` knows, in the order the viewer's panel lists them
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


def marker_points(markers: Sequence[dict], axis: str, index: int, scope: str) -> np.ndarray:
    """Markers as array coordinates: ``(row, col)`` on slice ``index`` along ``axis``, or ``(z, y, x)`` (volume)."""
    if scope == "slice":
        pts = [(m["row"], m["col"]) for m in markers if m["axis"] == axis and int(m["index"]) == int(index)]
        return np.floor(np.asarray(pts, float)).astype(np.int64).reshape(-1, 2)
    pts = [plane_to_volume(m["axis"], int(m["index"]), int(m["row"]), int(m["col"])) for m in markers]
    return np.asarray(pts, np.int64).reshape(-1, 3)


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
    markers: Sequence[dict] = (),
    remove_border: bool = False,
    max_hole_size: int | None = None,
    label_divisor: int | None = None,
):
    """Run ``op`` (merge, delete, split, morph, filter); returns ``(changed, message)``.

    ``apply(layer, axis, index, new)`` records the result: ``axis=None`` for the whole volume.
    ``markers`` seed the split (at least two inside a label split it there); ``remove_border``
    also filters labels touching the border; ``max_hole_size`` limits ``fill holes``; with
    ``label_divisor`` the pieces of a split get free ids of the split label's class.
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
        pts = marker_points(markers, axis, index, scope) if markers else None
        if pts is not None and not ids:
            # no selection: split the labels under the markers
            ids = [int(i) for i in dict.fromkeys(arr[tuple(pts.T)].tolist()) if i] if len(pts) else []
        need(1, "the label to split (or place markers on it with the marker tool, K)")
        if pts is not None and len(pts) < 2:
            raise ValueError(f"split: place at least two markers {where} (marker tool, K)")
        new = arr
        nxt = max(layer.max_label(), int(arr.max(initial=0))) + 1
        split = []
        for i in ids:
            if not (new == i).any():
                continue
            if label_divisor:  # the next free id of the label's class, in the layer and in this result
                cls = i // label_divisor
                nxt = max(L.next_label(layer.volume, cls, label_divisor), L.next_label(new, cls, label_divisor))
            new = L.split_label(
                new, i, min_distance=min_distance, points=pts, new_label=nxt, label_divisor=label_divisor or None
            )
            if (new == nxt).any():
                split.append(i)
                while (new == nxt).any():
                    nxt += 1
        msg = f"split {split} {where}" if split else f"nothing to split for {ids} {where}"
    elif op == "morph":
        need(1, "the labels")
        mop = MORPHS.get(morph)
        if mop is None:
            raise ValueError(f"unknown morphological operation {morph!r}")
        new = arr
        for i in ids:
            if (new == i).any():
                new = L.morph_label(new, i, mop, radius=int(radius), max_hole_size=max_hole_size)
        size = f"holes up to {max_hole_size}" if mop == "fill_holes" and max_hole_size else f"radius {radius}"
        msg = f"{morph} ({size}) on {ids} {where}"
    elif op == "filter":
        new = L.filter_labels(arr, min_size=int(min_size), remove_border=bool(remove_border))
        border = " or touching the border" if remove_border else ""
        msg = f"removed labels smaller than {min_size}{border} {where}"
    else:
        raise ValueError(f"unknown proofreading operation {op!r}")
    if new is arr:
        return False, msg + " (no change)"
    changed = apply(layer, axis if scope == "slice" else None, index if scope == "slice" else None, new)
    return changed, msg if changed else msg + " (no change)"


class ProofreadTools:
    """Mixin of ``empanada_nb.widgets.Viewer``: proofreading, markers, jump to label, label counts.

    Every label change goes through the viewer's one commit path (``_commit``), so all of them share
    one undo history with painting and filling.
    """

    def proofread(
        self,
        op: str,
        selection: Sequence[dict] = (),
        axis: str | None = None,
        index: int | None = None,
        scope: str = "slice",
        layer=None,
        **kwargs,
    ) -> bool:
        """Run a proofreading operation from ``empanada_nb.labels`` on a layer, as one undoable step.

        The outcome is also written to ``message`` (the status line).

        Parameters
        ----------
        op : str
            ``"merge"``, ``"split"``, ``"delete"``, ``"morph"`` or ``"filter"`` (listed in ``proofreading``).
        selection : sequence of dict or int
            The selected labels: ``{"id": label, ...}`` dicts (as the select tool makes them) or ids.
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        index : int, optional
            The slice along ``axis`` (the current one by default).
        scope : str
            ``"slice"``: change that slice only; ``"volume"``: the whole label volume.
        layer : str or int, optional
            The layer's name or uid (the active layer by default); it must be editable.
        **kwargs
            Options of the operation: ``morph`` (``"dilate"``, ``"erode"``, ``"open"``, ``"close"``,
            ``"fill holes"``), ``radius`` and ``max_hole_size`` for ``"morph"``; ``min_size`` and
            ``remove_border`` for ``"filter"``; ``markers`` (default: the viewer's ``markers``, used up
            by a split) and ``min_distance`` for ``"split"``, whose new ids stay in the label's class
            when ``label_divisor`` is set.

        Returns
        -------
        bool
            True if labels changed (the selection is then cleared).

        Examples
        --------
        >>> from empanada_nb import Viewer
        >>> labels = np.zeros((2, 32, 32), np.uint32)
        >>> labels[:, 2:10, 2:10], labels[:, 20:30, 20:30] = 1, 2
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=labels)
        >>> v.proofread("merge", [{"id": 1}, {"id": 2}], index=1), v.message
        (True, 'merged [1, 2] into 1 on xy slice 1')
        >>> np.unique(labels[1]), np.unique(labels[0])
        (array([0, 1], dtype=uint32), array([0, 1, 2], dtype=uint32))
        >>> v.proofread("delete", [1], scope="volume"), np.unique(labels)
        (True, array([0, 2], dtype=uint32))
        """
        from ..geometry import check_axis

        with self._lock:
            lay = self._edit_layer(layer)
            axis = check_axis(axis or self.axis)
            index = self.slice_index if index is None else int(index)
            if op == "split" and "markers" not in kwargs and self.markers:
                kwargs["markers"] = list(self.markers)
            if op == "split":
                kwargs.setdefault("label_divisor", self.label_divisor or None)
            changed, msg = run(lay, op, list(selection), axis, index, scope, self._apply_region, **kwargs)
            self.message = msg
            if changed:
                self.selection = []
                if op == "split" and kwargs.get("markers"):
                    self.markers = []
            return changed

    def _apply_region(self, lay: LabelLayer, axis: str | None, index: int | None, new: np.ndarray) -> bool:
        """Record replacing one slice (axis, index) or the whole volume (axis None) by ``new``."""
        from .editing import diff_slice, diff_volume

        return self._commit(diff_volume(lay, new) if axis is None else diff_slice(lay, axis, int(index), new))

    # ---------------------------------------------------------------------------------- markers
    def add_marker(self, axis: str, index: int, row: float, col: float) -> dict:
        """Place a split seed (the marker tool, K) at ``(row, col)`` of slice ``index`` along ``axis``.

        Parameters
        ----------
        axis : str
            ``"xy"``, ``"xz"`` or ``"yz"``.
        index : int
            The slice along ``axis``.
        row, col : float
            The position on the slice.

        Returns
        -------
        dict
            The marker ``{"axis", "index", "row", "col"}`` (appended to ``markers``).

        Examples
        --------
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((8, 8), np.uint8))
        >>> v.add_marker("xy", 0, 2, 3)
        {'axis': 'xy', 'index': 0, 'row': 2.0, 'col': 3.0}
        """
        from ..geometry import check_axis

        marker = {"axis": check_axis(axis), "index": int(index), "row": float(row), "col": float(col)}
        self.markers = self.markers + [marker]
        return marker

    def clear_markers(self) -> None:
        """Remove every split seed.

        Returns
        -------
        None

        Examples
        --------
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((8, 8), np.uint8))
        >>> _ = v.add_marker("xy", 0, 2, 3)
        >>> v.clear_markers(), v.markers
        (None, [])
        """
        self.markers = []

    # --------------------------------------------------------------------------------- label ids
    def new_label(self, class_id: int | None = None) -> int:
        """Set ``current_label`` to a free id.

        Parameters
        ----------
        class_id : int, optional
            With ``label_divisor`` set: the next free instance id of this class. Without: one above the
            active layer's maximum.

        Returns
        -------
        int
            The new ``current_label`` (1, or the class's first id, without label layers).

        Examples
        --------
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((8, 8), np.uint8), labels=np.full((8, 8), 2003, np.uint32), label_divisor=1000)
        >>> v.new_label(), v.new_label(class_id=2), v.new_label(class_id=1)
        (2004, 2004, 1001)
        """
        layer = self._active(create=False)
        if class_id is not None and not self.label_divisor:
            raise ValueError("set label_divisor (e.g. 1000) to pick ids within a class")
        if layer is None:
            self.current_label = 1 if class_id is None else int(class_id) * self.label_divisor + 1
        elif class_id is None:
            self.current_label = int(L.next_label(layer.volume))
        else:
            self.current_label = int(L.next_label(layer.volume, int(class_id), self.label_divisor))
        self.message = f"next free label id: {self.current_label}"
        return self.current_label

    def jump_to_label(self, label_id: int, layer=None, axis: str | None = None) -> tuple[int, tuple[float, float]]:
        """Show the first slice (along ``axis``) that holds ``label_id``, centred on the label.

        Parameters
        ----------
        label_id : int
            The label to find.
        layer : str or int, optional
            The layer (the active one by default).
        axis : str, optional
            The viewing axis (the shown one by default).

        Returns
        -------
        tuple
            ``(slice index, (row, col))``: the slice and the label's centre on it.

        Examples
        --------
        >>> from empanada_nb import Viewer
        >>> lab = np.zeros((4, 8, 8), np.uint32); lab[2:, 4:6, 2:4] = 7
        >>> v = Viewer(np.zeros((4, 8, 8), np.uint8), labels=lab)
        >>> v.jump_to_label(7), v.slice_index
        ((2, (4.5, 2.5)), 2)
        """
        from ..geometry import AXIS_DIMS, check_axis

        lay = self.layer(layer) if layer is not None else self._active(create=False)
        if lay is None or lay.plane is not None:
            raise ValueError("jump to label needs a label layer of the image's shape")
        axis = check_axis(axis or self.axis)
        fixed, (rd, cd) = AXIS_DIMS[axis]
        box = L.label_boxes(lay.volume, int(label_id)).get(int(label_id))
        if box is None:
            raise ValueError(f"label {label_id} is not in layer {lay.name!r}")
        index = box[fixed].start
        sl = list(box)
        sl[fixed] = index
        rows, cols = np.nonzero(lay.volume[tuple(sl)] == int(label_id))
        center = (float(rows.mean() + box[rd].start), float(cols.mean() + box[cd].start))
        self.goto(axis, index, center=center)
        self.message = f"label {label_id}: first {axis} slice {index}"
        return index, center

    # ------------------------------------------------------------------------------- label counts
    def count_labels(self, per_slice: bool = False, layer=None) -> list[dict]:
        """Count the objects of a layer per class (and per slice along the shown axis), with their ids.

        Uses ``label_divisor`` (0: every id is an object of class 1) and ``class_names``; the table is kept
        in ``label_counts`` (shown in the viewer). See ``empanada_nb.labels.label_table``.

        Parameters
        ----------
        per_slice : bool
            One row per class and slice.
        layer : str or int, optional
            The layer (the active one by default).

        Returns
        -------
        list of dict
            Rows ``{"class", "name", "slice", "count", "ids"}``.

        Examples
        --------
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((8, 8), np.uint8), labels=np.arange(64, dtype=np.uint32).reshape(8, 8) % 3)
        >>> [(r["class"], r["count"], r["ids"]) for r in v.count_labels()]
        [(1, 2, [1, 2])]
        """
        lay = self.layer(layer) if layer is not None else self._active(create=False)
        if lay is None:
            raise ValueError("no label layer to count")
        arr = lay.data if lay.plane is not None or self.source.ndim == 2 else lay.volume
        rows = L.label_table(arr, self.label_divisor or None, list(self.class_names), per_slice, self.axis)
        self.label_counts = rows
        total = sum(r["count"] for r in rows if r["slice"] is None) if not per_slice else len(rows)
        self.message = f"counted {total} object(s) in {lay.name!r}" if not per_slice else f"{total} row(s)"
        return rows

    def export_label_counts(self, path, overwrite: bool = False):
        """Write ``label_counts`` (count first) to ``.csv`` or ``.xlsx`` (``empanada_nb.labels.export_label_table``).

        Parameters
        ----------
        path : str or os.PathLike
            The ``.csv`` or ``.xlsx`` file.
        overwrite : bool
            Replace an existing file.

        Returns
        -------
        pathlib.Path
            The written file.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((8, 8), np.uint8), labels=np.eye(8, dtype=np.uint32) * 4)
        >>> _ = v.count_labels()
        >>> v.export_label_counts(Path(tempfile.mkdtemp()) / "n.csv").read_text().splitlines()[1]
        '1,1,,1,4'
        """
        if not self.label_counts:
            raise ValueError("nothing to export: count the labels first")
        out = L.export_label_table(self.label_counts, path, overwrite=overwrite)
        self.message = f"saved label counts to {out}"
        return out
