"""The dashboard's runs beside the output: list their checkpoints and resume one (a TrainingDashboard mixin).

A run whose kernel died left ``<name>.checkpoint.pth`` beside its model. The dashboard lists the
checkpoints in the folder of its ``out`` field (``checkpoints``, refreshed when ``out`` changes and on
``list_checkpoints``) and ``resume`` continues one with ``empanada_nb.resume_training``: the history up
to the checkpoint arrives first, so the live plot shows the whole run.
"""

from __future__ import annotations

from pathlib import Path

from ..training.resume import find_checkpoints


class ResumeRuns:
    """Mixin of ``TrainingDashboard``: checkpoints beside the output, and resuming them.

    Needs the dashboard's ``out``, ``checkpoints``, ``running`` and its event plumbing; its public
    methods are documented as the dashboard's.

    Examples
    --------
    >>> from empanada_nb import TrainingDashboard
    >>> from empanada_nb.widgets._resume import ResumeRuns
    >>> isinstance(TrainingDashboard(), ResumeRuns)
    True
    """

    def list_checkpoints(self) -> list[dict]:
        """Find the training checkpoints in the folder of ``out`` (also the ``checkpoints`` trait).

        Returns
        -------
        list of dict
            What ``empanada_nb.find_checkpoints`` returns, newest first.

        Examples
        --------
        >>> import tempfile
        >>> from empanada_nb import TrainingDashboard
        >>> TrainingDashboard(out=tempfile.mkdtemp() + "/mito.pth").list_checkpoints()
        []
        """
        folder = Path(self.out.strip() or "model.pth").expanduser().parent
        found = find_checkpoints(folder)
        self.checkpoints = [{k: v for k, v in c.items() if k != "train_dirs"} for c in found]
        return found

    def resume(self, checkpoint=None, **overrides):
        """Resume a run from a checkpoint beside ``out``; the live plot gets its history first.

        Parameters
        ----------
        checkpoint : str or os.PathLike, optional
            The checkpoint (default: that of ``out``'s run, else the newest unfinished one listed).
        **overrides
            Settings a resumed run may change, e.g. ``iterations=2000`` to train longer.

        Returns
        -------
        TrainingHandle
            The continued run (also ``handle``).

        Raises
        ------
        ValueError
            When there is no unfinished checkpoint to resume.
        RuntimeError
            When a run is already going.

        Examples
        --------
        >>> d = TrainingDashboard(out="runs/mito.pth")  # doctest: +SKIP
        >>> d.list_checkpoints()[0]["iteration"]  # doctest: +SKIP
        120
        >>> d.resume().wait().iteration  # doctest: +SKIP
        500
        """
        from ..training.resume import resume_training

        if self.running:
            raise RuntimeError("training is already running; stop it first")
        if checkpoint is None:
            found = self.list_checkpoints()
            mine = str(Path(self.out.strip() or "model.pth").expanduser().resolve())
            open_runs = [c for c in found if "error" not in c and (not c["finished"] or overrides)]
            pick = [c for c in open_runs if str(Path(c["out"]).resolve()) == mine] or open_runs
            if not pick:
                raise ValueError("no unfinished training checkpoint beside the output; choose one with resume(path)")
            checkpoint = pick[0]["path"]
        self._events = []
        self._pending = []
        self._emit({"type": "events", "events": [], "reset": True})
        handle = resume_training(checkpoint, callbacks=[self._on_event], background=True, **overrides)
        self.handle = handle
        self.out = str(handle.out)
        self.running = True
        self.status = f"resuming {Path(checkpoint).name}"
        self._update_has_model()
        return handle
