"""The viewer's autosave: label edits, picks and regions kept on disk, and the offer to restore them (a Viewer mixin).

The store is ``empanada_nb.autosave`` (one session folder per Viewer). This mixin tracks what changed:
``_push_edit`` (every commit, undo and redo) marks the slices an edit touched; a layer replaced,
added or refreshed (its version moved without an edit) is saved whole once; picks and regions mark the
metadata. A timer writes the changes at most every ``DEBOUNCE_S`` seconds, in a thread, and
``close()`` / interpreter exit write what is pending.

A Viewer opened on an image that has sessions of an earlier kernel (or of another Viewer) offers them
(``autosave_offer``, shown as a banner with Restore / Discard); ``restore_autosave`` and
``discard_autosave`` are the same in Python.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .. import autosave as A

log = logging.getLogger("empanada_nb.widgets.viewer")

#: seconds between the first unsaved change and its save (later changes join that save)
DEBOUNCE_S = 2.0
_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:  # a clean kernel shutdown keeps the last two seconds of edits too
    for v in list(_LIVE):
        try:
            v.flush_autosave()
        except Exception:
            pass


def _touched_slices(edit, nz: int) -> set[int]:
    """The z indices (first axis of the layer's volume) an ``editing.Edit`` changed."""
    if edit.flat is not None:
        shape = edit.layer.volume.shape
        return {int(z) for z in np.unique(np.asarray(edit.flat) // int(np.prod(shape[1:])))}
    if edit.index is None:
        return set(range(nz))
    first = edit.index[0]
    if isinstance(first, slice):
        return set(range(*first.indices(nz)))
    return {int(first)}


class Autosave:
    """Mixin of ``Viewer``: autosave of label edits, picks and regions, and restoring them.

    Needs the Viewer's ``source``, ``label_layers``, ``picks``, ``regions`` and ``_lock``; its
    public methods are documented as the Viewer's.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb import Viewer
    >>> from empanada_nb.widgets._autosave import Autosave
    >>> isinstance(Viewer(np.zeros((2, 32, 32), np.uint8)), Autosave)
    True
    """

    def _autosave_init(self, source_arg: Any, autosave: Any) -> None:
        """Set up the store (``autosave``: None = on for files, True, False, or a folder) and the offer."""
        self._as_on = False
        self._as_timer: threading.Timer | None = None
        self._as_write_lock = threading.Lock()
        self._as_dirty: dict[int, set[int]] = {}  # layer uid -> slices to write
        self._as_full: set[int] = set()  # layers to write whole (every non-empty slice)
        self._as_saved: dict[int, set[int]] = {}  # layer uid -> slices with a file
        self._as_versions = {l.uid: l.version for l in self.label_layers}
        self._as_changed = False
        self._as_offered: list[dict] = []
        self.autosave_path: Path | None = None  #: this Viewer's session folder (created at the first save)
        key = source_arg if isinstance(source_arg, (str, Path)) else None
        if autosave is None:
            autosave = key is not None
        if autosave is False:
            return
        try:
            src = key if key is not None else self.source.data
            self._as_fp = A.fingerprint(src)
            root = Path(autosave) if isinstance(autosave, (str, Path)) and autosave is not True else None
            root = root or A.autosave_dir(src, self._as_fp)
            self._as_source = str(Path(key).resolve()) if key is not None else None
            self.autosave_path = A.new_session_dir(root)
            self._as_on = True
            _LIVE.add(self)
            self._as_offered = self._autosave_sessions(root)
        except Exception as e:  # autosave must never stop the viewer from opening
            log.warning("autosave is off: %s", e)
            self._as_on = False
            return
        if self._as_offered:
            newest = self._as_offered[0]
            more = f" (and {len(self._as_offered) - 1} older)" if len(self._as_offered) > 1 else ""
            self.autosave_offer = f"unsaved work on this image: {newest['summary']}{more}"

    def _autosave_sessions(self, root: Path) -> list[dict]:
        out = []
        if not root.is_dir():
            return out
        for d in root.iterdir():
            if not A._SESSION.match(d.name) or d == self.autosave_path:
                continue
            try:
                meta = A.read_meta(d)
            except ValueError:
                continue
            if meta.get("fingerprint") not in (None, self._as_fp):
                continue
            if meta.get("layers") or meta.get("picks") or meta.get("regions"):
                out.append({"path": d, "saved": meta.get("saved", ""), "summary": A.describe(meta), "meta": meta})
        return sorted(out, key=lambda s: s["saved"], reverse=True)

    # ---------------------------------------------------------------------------- tracking
    def _autosave_edit(self, edit) -> None:
        """Mark the slices ``edit`` changed (called by ``_push_edit`` for commits, undo and redo)."""
        if not getattr(self, "_as_on", False) or edit.layer.plane is not None:
            return
        layer = edit.layer
        self._as_dirty.setdefault(layer.uid, set()).update(_touched_slices(edit, layer.volume.shape[0]))
        self._as_versions[layer.uid] = layer.version
        self._autosave_schedule()

    def _autosave_layers(self) -> None:
        """Layers added, replaced, refreshed or removed (called when the layer list is synced)."""
        if not getattr(self, "_as_on", False):
            return
        uids = {l.uid for l in self.label_layers}
        changed = any(u not in uids for u in self._as_versions)
        for l in self.label_layers:
            if self._as_versions.get(l.uid) != l.version:
                self._as_versions[l.uid] = l.version
                if l.plane is None and l.editable:
                    self._as_full.add(l.uid)
                changed = True
        for u in [u for u in self._as_versions if u not in uids]:
            del self._as_versions[u]
        if changed:
            self._as_changed = True
            self._autosave_schedule()

    def _autosave_meta(self, change=None) -> None:
        if getattr(self, "_as_on", False):
            self._as_changed = True
            self._autosave_schedule()

    def _autosave_schedule(self) -> None:
        if self._as_timer is None:
            self._as_timer = threading.Timer(DEBOUNCE_S, self._autosave_tick)
            self._as_timer.daemon = True
            self._as_timer.start()

    def _autosave_tick(self) -> None:
        try:
            self.flush_autosave()
        except Exception as e:  # a full disk must not break editing: say so in the status line
            log.warning("autosave failed: %s", e)
            self.message = f"autosave failed: {e}"

    # ---------------------------------------------------------------------------------- saving
    def flush_autosave(self) -> Path | None:
        """Write the pending changes of the autosave now (it otherwise waits up to ``DEBOUNCE_S`` seconds).

        Returns
        -------
        pathlib.Path or None
            The session folder, or None when autosave is off or nothing was ever saved.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), autosave=tempfile.mkdtemp())
        >>> _ = v.add_pick("xy", 1, 16, 16, size=16)
        >>> (v.flush_autosave() / "session.json").is_file()
        True
        """
        if not getattr(self, "_as_on", False):
            return None
        with self._as_write_lock:
            with self._lock:
                if self._as_timer is not None:
                    self._as_timer.cancel()
                    self._as_timer = None
                pending = self._as_changed or self._as_dirty or self._as_full
                if not pending:
                    return self.autosave_path if self.autosave_path.exists() else None
                if self._as_saved and not (self.autosave_path / "session.json").exists():
                    self._as_saved = {}  # the session was discarded or restored elsewhere: write it whole again
                # the plan under the lock; slices are copied one at a time below, so a full save of a
                # large layer never holds a second copy of the volume nor blocks editing for long
                plan = []
                for l in self.label_layers:
                    if l.plane is None and l.editable:
                        full = l.uid in self._as_full or l.uid not in self._as_saved
                        zs = range(l.volume.shape[0]) if full else sorted(self._as_dirty.get(l.uid, ()))
                        prev = set(self._as_saved.get(l.uid, set()))
                        plan.append((l, f"layer{l.uid}", l.volume, list(zs), prev, full))
                meta = {
                    "source": self._as_source,
                    "fingerprint": self._as_fp,
                    "shape": list(self.source.shape),
                    "picks": [dict(p) for p in self.picks],
                    "regions": [dict(r) for r in self.regions],
                }
                self._as_dirty, self._as_full, self._as_changed = {}, set(), False
            session = self.autosave_path
            layers, emptied, saved = [], [], {}
            for l, key, vol, zs, prev, full in plan:
                stored = set() if full else set(prev)
                for z in zs:
                    with self._lock:
                        arr = vol[z].copy() if vol[z].any() else None
                    if arr is None:
                        stored.discard(z)
                    else:
                        A.write_slices(session, key, {z: arr})
                        stored.add(z)
                emptied += [(key, z) for z in prev - stored]
                saved[l.uid] = stored
                layers.append(
                    {
                        "key": key,
                        "name": l.name,
                        "dtype": str(vol.dtype),
                        "shape": list(vol.shape),
                        "slices": sorted(stored),
                        "opacity": l.opacity,
                        "visible": l.visible,
                    }
                )
            A.write_meta(session, {**meta, "layers": layers})
            for key, z in emptied:  # emptied slices go after the listing without them
                A.write_slices(session, key, {z: np.zeros(1)})
            with self._lock:
                self._as_saved = saved
            kept = {p[1] for p in plan}
            layers_dir = session / "layers"
            if layers_dir.is_dir():  # the folders of removed layers
                for d in layers_dir.iterdir():
                    if d.name not in kept and d.name.startswith("layer"):
                        for f in d.glob("z*" + A.SLICE_SUFFIX):
                            f.unlink(missing_ok=True)
                        try:
                            d.rmdir()
                        except OSError:
                            pass
            return session

    def close(self) -> None:
        """Write pending autosave changes, then close the widget (see ``ipywidgets.Widget.close``).

        Returns
        -------
        None

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> Viewer(np.zeros((2, 32, 32), np.uint8)).close()
        """
        try:
            self.flush_autosave()
        except Exception as e:
            log.warning("autosave at close failed: %s", e)
        _LIVE.discard(self)
        super().close()

    # ------------------------------------------------------------------------------- restoring
    def restore_autosave(self, session=None) -> str:
        """Restore an autosaved session of this image: its label layers, picks and regions.

        Layers come back as they were on screen (a layer of the same name and shape is replaced as one
        undoable step; others are added); picks and regions not already here are added. The restored
        state is then this Viewer's own autosave, and the offered sessions are removed.

        Parameters
        ----------
        session : str or os.PathLike, optional
            A session folder; the newest offered one by default.

        Returns
        -------
        str
            What was restored, e.g. ``"restored 1 label layer (2 edited slices), 3 picks, 0 regions from 14:02"``
            (also the status line).

        Raises
        ------
        ValueError
            When there is nothing to restore.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> image, where = np.zeros((2, 32, 32), np.uint8), tempfile.mkdtemp()
        >>> v = Viewer(image, autosave=where)
        >>> _ = v.paint([[4, 4], [4, 20]], size=3, label=5, index=1)
        >>> _ = v.flush_autosave()
        >>> w = Viewer(image, autosave=where)  # e.g. after a kernel restart
        >>> w.restore_autosave()  # doctest: +ELLIPSIS
        'restored 1 label layer (1 edited slice), 0 picks, 0 regions from ...'
        >>> bool((w.labels == v.labels).all())
        True
        """
        if session is None:
            if not self._as_offered:
                raise ValueError("no autosaved session of this image to restore")
            session = self._as_offered[0]["path"]
        session = Path(session)
        meta = A.read_meta(session)
        with self._lock:
            for entry in meta.get("layers", []):
                vol = A.read_layer(session, entry)
                try:
                    lay = self.layer(entry["name"])
                except KeyError:
                    lay = None
                if lay is not None and lay.plane is None and lay.editable and lay.volume.shape == vol.shape:
                    self.apply_labels(vol.astype(lay.volume.dtype, copy=False), layer=lay.uid)
                else:
                    data = vol if len(self.label_shape) == 3 else vol[0]
                    name = entry["name"]
                    lay = self.add_labels(data, name=name, opacity=entry.get("opacity", 0.5))
                    lay.visible = bool(entry.get("visible", True))
                    self._sync_layers()
            picks = list(self.picks)
            self.picks = picks + [p for p in meta.get("picks", []) if p not in picks]
            names = {r["name"] for r in self.regions}
            self.regions = list(self.regions) + [r for r in meta.get("regions", []) if r["name"] not in names]
        self.flush_autosave()  # the restored state is this Viewer's session before the old ones go
        for s in self._as_offered or [{"path": session}]:
            try:
                A.clear_autosave(s["path"])
            except ValueError:
                pass
        if session not in [s["path"] for s in self._as_offered]:
            A.clear_autosave(session)
        self._as_offered = []
        self.autosave_offer = ""
        self.message = f"restored {A.describe(meta)}"
        return self.message

    def discard_autosave(self) -> int:
        """Delete the autosaved sessions this Viewer offered (never the files the user saved).

        Returns
        -------
        int
            How many sessions were deleted.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> image, where = np.zeros((2, 32, 32), np.uint8), tempfile.mkdtemp()
        >>> v = Viewer(image, autosave=where)
        >>> _ = v.add_pick("xy", 1, 16, 16, size=16); _ = v.flush_autosave()
        >>> w = Viewer(image, autosave=where)
        >>> w.autosave_offer  # doctest: +ELLIPSIS
        'unsaved work on this image: 0 label layers (0 edited slices), 1 pick, 0 regions from ...'
        >>> w.discard_autosave(), w.autosave_offer, w.picks
        (1, '', [])
        """
        n = 0
        for s in self._as_offered:
            A.clear_autosave(s["path"])
            n += 1
        self._as_offered = []
        self.autosave_offer = ""
        self.message = f"discarded {n} autosaved session(s)" if n else "nothing to discard"
        return n
