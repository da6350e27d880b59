"""The viewer's label edits: paint, fill, replace a slice or the volume, undo and redo (a Viewer mixin).

Every label change goes through one commit path (``LabelEdits._commit``): record the diff for undo,
send the changed pixels to the browser, done. The diffs themselves are computed by ``editing``.
"""

from __future__ import annotations

import numpy as np

from ..geometry import check_axis, plane_shape
from . import _serialization as S
from .editing import Edit, LabelLayer, apply_fill, apply_stroke, diff_slice, diff_volume


class LabelEdits:
    """Mixin of ``Viewer``: edits of its label layers, with one undo history.

    Needs the Viewer's label layers (``LabelLayers``), ``history`` and message sending; its public
    methods are documented as the Viewer's.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb import Viewer
    >>> from empanada_nb.widgets._edits import LabelEdits
    >>> isinstance(Viewer(np.zeros((2, 32, 32), np.uint8)), LabelEdits)
    True
    """

    def _push_edit(self, edit: Edit, stroke: int | None = None, values: str = "after") -> None:
        """Send the browser what ``edit`` changed, then bump the layer version."""
        layer = edit.layer
        layer.version += 1
        self._autosave_edit(edit)
        if edit.where:
            patch = edit.after if values == "after" else edit.before
            content, buf = S.patch_update(layer.uid, layer.version, edit.where, patch, stroke)
            self.send(content, buffers=[buf])
        else:
            self._push_full(layer, stroke=stroke)
        self._sync_layers()

    def _push_full(self, layer: LabelLayer, stroke: int | None = None) -> None:
        """Send the current slice of ``layer`` whole; every other cached slice of it becomes stale."""
        axis, index = layer.plane if layer.plane is not None else (self.axis, self.slice_index)
        shape = plane_shape(self.source.shape, axis)
        view = layer.plane_view(axis, index)
        content, buffers = S.full_update(layer.uid, layer.version, axis, index, shape, view, stroke)
        self.send(content, buffers=buffers)

    # ---------------------------------------------------------------------------------- editing
    def _edit_layer(self, layer) -> LabelLayer:
        lay = self._layer_by_uid(layer) if isinstance(layer, int) and not isinstance(layer, bool) else None
        if lay is None and layer is not None and not isinstance(layer, int):
            lay = self.layer(layer)
        if lay is None:
            lay = self._active(create=True)
        if not lay.editable:
            raise ValueError(f"label layer {lay.name!r} is not editable")
        return lay

    def paint(
        self,
        points,
        size: float | None = None,
        label: int | None = None,
        axis: str | None = None,
        index: int | None = None,
        erase: bool = False,
        layer=None,
        unlabelled: bool = False,
        _stroke=None,
    ) -> bool:
        """Paint (or erase, or mark unlabelled) a stroke through ``points`` on one slice, as one undoable step.

        Parameters
        ----------
        points : sequence of (float, float)
            ``[row, col]`` points of the stroke on the slice.
        size : float, optional
            Brush diameter in pixels (``brush_size`` by default).
        label : int, optional
            The label painted (``current_label`` by default).
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        index : int, optional
            The slice along ``axis`` (the current one by default).
        erase : bool
            Set the stroke's pixels to 0 instead.
        layer : str or int, optional
            The layer's name or uid (the active layer by default); it must be editable.
        unlabelled : bool
            Mark the stroke's pixels unlabelled for training (sparse labels): the layer dtype's ignore
            value (``ignore_value``: 4294967295 in a uint32 layer), which ``save_patches`` keeps and
            the training loss skips. The Viewer's "unlabelled" tool (U) paints with it.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.paint([[4, 4], [4, 20]], size=3, label=5, index=0), int(v.labels[0].max()), int(v.labels[1].max())
        (True, 5, 0)
        >>> v.paint([[4, 4], [4, 20]], size=5, erase=True, index=0), int(v.labels.max())
        (True, 0)
        >>> v.paint([[20, 4], [20, 20]], size=3, index=1, unlabelled=True), int(v.labels[1, 20, 10])
        (True, 4294967295)
        """
        with self._lock:
            lay = self._edit_layer(layer)
            axis = check_axis(axis or self.axis)
            index = self.slice_index if index is None else int(index)
            if unlabelled:
                label = lay.ignore_value
            edit = apply_stroke(
                lay,
                axis,
                index,
                points,
                size or self.brush_size,
                self.current_label if label is None else label,
                erase=erase and not unlabelled,
            )
            if edit is None and _stroke is not None:  # let the browser drop its preview
                self.send(S.noop_update(lay.uid, lay.version, axis, index, _stroke))
            return self._commit(edit, stroke=_stroke)

    def fill(
        self,
        row: int,
        col: int,
        label: int | None = None,
        axis: str | None = None,
        index: int | None = None,
        layer=None,
    ) -> bool:
        """Flood-fill the connected region under ``(row, col)`` of one slice, as one undoable step.

        Parameters
        ----------
        row : int
            Row of the pixel whose connected region (the pixels of its label) is filled.
        col : int
            Its column.
        label : int, optional
            The label filled in (``current_label`` by default).
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        index : int, optional
            The slice along ``axis`` (the current one by default).
        layer : str or int, optional
            The layer's name or uid (the active layer by default); it must be editable.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> labels = np.zeros((2, 32, 32), np.uint32)
        >>> labels[:, 8, :] = 1  # a line splits each slice into two regions
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=labels)
        >>> v.fill(0, 0, label=2, index=1), int((labels[1] == 2).sum()), int((labels[0] == 2).sum())
        (True, 256, 0)
        """
        with self._lock:
            lay = self._edit_layer(layer)
            axis = check_axis(axis or self.axis)
            index = self.slice_index if index is None else int(index)
            return self._commit(apply_fill(lay, axis, index, row, col, self.current_label if label is None else label))

    def apply_labels(self, new: np.ndarray, layer=None, description: str = "") -> bool:
        """Replace a layer's labels by ``new`` (same shape) as one undoable step.

        Parameters
        ----------
        new : numpy.ndarray
            The new labels, of the layer's shape.
        layer : str or int, optional
            The layer's name or uid (the active layer by default); it must be editable.
        description : str
            Shown in the status line when labels changed.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.apply_labels(np.ones((2, 32, 32), np.uint32), description="all ones"), v.message
        (True, 'all ones')
        >>> v.undo(), int(v.labels.max())
        (True, 0)
        """
        with self._lock:
            return self._commit(diff_volume(self._edit_layer(layer), new), message=description)

    def set_slice(self, layer, axis: str, index: int, labels: np.ndarray, description: str = "") -> bool:
        """Replace slice ``index`` along ``axis`` of ``layer`` by ``labels`` as one undoable step.

        Only the changed box of that slice is stored for undo and sent to the browser, so writing one
        slice of a large volume costs one slice, not a copy of the volume.

        Parameters
        ----------
        layer : str or int or None
            A layer name, list index or uid (None: the active layer).
        axis : str
            ``"xy"``, ``"xz"`` or ``"yz"``.
        index : int
            The slice along ``axis``.
        labels : numpy.ndarray
            Labels of the slice's shape.
        description : str, optional
            Shown in the status line when labels changed.

        Returns
        -------
        bool
            True if labels changed.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((3, 8, 8), np.uint8), labels=np.zeros((3, 8, 8), np.uint32))
        >>> v.set_slice("labels", "xy", 1, np.ones((8, 8), np.uint32)), int(v.labels.sum())
        (True, 64)
        >>> v.undo(), int(v.labels.sum())
        (True, 0)
        """
        with self._lock:
            lay = self._edit_layer(layer)
            return self._commit(diff_slice(lay, check_axis(axis), int(index), labels), message=description)

    def _commit(self, edit: Edit | None, stroke: int | None = None, message: str = "") -> bool:
        """The one path of every label change: record it for undo, send it to the browser."""
        if edit is None:
            return False
        self.history.record(edit)
        self._push_edit(edit, stroke=stroke)
        if message:
            self.message = message
        return True

    def undo(self) -> bool:
        """Undo the last label change (of any layer).

        Returns
        -------
        bool
            True if there was a change to undo.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.paint([[16, 16]], size=4, label=3), v.can_undo
        (True, True)
        >>> v.undo(), int(v.labels.max()), v.can_redo
        (True, 0, True)
        >>> v.undo(), v.message
        (False, 'nothing to undo')
        """
        with self._lock:
            e = self.history.undo()
            if e is None:
                self.message = "nothing to undo"
                return False
            self._push_edit(e, values="before")
            return True

    def redo(self) -> bool:
        """Redo the last undone label change.

        Returns
        -------
        bool
            True if there was a change to redo.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.paint([[16, 16]], size=4, label=3), v.undo(), v.redo(), int(v.labels.max())
        (True, True, True, 3)
        >>> v.redo(), v.message
        (False, 'nothing to redo')
        """
        with self._lock:
            e = self.history.redo()
            if e is None:
                self.message = "nothing to redo"
                return False
            self._push_edit(e, values="after")
            return True

    # ------------------------------------------------------------------------------- navigation
