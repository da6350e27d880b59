"""Training dashboard: a form over ``empanada_nb.train`` / ``empanada_nb.finetune``.

Start/Stop, a progress bar with ETA, a live loss plot drawn in the browser from the training events
(throttled batches of small JSON messages), a live preview of the current model's prediction on the
viewer's slice every N iterations, and an embedded ``InferencePanel`` (``inference``) over the
current model.

The form's logic (TrainConfig from the fields, checks, the guides' hints, config upload) is in
``_training_form.py``.

Messages, browser -> Python: ``start``, ``stop``, ``history`` (send every event so far), ``config_upload``
{name} with the file's bytes as the one buffer, ``list_checkpoints``, ``resume`` {path} (``_resume.py``).
Python -> browser: ``events`` {events: [...], reset: bool}. Everything else is traits.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t
from ipywidgets import widget_serialization

from ..model_io import list_models
from ..models import ARCHITECTURES, CEM_URLS, ENCODERS, FINETUNABLE_LAYERS
from ._esm import DebugFlag, assemble
from ._resume import ResumeRuns
from ._training_form import DEFAULTS, TrainingForm, form_defaults
from .inference_panel import InferencePanel
from .viewer import STATIC, Viewer

log = logging.getLogger(__name__)

#: the form's defaults are TrainConfig's, so the notebook, the CLI and the API train alike
FORM = form_defaults(DEFAULTS)
FLUSH_SECONDS = 0.25
MAX_HISTORY_POINTS = 4000


def _clean(v: Any) -> Any:
    """JSON-safe copy of an event (numbers as floats, NaN/inf as None)."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (bool, str)) or v is None:
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f if math.isfinite(f) else None


def _thin(events: list[dict], max_points: int | None = None) -> list[dict]:
    """Keep every non-step event and at most ``max_points`` step events (evenly spaced, last kept)."""
    max_points = MAX_HISTORY_POINTS if max_points is None else max_points
    steps = [e for e in events if e.get("type") == "step"]
    if len(steps) <= max_points:
        return events
    keep = set(id(e) for e in steps[:: math.ceil(len(steps) / max_points)])
    keep.add(id(steps[-1]))
    return [e for e in events if e.get("type") != "step" or id(e) in keep]


