"""The viewer's browser messages: one ``_msg_<type>`` handler per message, each a call of public API.

Messages, browser -> Python (``content["type"]``):
    ``get`` {rid, axis, index, level, image: bool, layers: [uid]}: send these parts of a slice (at pyramid
      ``level``, labels downsampled to it);
    ``pick`` {axis, index, row, col}; ``delete_pick`` {i}; ``clear_picks``; ``random_picks`` {n};
    ``suggest`` {n}; ``accept_suggestion`` {i}; ``reject_suggestion`` {i};
    ``region`` {shape, axis, index, points}; ``update_region`` {i, name?, all_slices?}; ``delete_region`` {i};
    ``stroke`` {stroke, layer, axis, index, points, size, label, erase, unlabelled};
    ``fill`` {layer, axis, index, row, col, label};
    ``undo``; ``redo``; ``new_label``; ``new_layer``; ``layer`` {layer, opacity?, visible?};
    ``save_patches`` {dataset_dir, name}; ``proofread`` {op, selection, axis, index, scope, ...}; ``ready``;
    ``marker`` {axis, index, row, col}; ``clear_markers``; ``jump`` {label}; ``new_label`` {class_id?};
    ``count_labels`` {per_slice}; ``export_counts`` {path}; ``save_points`` {path}; ``load_points`` {path,
    full_resolution}; ``create_tiles`` {dir, tile_size, overlap}; ``merge_tiles`` {dir}; ``autosave_restore``;
    ``autosave_discard``.
Messages, Python -> browser (built in ``_serialization``):
    ``data`` {rid, axis, index, parts: [{kind: image|labels, dtype, shape, row0, rows, nchunks, encoding, layer,
    version, empty}], last} with one buffer per non-empty part; ``labels_update`` {layer, version, axis, index,
    scope: slice|all|none, full, r0, c0, h, w, dtype, encoding, stroke} with at most one buffer;
    ``invalidate`` {image}; ``goto`` {axis, index, center}.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

log = logging.getLogger("empanada_nb.widgets.viewer")


class ViewerMessages:
    """Mixin of ``Viewer``: dispatches the browser's custom messages to ``_msg_<type>`` handlers.

    It has no public methods: each handler calls the Viewer's public API, and a failing one is
    reported in the Viewer's ``message`` (its status line) instead of the kernel log only.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb import Viewer
    >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), patch_size=16)
    >>> v._on_custom_msg(v, {"type": "pick", "axis": "xy", "index": 1, "row": 16, "col": 16}, [])
    >>> v.picks
    [{'axis': 'xy', 'z': 1, 'y': 16, 'x': 16, 'size': 16}]
    """

    def _on_custom_msg(self, _widget, content: dict, buffers: Sequence[bytes]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = getattr(self, f"_msg_{kind}", None)
        if handler is None:
            log.warning("empanada_nb Viewer: unknown message %r", kind)
            return
        try:
            handler(content)
        except Exception as e:  # surface errors in the viewer's status line instead of the kernel log only
            log.exception("empanada_nb Viewer: %s failed", kind)
            self.message = f"{kind} failed: {e.__class__.__name__}: {e}"

    def _msg_ready(self, c):
        pass

    def _msg_autosave_restore(self, c):
        self.restore_autosave()

    def _msg_autosave_discard(self, c):
        self.discard_autosave()

    def _msg_get(self, c):
        self._send_slice(
            c["axis"],
            c["index"],
            image=bool(c.get("image", True)),
            layers=c.get("layers") or [],
            rid=c.get("rid"),
            level=int(c.get("level") or 0),
        )

    def _msg_pick(self, c):
        self.add_pick(c["axis"], c["index"], c["row"], c["col"])

    def _msg_delete_pick(self, c):
        self.remove_pick(int(c["i"]))

    def _msg_clear_picks(self, c):
        self.picks = []

    def _msg_random_picks(self, c):
        new = self.fill_random_picks(int(c.get("n", 8)))
        self.message = f"added {len(new)} random patch(es)"

    def _msg_suggest(self, c):
        self.suggest(n=int(c.get("n") or 8))

    def _msg_accept_suggestion(self, c):
        self.accept_suggestion(int(c["i"]))

    def _msg_reject_suggestion(self, c):
        self.reject_suggestion(int(c["i"]))

    def _msg_region(self, c):
        self.add_region(c["points"], shape=c.get("shape", "polygon"), axis=c["axis"], slice=c["index"])

    def _msg_update_region(self, c):
        i = int(c["i"])
        regions = [dict(r) for r in self.regions]
        if "name" in c:
            regions[i]["name"] = str(c["name"]).strip() or regions[i]["name"]
        if "all_slices" in c:
            regions[i]["all_slices"] = bool(c["all_slices"])
        self.regions = regions

    def _msg_delete_region(self, c):
        self.remove_region(int(c["i"]))

    def _msg_stroke(self, c):
        self.paint(
            c["points"],
            size=c.get("size", self.brush_size),
            label=c.get("label", self.current_label),
            axis=c["axis"],
            index=c["index"],
            erase=bool(c.get("erase")),
            layer=c.get("layer"),
            unlabelled=bool(c.get("unlabelled")),
            _stroke=c.get("stroke"),
        )

    def _msg_fill(self, c):
        self.fill(
            c["row"],
            c["col"],
            label=c.get("label", self.current_label),
            axis=c["axis"],
            index=c["index"],
            layer=c.get("layer"),
        )

    def _msg_undo(self, c):
        self.undo()

    def _msg_redo(self, c):
        self.redo()

    def _msg_new_label(self, c):
        cls = c.get("class_id")
        self.new_label(None if cls in (None, "") else int(cls))

    def _msg_save_points(self, c):
        path = str(c.get("path") or "").strip()
        if not path:
            self.message = "points file: enter a .csv path"
            return
        self.save_points(path, overwrite=bool(c.get("overwrite")))

    def _msg_load_points(self, c):
        path = str(c.get("path") or "").strip()
        if not path:
            self.message = "points file: enter a .csv path"
            return
        self.load_points(path, full_resolution=bool(c.get("full_resolution")))

    def _msg_create_tiles(self, c):
        d = str(c.get("dir") or "").strip()
        if not d:
            self.message = "tiles: enter a folder"
            return
        self.create_tiles(d, int(c.get("tile_size") or 512), int(c.get("overlap") or 0))

    def _msg_merge_tiles(self, c):
        d = str(c.get("dir") or "").strip()
        if not d:
            self.message = "tiles: enter the tiles folder"
            return
        self.merge_tiles(d)

    def _msg_marker(self, c):
        self.add_marker(c["axis"], c["index"], c["row"], c["col"])

    def _msg_clear_markers(self, c):
        self.clear_markers()

    def _msg_jump(self, c):
        self.jump_to_label(int(c["label"]))

    def _msg_count_labels(self, c):
        self.count_labels(per_slice=bool(c.get("per_slice")))

    def _msg_export_counts(self, c):
        path = str(c.get("path") or "").strip()
        if not path:
            self.message = "export counts: enter a .csv or .xlsx file path"
            return
        self.export_label_counts(path, overwrite=bool(c.get("overwrite")))

    def _msg_new_layer(self, c):
        self.new_layer("labels", active=True)

    def _msg_layer(self, c):
        layer = self._layer_by_uid(c["layer"])
        if layer is None:
            return
        if "opacity" in c:
            layer.opacity = float(min(1.0, max(0.0, c["opacity"])))
        if "visible" in c:
            layer.visible = bool(c["visible"])
        if "name" in c:
            layer.name = str(c["name"])
        self._sync_layers()

    def _msg_save_patches(self, c):
        d = str(c.get("dataset_dir") or self.dataset_dir).strip()
        name = str(c.get("name") or self.dataset_name).strip()
        if not d:
            self.message = "save patches: enter a dataset folder"
            return
        self.dataset_dir, self.dataset_name = d, name
        with warnings.catch_warnings():  # clashes are reported in the status line
            warnings.simplefilter("ignore", UserWarning)
            res = self.save_patches(d, name=name or None)
        self.message = (
            f"saved {len(res['written'])} patch(es) to {res['dir']}"
            + (f" with {len(res['flipbooks'])} flipbook(s)" if res.get("flipbooks") else "")
            + (f"; skipped {len(res['skipped'])} existing" if res["skipped"] else "")
        )

    def _msg_proofread(self, c):
        self.proofread(
            c["op"],
            c.get("selection", self.selection),
            axis=c.get("axis"),
            index=c.get("index"),
            scope=c.get("scope", "slice"),
            **{k: c[k] for k in ("morph", "radius", "min_size", "remove_border", "max_hole_size") if k in c},
        )
