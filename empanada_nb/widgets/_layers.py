"""The viewer's label layers: add, replace, remove and refresh them (a Viewer mixin).

A layer (``editing.LabelLayer``) holds one label array with its undo history's state; the browser
is told of layers through the synced ``layers`` trait and gets their pixels slice by slice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import check_axis
from .editing import LabelLayer


class LabelLayers:
    """Mixin of ``Viewer``: its label layers.

    Needs the Viewer's ``source``, ``label_layers``, ``layers`` and ``active_layer``; its public
    methods are documented as the Viewer's.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb import Viewer
    >>> from empanada_nb.widgets._layers import LabelLayers
    >>> isinstance(Viewer(np.zeros((2, 32, 32), np.uint8)), LabelLayers)
    True
    """

    def layer(self, key: str | int) -> LabelLayer:
        """A label layer by name, list index or uid.

        Parameters
        ----------
        key : str or int
            The layer's name, its index in ``label_layers`` (negative counts from the end) or its uid.

        Returns
        -------
        LabelLayer
            The layer (``.data``, ``.name``, ``.opacity``, ``.visible``, ``.editable``, ``.plane``).

        Raises
        ------
        KeyError
            When no layer matches; the message lists the layer names.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels={"mito": np.zeros((2, 32, 32), np.uint32)})
        >>> v.layer("mito").name, v.layer(0) is v.layer("mito"), v.layer(-1).data.shape
        ('mito', True, (2, 32, 32))
        """
        for _i, l in enumerate(self.label_layers):
            if l.name == key:
                return l
        if isinstance(key, int):
            for l in self.label_layers:
                if l.uid == key:
                    return l
            if -len(self.label_layers) <= key < len(self.label_layers):
                return self.label_layers[key]
        raise KeyError(f"no label layer {key!r}; layers: {[l.name for l in self.label_layers]}")

    def _layer_by_uid(self, uid) -> LabelLayer | None:
        for l in self.label_layers:
            if l.uid == uid:
                return l
        return None

    def _active(self, create: bool = True) -> LabelLayer | None:
        layer = self._layer_by_uid(self.active_layer)
        if layer is None and self.label_layers:
            layer = next((l for l in self.label_layers if l.editable and l.plane is None), self.label_layers[0])
            self.active_layer = layer.uid
        if layer is None and create:
            layer = self.new_layer("labels")
            self.message = "created an empty label layer 'labels' (viewer.labels)"
        return layer

    # --------------------------------------------------------------------------------- layers
    def add_labels(
        self,
        array: Any,
        name: str | None = None,
        opacity: float = 0.5,
        visible: bool = True,
        editable: bool = True,
        plane: tuple[str, int] | None = None,
        active: bool = False,
    ) -> LabelLayer:
        """Add a label layer of the image's shape, or a 2D layer shown on one slice only.

        A writable numpy array is edited in place by the tools; other inputs are copied once. Names are
        made unique. The first editable volume layer becomes the active (edited) one.

        Parameters
        ----------
        array : array-like or str or os.PathLike
            Integer labels of ``label_shape`` (of the slice's shape with ``plane``), or an image file.
        name : str, optional
            Layer name (``"labels"`` by default); ``" [1]"``, ``" [2]"``... is appended when taken.
        opacity : float
            Overlay opacity, 0 to 1.
        visible : bool
            Whether the layer is drawn.
        editable : bool
            Whether the editing tools may change it.
        plane : tuple of (str, int), optional
            ``(axis, index)``: a 2D layer for that slice only (e.g. a preview of a prediction).
        active : bool
            Make it the layer the editing tools change.

        Returns
        -------
        LabelLayer
            The new layer.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> layer = v.add_labels(np.zeros((2, 32, 32), np.uint32), name="mito")
        >>> layer.name, v.labels is layer.data
        ('mito', True)
        >>> v.add_labels(np.ones((32, 32), np.uint8), name="mito", plane=("xy", 1), editable=False).name
        'mito [1]'
        """
        with self._lock:
            if isinstance(array, (str, Path)):
                from ..data.io import read_image

                array = read_image(array)
            base = str(name or "labels")
            names = {l.name for l in self.label_layers}
            uniq, k = base, 1
            while uniq in names:
                uniq = f"{base} [{k}]"
                k += 1
            layer = LabelLayer(
                array, uniq, self.source.shape, opacity=opacity, visible=visible, editable=editable, plane=plane
            )
            self.label_layers.append(layer)
            if active or self._layer_by_uid(self.active_layer) is None and editable and plane is None:
                self.active_layer = layer.uid
            self._sync_layers()
            return layer

    def new_layer(self, name: str = "labels", active: bool = False) -> LabelLayer:
        """Add an empty, editable uint32 label layer of the image's shape (see ``add_labels``).

        Parameters
        ----------
        name : str
            Layer name (made unique).
        active : bool
            Make it the layer the editing tools change.

        Returns
        -------
        LabelLayer
            The new layer.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> layer = v.new_layer("cells")
        >>> layer.data.shape, layer.data.dtype, int(layer.data.max())
        ((2, 32, 32), dtype('uint32'), 0)
        """
        return self.add_labels(np.zeros(self.label_shape, dtype=np.uint32), name=name, active=active)

    def set_labels(self, name: str, array: Any, **kwargs) -> LabelLayer:
        """Replace the data of layer ``name`` (added when missing); the browser refreshes its slices.

        The layer's undo history is dropped. To change one slice undoably, use ``set_slice``.

        Parameters
        ----------
        name : str
            The layer's name.
        array : array-like
            The new labels (of the layer's shape; of the slice's shape for a ``plane`` layer).
        **kwargs
            ``add_labels`` arguments used when the layer is added; ``plane`` also moves an existing
            slice layer to another slice.

        Returns
        -------
        LabelLayer
            The layer.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> layer = v.set_labels("preview", np.ones((32, 32), np.uint8), plane=("xy", 1), editable=False)
        >>> layer.plane, layer.editable
        (('xy', 1), False)
        >>> v.set_labels("preview", np.full((32, 32), 2, np.uint8)) is layer, int(layer.data.max())
        (True, 2)
        """
        with self._lock:
            try:
                layer = self.layer(name)
            except KeyError:
                return self.add_labels(array, name=name, **kwargs)
            if "plane" in kwargs and kwargs["plane"] is not None:
                layer.plane = (check_axis(kwargs["plane"][0]), int(kwargs["plane"][1]))
            self.history.drop_layer(layer)
            layer.set_data(array)
            self._push_full(layer)
            self._sync_layers()
            return layer

    def remove_labels(self, key: str | int) -> None:
        """Remove a label layer (the user's array itself is left as it is).

        Parameters
        ----------
        key : str or int
            The layer's name, list index or uid (see ``layer``).

        Returns
        -------
        None

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=[np.zeros((2, 32, 32), np.uint32)] * 2)
        >>> [layer["name"] for layer in v.layers]
        ['labels', 'labels 1']
        >>> v.remove_labels("labels")
        >>> [layer["name"] for layer in v.layers]
        ['labels 1']
        """
        with self._lock:
            layer = self.layer(key)
            self.label_layers.remove(layer)
            self.history.drop_layer(layer)
            if self.active_layer == layer.uid:
                self.active_layer = self.label_layers[0].uid if self.label_layers else 0
            self._sync_layers()

    def refresh(self, key: str | int | None = None) -> None:
        """Tell the browser that label arrays changed outside the viewer, so that it redraws them.

        Parameters
        ----------
        key : str or int, optional
            The layer that changed (see ``layer``); None: all layers.

        Returns
        -------
        None

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.zeros((2, 32, 32), np.uint32))
        >>> v.labels[0, :4, :4] = 7  # changed in place, outside the viewer
        >>> before = v.layers[0]["version"]
        >>> v.refresh("labels")
        >>> v.layers[0]["version"] - before  # the browser refetches the slices of a new version
        1
        """
        with self._lock:
            layers = self.label_layers if key is None else [self.layer(key)]
            for layer in layers:
                layer.version += 1
                layer.forget_max()
                self._push_full(layer)
            self._sync_layers()

    def _sync_layers(self) -> None:
        self.layers = [l.meta() for l in self.label_layers]
        self.can_undo, self.can_redo = self.history.can_undo, self.history.can_redo
        self._autosave_layers()

    # ---------------------------------------------------------------------------------- sending