class TrainingDashboard(TrainingForm, ResumeRuns, anywidget.AnyWidget):
    """A training form with live progress, loss plot, preview and inference.

    The form's defaults are ``TrainConfig``'s, so the notebook, the CLI and the API train alike;
    ``train_config()`` is the ``TrainConfig`` Start runs with. While the form has errors (``errors``),
    Start is disabled and ``start`` raises; the advice of empanada's guides (``hints``) never blocks.

    Parameters
    ----------
    viewer : Viewer, optional
        The viewer whose slice gets the live preview and the inference results (and whose patches
        you saved as the dataset). The patch size follows the viewer's unless given.
    model : torch.nn.Module or str or os.PathLike, optional
        A model to finetune: a model object, a saved model path or a registered name. Without it
        the form trains a new model.
    config : str or os.PathLike or bytes, optional
        A config YAML loaded into the form (``load_config``, as the form's upload does): this
        library's layout or empanada's ``custom_training.yaml`` / ``custom_finetuning.yaml``.
    **kwargs
        Preset form fields: ``dataset_dir``, ``mode``, ``architecture``, ``encoder``, ``iterations``,
        ``max_minutes`` (a time budget; 0: the iterations),
        ``patch_size``, ``batch_size``, ``lr``, ``layers``, ``out``, ``preview_every``, ``classes``
        (``id,name,thing|stuff`` lines), ``label_divisor``, ``connected_components``, ``ignore_unlabelled``,
        ``description``, ``val_fraction``, ``extra_dirs`` (more training folders, one a line), ...

    Attributes
    ----------
    handle : TrainingHandle or None
        The current (or last) run, once started.
    errors : dict of str to str
        Form field -> what is wrong with it.
    hints : dict of str to str
        Form field -> the guides' advice (batch size below 16, patch larger than the saved patches,
        which architecture is lighter, which layers to finetune).
    config_note : str
        The keys of an uploaded empanada config that were not used.
    status : str
        The status line.

    Examples
    --------
    >>> viewer = Viewer(np.zeros((2, 64, 64), np.uint8), patch_size=64)
    >>> d = TrainingDashboard(viewer, encoder="resnet18", iterations=2)
    >>> d.mode, d.patch_size, d.iterations
    ('train', 64, 2)
    >>> d.errors
    {'dataset_dir': 'choose the dataset folder (<folder>/<name>/images, masks)'}

    In a notebook, the last expression of a cell (``d``) shows the form.
    """

    _esm = assemble(STATIC / "dashboard.js")  # static/dashboard.js and the parts it imports, as one module
    debug = DebugFlag(help="browser registers on window.__enb, keeps timing stats (tests)").tag(sync=True)
    _css = STATIC / "dashboard.css"

    mode = t.Enum(["train", "finetune"], "train").tag(sync=True)
    architecture = t.Unicode(FORM["architecture"]).tag(sync=True)
    encoder = t.Unicode(FORM["encoder"]).tag(sync=True)
    pretrained = t.Unicode(
        FORM["pretrained"],
        help="weights for a new model: 'auto' (CEM1.5M for resnet50), a CEM name, path or URL ('' for none)",
    ).tag(sync=True)
    model_source = t.Unicode("", help="model to finetune: a path or registered name").tag(sync=True)
    dataset_dir = t.Unicode("").tag(sync=True)
    val_dir = t.Unicode("").tag(sync=True)
    out = t.Unicode("model.pth").tag(sync=True)
    overwrite = t.Bool(False).tag(sync=True)
    layers = t.Enum(list(FINETUNABLE_LAYERS), FORM["layers"]).tag(sync=True)
    iterations = t.Int(FORM["iterations"]).tag(sync=True)
    max_minutes = t.Float(
        FORM["max_minutes"], help="wall-clock budget in minutes instead of the iterations (0: no budget)"
    ).tag(sync=True)
    patch_size = t.Int(FORM["patch_size"]).tag(sync=True)
    batch_size = t.Int(FORM["batch_size"]).tag(sync=True)
    lr = t.Float(FORM["lr"]).tag(sync=True)
    classes = t.Unicode(FORM["classes"], help="one class a line: id,name,thing|stuff").tag(sync=True)
    label_divisor = t.Int(FORM["label_divisor"], help="masks hold class*divisor+instance; 0: instance ids").tag(
        sync=True
    )
    connected_components = t.Bool(FORM["connected_components"]).tag(sync=True)
    ignore_unlabelled = t.Bool(
        FORM["ignore_unlabelled"], help="sparse labels: the masks' ignore value (255 in uint8, ...) is unlabelled"
    ).tag(sync=True)
    description = t.Unicode(FORM["description"]).tag(sync=True)
    val_fraction = t.Float(FORM["val_fraction"]).tag(sync=True)
    extra_dirs = t.Unicode(FORM["extra_dirs"], help="more training folders, one a line").tag(sync=True)
    preview = t.Bool(True).tag(sync=True)
    preview_every = t.Int(50).tag(sync=True)
    # read-only for the browser
    options = t.Dict().tag(sync=True)
    errors = t.Dict(help="form field -> message; Start is disabled while any is set").tag(sync=True)
    hints = t.Dict(help="form field -> the guides' advice; never blocks Start").tag(sync=True)
    config_name = t.Unicode("", help="the config YAML loaded into the form").tag(sync=True)
    config_note = t.Unicode("", help="what of that config was not used").tag(sync=True)
    running = t.Bool(False).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    has_viewer = t.Bool(False).tag(sync=True)
    #: the inference panel over the current model, shown inside the dashboard (None without a viewer)
    inference = t.Instance(InferencePanel, allow_none=True).tag(sync=True, **widget_serialization)
    has_model = t.Bool(False).tag(sync=True)
    given_model = t.Unicode("").tag(sync=True)
    checkpoints = t.List(t.Dict(), help="training checkpoints beside out (list_checkpoints)").tag(sync=True)

    def __init__(self, viewer: Viewer | None = None, model: Any = None, config: Any = None, **kwargs):
        self.viewer = viewer
        self.handle = None
        self._given = None
        self._events: list[dict] = []
        self._pending: list[dict] = []
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None
        self._send_lock = threading.Lock()
        self._irange = None
        given = ""
        if model is not None and not isinstance(model, (str, Path)):
            self._given = model
            given = f"{getattr(model, 'architecture', type(model).__name__)} given in Python"
        elif model is not None:
            kwargs.setdefault("model_source", str(model))
        if viewer is not None:
            kwargs.setdefault("patch_size", viewer.patch_size)
        if model is not None:
            kwargs.setdefault("mode", "finetune")
            kwargs.setdefault("layers", "none")
            kwargs.setdefault("iterations", 100)
        super().__init__(
            options={
                "architectures": list(ARCHITECTURES),
                "encoders": list(ENCODERS),
                "pretrained": ["auto", ""] + list(CEM_URLS),
                "layers": list(FINETUNABLE_LAYERS),
                "models": sorted(list_models()),
            },
            has_viewer=viewer is not None,
            given_model=given,
            **kwargs,
        )
        if viewer is not None and not self.dataset_dir and viewer.dataset_dir:
            self.dataset_dir = viewer.dataset_dir
        if viewer is not None:
            viewer.observe(self._viewer_patch_size, names="patch_size")
        self.on_msg(self._on_custom_msg)
        if config is not None:
            self.load_config(config)
        if "classes" not in kwargs:
            self._take_model_classes()
        self._check_form()
        self._update_has_model()
        self.observe(lambda _change: self._refresh_checkpoints(), names="out")
        self._refresh_checkpoints()
        if viewer is not None:
            self.inference = InferencePanel(viewer, model=self._model_for_inference)
            t.dlink((self, "has_model"), (self.inference, "has_model"))

    # --------------------------------------------------------------------------------- form
    @t.observe(
        "mode",
        "architecture",
        "patch_size",
        "iterations",
        "max_minutes",
        "batch_size",
        "lr",
        "model_source",
        "dataset_dir",
        "preview_every",
        "encoder",
        "pretrained",
        "layers",
        "classes",
        "label_divisor",
        "description",
        "val_fraction",
        "extra_dirs",
    )
    def _form_changed(self, change):
        if change["name"] in ("mode", "model_source"):
            self._take_model_classes()
        self._check_form()
        if change["name"] in ("mode", "model_source"):
            self._update_has_model()

    def _refresh_checkpoints(self) -> None:
        try:
            self.list_checkpoints()
        except Exception as e:  # a listing must not stop the form
            log.warning("listing checkpoints failed: %s", e)

    def _viewer_patch_size(self, change) -> None:
        if not self.running:
            self.patch_size = int(change["new"])

    def _update_has_model(self) -> None:
        self.has_model = self.handle is not None or self._given is not None or bool(self.model_source.strip())

    # ------------------------------------------------------------------------------ training
    @property
    def history(self) -> list[dict]:
        """Every event of the current (or last) run.

        Returns
        -------
        list of dict
            Training events (``"step"``, ``"validation"``, ``"checkpoint"``, ``"end"``, ...), JSON-safe
            copies; empty before a run.

        Examples
        --------
        >>> TrainingDashboard().history
        []

        After a run (see ``start``), the event types are e.g. ``['step', 'checkpoint', 'step', 'end']``.
        """
        return list(self._events)

    @property
    def trained_model(self):
        """The model of the current (or last) run, trained in place while the run goes on.

        Returns
        -------
        torch.nn.Module or None
            ``handle.model``; None before a run.

        Examples
        --------
        >>> TrainingDashboard().trained_model is None
        True
        """
        return self.handle.model if self.handle is not None else None

    def _model_for_inference(self):
        if self.handle is not None:
            return self.handle.model
        if self._given is not None:
            return self._given
        if self.model_source.strip():
            from ..model_io import load_model

            self._given = load_model(self.model_source.strip())
            return self._given
        raise ValueError("no model: train one first, or pass model= to the dashboard")

    def start(self):
        """Start training in the background with the form's settings.

        Events stream to the browser's progress bar and loss plot; with ``preview`` on, the viewer's
        slice gets the current model's prediction every ``preview_every`` iterations.

        Returns
        -------
        TrainingHandle
            The run (also ``handle``): ``wait()``, ``stop()``, ``history``, ``model``.

        Raises
        ------
        ValueError
            When the form has errors (the message lists them).
        RuntimeError
            When a run is already going.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from empanada_nb import build_model, make_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> data = make_synthetic_dataset(Path(tmp.name) / "data", n_images=2, size=64)
        >>> d = TrainingDashboard(
        ...     model=build_model("PanopticDeepLab", "resnet18"), dataset_dir=str(data),
        ...     out=str(Path(tmp.name) / "mito.pth"), iterations=2, patch_size=64, batch_size=2,
        ... )
        >>> d.mode
        'finetune'
        >>> run = d.start()
        >>> d.wait(timeout=600) is run, [e["type"] for e in d.history if e["type"] == "step"]
        (True, ['step', 'step'])
        >>> d.trained_model is run.model, (Path(tmp.name) / "mito.pth").is_file()
        (True, True)
        >>> tmp.cleanup()
        """
        if self.running:
            raise RuntimeError("training is already running; stop it first")
        errs = self._check_form()
        if errs:
            raise ValueError("; ".join(errs.values()))
        from .. import training as T

        cfg = self.train_config()
        common = dict(
            config=cfg,
            val_dir=self.val_dir.strip() or None,
            out=self.out.strip() or "model.pth",
            callbacks=[self._on_event],
            background=True,
            overwrite=bool(self.overwrite),
        )
        dataset = self.dataset_dirs()
        self._events = []
        self._pending = []
        self._emit({"type": "events", "events": [], "reset": True})
        if self.mode == "train":
            handle = T.train(dataset, **common)
        else:
            model = self._given if self._given is not None else self.model_source.strip()
            handle = T.finetune(model, dataset, layers=self.layers, **common)
        self.handle = handle
        self.running = True
        self.status = f"training: {self.mode} on {', '.join(dataset)}"
        self._update_has_model()
        return handle

    def stop(self) -> None:
        """Ask the run to stop after the current step (the model is saved); a no-op without a run.

        Returns
        -------
        None

        Examples
        --------
        >>> d = TrainingDashboard()
        >>> d.stop()
        >>> d.running
        False

        During a run (see ``start``), ``d.stop()`` then ``d.wait()`` ends it with the model saved.
        """
        if self.handle is not None and not self.handle.done:
            self.handle.stop()
            self.status = "stopping after this step…"
        elif getattr(self, "_follow_stop", None) is not None:
            self._follow_stop.set()  # stops watching the log; the job itself goes on

    def wait(self, timeout: float | None = None):
        """Block until the run ends, then send the browser the last events.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most; None waits for the end.

        Returns
        -------
        TrainingHandle
            The run (``handle``); its ``model`` is the trained model.

        Raises
        ------
        RuntimeError
            When no run was started.
        TimeoutError
            When the run is still going after ``timeout`` seconds.

        Examples
        --------
        >>> d = TrainingDashboard()
        >>> d.wait()
        Traceback (most recent call last):
        ...
        RuntimeError: no training run

        ``start`` shows a run waited for.
        """
        if self.handle is None:
            raise RuntimeError("no training run")
        try:
            return self.handle.wait(timeout)
        finally:
            self._flush()

    def follow(self, events_file: str | Path, poll: float = 0.5) -> threading.Thread:
        """Show live the events of a run started elsewhere: a ``torchrun`` job's ``<out>.events.jsonl``.

        Under ``torchrun`` rank 0 appends every event to the log beside the model (``events_path``);
        the dashboard plots them as if the run were its own (loss, learning rate, validation), from
        the start of the log, until the run's ``end`` event or ``stop``.

        Parameters
        ----------
        events_file : str or pathlib.Path
            The log (it may not exist yet while the job starts).
        poll : float
            Seconds between looks at the file.

        Returns
        -------
        threading.Thread
            The background thread reading the log.

        Raises
        ------
        RuntimeError
            When a run is already shown.

        Examples
        --------
        >>> import tempfile
        >>> log = Path(tempfile.mkdtemp()) / "m.events.jsonl"
        >>> _ = log.write_text('{"type": "step", "iteration": 1, "loss": 1.0}\\n{"type": "end", "iteration": 1}\\n')
        >>> d = TrainingDashboard()
        >>> d.follow(log, poll=0.05).join(timeout=10)
        >>> [e["type"] for e in d.history], d.running
        (['step', 'end'], False)
        """
        from ..training.distributed import follow_events

        if self.running:
            raise RuntimeError("training is already running; stop it first")
        self.handle = None
        self._events, self._pending = [], []
        self._follow_stop = threading.Event()
        self._emit({"type": "events", "events": [], "reset": True})
        self.running = True
        self.status = f"following {events_file}"

        def run():
            try:
                for e in follow_events(events_file, stop=self._follow_stop.is_set, poll=poll):
                    self._on_event(e)
            finally:
                self.running = False

        thread = threading.Thread(target=run, name="empanada_nb-follow", daemon=True)
        thread.start()
        return thread

    def _on_event(self, event: dict) -> None:
        """Training callback (runs in the training thread)."""
        e = _clean(event)
        self._events.append(e)
        with self._send_lock:
            self._pending.append(e)
        kind = e.get("type")
        if kind == "end":
            self._flush()
            err = self.handle.error if self.handle is not None else None
            fits = [x for x in self._events if x.get("type") == "calibration"]
            fitted = (
                f"; foreground threshold {fits[-1]['threshold']:.2f} folded into the model"
                if fits and fits[-1].get("applied")
                else ""
            )
            # the outcome (and the runs listing) before `running` drops: whoever waits on `running` reads them
            self.status = (
                (
                    f"{'stopped' if e.get('stopped') else 'finished'} at iteration {e.get('iteration')}; "
                    f"model saved to {e.get('path')}{fitted}"
                )
                if err is None
                else f"training failed: {err}"
            )
            self._refresh_checkpoints()
            self.running = False
            return
        if kind == "step" and self.preview and self.viewer is not None and self.handle is not None:
            it = int(e.get("iteration", 0))
            if it % max(1, int(self.preview_every)) == 0:
                self._preview(self.handle.model)
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS or kind != "step":
            self._flush()
        elif self._timer is None:
            self._timer = threading.Timer(FLUSH_SECONDS, self._flush)
            self._timer.daemon = True
            self._timer.start()

    def _flush(self) -> None:
        with self._send_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            events, self._pending = self._pending, []
            self._last_flush = time.monotonic()
        if events:
            self._emit({"type": "events", "events": events, "reset": False})

    def _emit(self, content: dict) -> None:
        try:
            self.send(content)
        except Exception:  # a closed comm must not kill the training thread
            log.debug("dashboard send failed", exc_info=True)

    # ------------------------------------------------------------------------------ preview
    def _slice_irange(self):
        if self._irange is None and self.viewer is not None:
            from ..data.io import intensity_range

            src = self.viewer.source
            self._irange = intensity_range(src.sample())
        return self._irange

    def _predict_slice(self, model, roi: np.ndarray | None = None) -> np.ndarray:
        import torch

        from ..inference import segment_image

        v = self.viewer
        img = v.current_slice()
        modes = {m: m.training for m in model.modules()}
        try:
            with torch.no_grad():
                return segment_image(model, img, roi=roi, irange=self._slice_irange())
        finally:  # segment_image switches to eval mode; training continues in the modes it had
            for m, was in modes.items():
                m.train(was)

    def _preview(self, model) -> None:
        v = self.viewer
        try:
            t0 = time.perf_counter()
            roi = v.slice_roi() if v.confine_to_regions else None
            pred = self._predict_slice(model, roi)
            v.set_labels("preview", pred, plane=(v.axis, v.slice_index), editable=False, opacity=0.5)
            self._emit(
                {
                    "type": "events",
                    "events": [
                        {
                            "type": "preview",
                            "iteration": self.handle.iteration,
                            "seconds": round(time.perf_counter() - t0, 2),
                        }
                    ],
                    "reset": False,
                }
            )
        except Exception as e:  # a failed preview must not stop training
            log.warning("live preview failed: %s", e)
            self.status = f"preview failed: {e}"

    # ---------------------------------------------------------------------------- inference
    def segment_slice(self) -> np.ndarray:
        """Segment the viewer's current slice into the label layer ``"prediction"`` (one undoable step).

        Runs ``inference`` (the embedded ``InferencePanel``) with ``mode="2d"`` and its other settings.
        The model is the run's (``trained_model``), else the one given.

        Returns
        -------
        numpy.ndarray
            The slice's labels.

        Raises
        ------
        ValueError
            Without a viewer, or without a model.

        Examples
        --------
        >>> from empanada_nb import build_model
        >>> viewer = Viewer(np.zeros((2, 64, 64), np.uint8))
        >>> d = TrainingDashboard(viewer, model=build_model("PanopticDeepLab", "resnet18"))
        >>> d.segment_slice().shape, viewer.layer("prediction").data.shape
        ((64, 64), (2, 64, 64))
        >>> d.inference.status  # doctest: +ELLIPSIS
        'segmented xy slice 1: ... objects'
        """
        self._need_viewer()
        return self.inference.run(background=False, mode="2d")

    def segment_volume(self, background: bool = True):
        """Segment the viewer's whole volume into the label layer ``"prediction"``.

        Runs ``inference`` with ``mode="stack"`` along the viewer's axis (a 2D image: ``segment_slice``).
        Progress, Cancel and errors are the panel's.

        Parameters
        ----------
        background : bool
            Run in a thread (the notebook stays responsive; the panel's Cancel stops it).

        Returns
        -------
        threading.Thread or numpy.ndarray
            The thread when ``background``, else the labels.

        Examples
        --------
        >>> from empanada_nb import build_model
        >>> viewer = Viewer(np.zeros((2, 64, 64), np.uint8))
        >>> d = TrainingDashboard(viewer, model=build_model("PanopticDeepLab", "resnet18"))
        >>> d.segment_volume(background=False).shape, viewer.layer("prediction").data.shape
        ((2, 64, 64), (2, 64, 64))
        >>> d.inference.status  # doctest: +ELLIPSIS
        'segmented the volume (stack) in ... s'
        """
        v = self._need_viewer()
        if v.ndim != 3:
            return self.segment_slice()
        return self.inference.run(background=background, mode="stack", axis=v.axis)

    def _need_viewer(self) -> Viewer:
        if self.viewer is None:
            raise ValueError("the dashboard has no viewer: TrainingDashboard(viewer=...)")
        return self.viewer

    # ------------------------------------------------------------------------------ messages
    def _on_custom_msg(self, _widget, content: dict, buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "start":
                self.start()
            elif kind == "stop":
                self.stop()
            elif kind == "history":
                self._emit({"type": "events", "events": _thin(self._events), "reset": True})
            elif kind == "list_checkpoints":
                self.list_checkpoints()
            elif kind == "resume":
                self.resume(content.get("path") or None)
            elif kind == "config_upload":
                if not buffers:
                    raise ValueError("the upload carried no file")
                self.load_config(bytes(buffers[0]), str(content.get("name") or "uploaded config"))
            else:
                log.warning("TrainingDashboard: unknown message %r", kind)
        except Exception as e:  # surface errors in the status line instead of the kernel log only
            log.exception("TrainingDashboard: %s failed", kind)
            self.status = f"{kind} failed: {e.__class__.__name__}: {e}"
