"""Inference panel: 2D, stack and ortho-plane inference from a form, into a Viewer's label layers.

The form is built from ``SegmentOptions`` (the ``form`` trait: one entry per
setting, with its label, help, kind, modes and the API's default), so the panel, the ``segment`` CLI
and the API take the same settings. A run happens in a background thread with progress events
(``progress`` trait) and can be cancelled between slices (``cancel``).

Results go to the attached ``Viewer``: a 2D run writes the current slice of layer
``prediction`` as one undoable step (``Viewer.set_slice``); stack and ortho runs replace layer
``prediction`` (``Viewer.set_labels``), and ``keep_planes`` adds ``prediction xy`` / ``xz`` / ``yz``.

Messages, browser -> Python: ``run``, ``cancel``. Everything else is traits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from ..geometry import AXES, AXIS_DIMS
from ..model_io import list_models
from ..segment_options import SegmentOptions
from ._esm import DebugFlag, assemble
from .viewer import STATIC, Viewer

log = logging.getLogger(__name__)
#: seconds between progress trait updates (the browser redraws the bar on each)
PROGRESS_SECONDS = 0.1


class InferencePanel(anywidget.AnyWidget):
    """Segment the viewer's slice or volume with every setting of the API (see the module docstring).

    Parameters
    ----------
    viewer : Viewer, optional
        Where the image comes from and the results go.
    model : nn.Module, str, path or callable, optional
        The model: a module, a saved model path or registered name (also typed in the form), or a
        function returning the model when a run starts (the TrainingDashboard passes its current model).
    **settings
        Initial settings, fields of ``SegmentOptions`` (``mode="ortho"``, ``erode=1``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> panel = InferencePanel(Viewer(np.zeros((4, 32, 32), np.uint8)), mode="ortho", keep_planes=True)
    >>> panel.options.mode, panel.options.keep_planes, "model_source" in panel.errors
    ('ortho', True, True)
    """

    _esm = assemble(STATIC / "inference_panel.js")
    _css = STATIC / "inference_panel.css"
    debug = DebugFlag(help="browser registers on window.__enb (tests)").tag(sync=True)

    form = t.List(t.Dict(), help="the settings' specs, from SegmentOptions.form('widget')").tag(sync=True)
    settings = t.Dict(help="the form's values (SegmentOptions fields)").tag(sync=True)
    errors = t.Dict(help="setting -> message; Run is disabled while any is set").tag(sync=True)
    model_source = t.Unicode("", help="a saved model path or registered name").tag(sync=True)
    models = t.List(t.Unicode()).tag(sync=True)
    given_model = t.Unicode("", help="how the model was given in Python ('' when typed in the form)").tag(sync=True)
    has_model = t.Bool(False).tag(sync=True)
    has_viewer = t.Bool(False).tag(sync=True)
    viewer_ndim = t.Int(0).tag(sync=True)
    running = t.Bool(False).tag(sync=True)
    progress = t.Dict(help="the last progress event: {stage, done, total}").tag(sync=True)
    status = t.Unicode("").tag(sync=True)

    def __init__(self, viewer: Viewer | None = None, model: Any = None, **settings):
        import torch.nn as nn

        self.viewer = viewer
        self._model: nn.Module | None = None
        self._provider: Callable[[], Any] | None = None
        self._loaded: tuple[str, Any] | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_progress = 0.0
        self.result: np.ndarray | None = None  #: labels of the last run (the slice for 2D, else the volume)
        self.planes: dict[str, np.ndarray] = {}  #: the xy/xz/yz stacks of the last ortho run with keep_planes
        self.error: BaseException | None = None  #: what stopped the last run (None: finished)
        given, source = "", ""
        if isinstance(model, nn.Module):
            self._model, given = model, f"{getattr(model, 'architecture', type(model).__name__)} given in Python"
        elif isinstance(model, (str, Path)):
            source = str(model)
        elif callable(model):
            self._provider, given = model, "the dashboard's model"
        elif model is not None:
            raise TypeError(f"model must be a torch module, a path, a registered name or a function, got {model!r}")
        values = SegmentOptions().to_dict()
        if viewer is not None:
            values.update(mode="2d" if viewer.ndim == 2 else "stack", axis=viewer.axis)
            values["confine_to_regions"] = bool(viewer.confine_to_regions)
        values.update(settings)
        SegmentOptions.from_dict(values)  # unknown setting names fail here, in the caller's cell
        super().__init__(
            form=SegmentOptions.form("widget"),
            settings=values,
            model_source=source,
            models=sorted(list_models()),
            given_model=given,
            has_viewer=viewer is not None,
            viewer_ndim=viewer.ndim if viewer is not None else 0,
        )
        self.has_model = self._model is not None or self._provider is not None or bool(source)
        if viewer is not None:
            viewer.observe(self._check, names=["regions", "view_box", "axis", "slice_index"])
            # the viewer's own "confine inference to regions" switch drives the form's
            viewer.observe(lambda c: self.set(confine_to_regions=bool(c["new"])), names="confine_to_regions")
        self.on_msg(self._on_custom_msg)
        self._check()

    # ------------------------------------------------------------------------------ settings
    @property
    def options(self) -> SegmentOptions:
        """The form's settings as ``SegmentOptions`` (strings converted).

        Returns
        -------
        SegmentOptions
            The settings a run would use.
        """
        return SegmentOptions.from_dict(self.settings)

    def set(self, **changes) -> SegmentOptions:
        """Change settings, as typing them in the form would (the form shows them).

        Parameters
        ----------
        **changes
            ``SegmentOptions`` fields, e.g. ``mode="ortho"``, ``erode=1``.

        Returns
        -------
        SegmentOptions
            The new settings.

        Examples
        --------
        >>> panel = InferencePanel(Viewer(np.zeros((4, 32, 32), np.uint8)))
        >>> panel.set(mode="ortho", median_slices=2).mode, panel.errors["median_slices"]
        ('ortho', 'median_slices must be an odd number >= 1, got 2')
        """
        SegmentOptions.from_dict({**self.settings, **changes})
        self.settings = {**self.settings, **changes}
        return self.options

    @t.observe("settings", "model_source", "has_model")
    def _changed(self, change) -> None:
        if change["name"] == "model_source" and self._model is None and self._provider is None:
            self.has_model = bool(self.model_source.strip())
        self._check()

    def _check(self, _change=None) -> dict[str, str]:
        try:
            opts = self.options
        except ValueError as e:
            self.errors = {"settings": str(e)}
            return self.errors
        errs = opts.problems()
        if not self.has_model and self._provider is not None:
            errs["model_source"] = "no model yet: train one first (Start), or give the dashboard a model"
        elif not self.has_model:
            errs["model_source"] = "give a model path or registered name (or pass model= in Python)"
        v = self.viewer
        if v is None:
            errs.setdefault("mode", "no viewer: InferencePanel(viewer, ...)")
        else:
            if opts.mode != "2d" and v.ndim != 3:
                errs.setdefault("mode", f"{opts.mode} needs a 3D volume; this viewer shows a 2D image (use 2d)")
            if opts.confine_to_regions and not v.regions:
                errs["confine_to_regions"] = "no context regions: draw one with the region tool"
            if opts.confine_to_visible and len(v.view_box) != 6:
                errs["confine_to_visible"] = "the viewer has not shown its visible area yet (display it first)"
        self.errors = errs
        return errs

    # ---------------------------------------------------------------------------------- model
    def _get_model(self):
        if self._model is not None:
            return self._model
        if self._provider is not None:
            return self._provider()
        name = self.model_source.strip()
        if not name:
            raise ValueError("no model: give a model path or registered name")
        if self._loaded is None or self._loaded[0] != name:
            from ..model_io import load_model

            self._loaded = (name, load_model(name))
        return self._loaded[1]

    # ------------------------------------------------------------------------------------ run
    def run(self, background: bool = True, **changes):
        """Segment with the form's settings (after ``changes``, e.g. ``mode="ortho"``).

        Parameters
        ----------
        background : bool, optional
            Run in a thread (returned) and write the results when done; False runs here and
            returns the labels (the slice for ``mode="2d"``, else the volume).
        **changes
            Settings to change first (they stay in the form).

        Returns
        -------
        threading.Thread or numpy.ndarray
            The thread, or the labels.

        Examples
        --------
        >>> from empanada_nb import build_model
        >>> viewer = Viewer(np.zeros((2, 64, 64), np.uint8))
        >>> panel = InferencePanel(viewer, model=build_model("PanopticDeepLab", "resnet18"))
        >>> panel.run(background=False, mode="2d").shape, viewer.layer("prediction").data.shape
        ((64, 64), (2, 64, 64))
        """
        if self.running:
            raise RuntimeError("inference is already running; cancel it first")
        if changes:
            self.set(**changes)
        errs = self._check()
        if errs:
            raise ValueError(next(iter(errs.values())))
        opts, model = self.options, self._get_model()
        self._cancel.clear()
        self.running, self.error = True, None
        self.progress = {}
        if not background:
            self._run(opts, model)
            if self.error is not None:
                raise self.error
            return self.result
        self._thread = threading.Thread(target=self._run, args=(opts, model), name="empanada_nb-infer", daemon=True)
        self._thread.start()
        return self._thread

    def cancel(self) -> None:
        """Stop the run between slices; nothing is written to the viewer or to a zarr output.

        Returns
        -------
        None

        Examples
        --------
        >>> InferencePanel().cancel()
        """
        self._cancel.set()
        if self.running:
            self.status = "cancelling…"

    def wait(self, timeout: float | None = None) -> np.ndarray | None:
        """Wait for a background run.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most (None: until it ends).

        Returns
        -------
        numpy.ndarray or None
            The run's labels; None if it failed or was cancelled (see ``status`` and ``error``).

        Examples
        --------
        >>> from empanada_nb import build_model
        >>> viewer = Viewer(np.zeros((2, 64, 64), np.uint8))
        >>> panel = InferencePanel(viewer, model=build_model("PanopticDeepLab", "resnet18"), min_size=0)
        >>> thread = panel.run()
        >>> panel.wait().shape, panel.status.startswith("segmented the volume (stack)")
        ((2, 64, 64), True)
        """
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result if self.error is None else None

    def _run(self, opts: SegmentOptions, model) -> None:
        t0 = time.perf_counter()
        try:
            self.status = f"segmenting ({opts.mode})…"
            if opts.mode == "2d":
                labels = self._segment_2d(opts, model)
                n = len(np.unique(labels)) - int((labels == 0).any())
                v = self.viewer
                self.status = f"segmented {v.axis} slice {v.slice_index}: {n} objects"
            else:
                self._segment_3d(opts, model)
                self.status = f"segmented the volume ({opts.mode}) in {time.perf_counter() - t0:.1f} s"
        except Exception as e:  # often a background thread: every failure goes to the status line
            self.error = e
            cancelled = self._cancel.is_set()
            self.status = "inference cancelled" if cancelled else f"inference failed: {e.__class__.__name__}: {e}"
            if not cancelled:
                log.warning("InferencePanel: %s", e, exc_info=True)
        finally:
            self.running = False

    # ---- 2D: the current slice
    def _slice_roi(self, opts: SegmentOptions) -> np.ndarray | None:
        v = self.viewer
        roi = v.slice_roi() if opts.confine_to_regions else None
        if opts.confine_to_visible:
            shown = np.zeros(v.current_slice().shape, bool)
            shown[self._plane_box()] = True
            roi = shown if roi is None else roi & shown
        return roi

    def _plane_box(self) -> tuple[slice, slice]:
        """Rows and columns of the current slice that the browser shows."""
        v = self.viewer
        a, _, r0, c0, r1, c1 = v.view_box
        if AXES[a] != v.axis:
            raise ValueError("the viewer's visible area is of another axis; wait for the browser to redraw")
        return slice(r0, r1), slice(c0, c1)

    def _predict_slice(self, model, opts: SegmentOptions, roi: np.ndarray | None) -> np.ndarray:
        from ..data.io import intensity_range
        from ..inference import segment_image

        v = self.viewer
        with _train_modes_kept(model):
            return segment_image(
                model, v.current_slice(), roi=roi, irange=intensity_range(v.source.sample()), **opts.kwargs("2d")
            )

    def _segment_2d(self, opts: SegmentOptions, model) -> np.ndarray:
        from ..cancel import check_cancel

        v = self.viewer
        axis, index = v.axis, v.slice_index
        pred = self._predict_slice(model, opts, self._slice_roi(opts))
        check_cancel(self._cancel)
        try:
            layer = v.layer("prediction")
        except KeyError:
            layer = v.new_layer("prediction")
        if layer.plane is not None:  # a slice layer (e.g. left by an older preview): replace it
            v.set_labels("prediction", pred, plane=(axis, index))
        else:
            v.set_slice("prediction", axis, index, pred, description=f"segmented {axis} slice {index}")
        self.result = pred
        return pred

    # ---- 3D: stack or ortho over the volume (or the part of it the form confines to)
    def _box(self, opts: SegmentOptions) -> tuple[slice, slice, slice] | None:
        v = self.viewer
        box = [slice(0, n) for n in v.source.shape]
        if opts.confine_to_visible:
            _, (rd, cd) = AXIS_DIMS[v.axis]
            box[rd], box[cd] = self._plane_box()
        if opts.confine_to_regions:
            mask = v.context_mask()
            for d in range(3):
                hit = np.flatnonzero(mask.any(axis=tuple(k for k in range(3) if k != d)))
                if hit.size == 0:
                    raise ValueError("the context regions are empty")
                box[d] = slice(max(box[d].start, int(hit[0])), min(box[d].stop, int(hit[-1]) + 1))
        if any(b.stop <= b.start for b in box):
            raise ValueError("nothing to segment: the visible area and the regions do not overlap")
        return None if [b.stop for b in box] == list(v.source.shape) and all(b.start == 0 for b in box) else tuple(box)

    def _segment_3d(self, opts: SegmentOptions, model) -> None:
        from ..volume import output_array, segment_ortho, segment_stack, volume_irange

        v = self.viewer
        box = self._box(opts)
        vol = v.source if box is None else np.asarray(v.source[box])
        kw = dict(opts.kwargs(), progress=self._on_progress, cancel=self._cancel, irange=volume_irange(v.source))
        if box is not None:
            kw["out"] = None  # the crop runs in memory; the zarr output gets the full volume below
        with _train_modes_kept(model):
            if opts.mode == "stack":
                labels, planes = segment_stack(model, vol, **kw), {}
            else:
                result = segment_ortho(model, vol, **kw)
                labels, planes = result if opts.keep_planes else (result, {})
        labels = np.asarray(labels)
        planes = {a: np.asarray(p) for a, p in planes.items()}
        if box is not None:
            labels, planes = (
                _place(labels, box, v.source.shape),
                {a: _place(p, box, v.source.shape) for a, p in planes.items()},
            )
            if opts.out:
                with output_array(opts.out, labels.shape, labels.dtype, 0, opts.chunks, opts.overwrite) as arr:
                    arr[box] = labels[box]
        if opts.confine_to_regions:
            outside = ~v.context_mask()
            for arr in (labels, *planes.values()):
                arr[outside] = 0
        v.set_labels("prediction", labels.astype(np.uint32, copy=False))
        for a, p in planes.items():
            v.set_labels(f"prediction {a}", p.astype(np.uint32, copy=False), editable=False)
        self.result, self.planes = labels, planes

    def _on_progress(self, event: dict) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_SECONDS or event["done"] in (0, event["total"]):
            self._last_progress = now
            self.progress = {k: event[k] for k in ("stage", "done", "total")}

    # ------------------------------------------------------------------------------ messages
    def _on_custom_msg(self, _widget, content: dict, buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "run":
                self.run()
            elif kind == "cancel":
                self.cancel()
            else:
                log.warning("InferencePanel: unknown message %r", kind)
        except Exception as e:  # surface errors in the status line instead of the kernel log only
            self.status = f"{kind} failed: {e.__class__.__name__}: {e}"


def _place(crop: np.ndarray, box: tuple[slice, ...], shape) -> np.ndarray:
    full = np.zeros(tuple(shape), crop.dtype)
    full[box] = crop
    return full


@contextlib.contextmanager
def _train_modes_kept(model):
    """Inference switches to eval mode; a model that is training (live preview) gets its modes back."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for m, was in modes.items():
            m.train(was)
