"""Block-wise segmentation of a large volume on a dask.distributed cluster, resumable.

The volume is cut into blocks; each worker segments a block grown by a halo in memory with
``segment_stack`` or ``segment_ortho`` and keeps only its core. Ids are made unique across blocks
and objects cut by block faces are joined (``_blocks.merge``); the 3D size/extent filter then runs
over whole objects, and a last pass writes every core with its final ids into the output zarr.
Each block's result is a record file written atomically after its data, so a restart after a
crash recomputes only the blocks without one. The model travels to the workers once, as a file in
the run's work folder, and is loaded once per worker process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch.nn as nn

from ._atomic import MARKER, PathLike, atomic_path, claim
from ._blocks import Block, block_record, fault_hooks, grid, merge, record_path, save_record
from .cancel import Cancelled
from .progress import Progress, ProgressBar

__all__ = ["default_halo", "is_unfinished", "segment_distributed"]

#: the run's scratch folder inside the output group (records, model, settings); removed when done
WORK = ".enb_work"


def default_halo(model: nn.Module, mode: str = "stack", axis: str = "xy", **options) -> tuple[int, int, int]:
    """The halo (voxels per side, ``(Z, Y, X)``) that makes a block's core see what a whole-volume run sees.

    In the plane of the network's slices the halo is the tile overlap of 2D inference
    (``tile_overlap`` network pixels, default 128, times ``downsample``): the context that
    ``segment_image`` already trusts at tile edges, and wider than the postprocessing window (center
    NMS, offset votes) of objects that fit in a tile. It is rounded up to a multiple of the model's
    ``padding_factor`` times ``downsample`` so that block boxes start on the network's stride grid.
    Along the stack axis of ``mode="stack"`` the network sees one slice at a time, so the halo is
    the median-filter reach plus two slices: the plane beyond the face that the merge compares and its
    predecessor, so that plane is linked as in the whole stack. In ``mode="ortho"`` every axis lies
    in the plane of two views, so all three get the in-plane halo.

    Parameters
    ----------
    model : torch.nn.Module
        The model (its ``padding_factor``).
    mode : {"stack", "ortho"}
        Inference mode.
    axis : {"xy", "xz", "yz"}
        Stack axis (``mode="stack"``).
    **options
        Inference settings: ``tile_overlap``, ``downsample``, ``median_slices`` are read.

    Returns
    -------
    tuple of int
        Halo per axis.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> default_halo(enb.build_model("PanopticDeepLab", "resnet18"))
    (2, 128, 128)
    """
    from .geometry import axis_dim

    ds = int(options.get("downsample", 1))
    step = int(getattr(model, "padding_factor", 16)) * ds
    plane = math.ceil(max(int(options.get("tile_overlap", 128)) * ds, step) / step) * step
    if mode == "ortho":
        return (plane,) * 3
    halo = [plane] * 3
    halo[axis_dim(axis)] = int(options.get("median_slices", 1)) // 2 + 2
    return tuple(halo)


def is_unfinished(out: PathLike) -> bool:
    """Whether ``out`` holds an unfinished ``segment_distributed`` run (which a new run resumes).

    Parameters
    ----------
    out : str or os.PathLike
        An output zarr folder.

    Returns
    -------
    bool
        True when its work folder holds the run's settings.

    Examples
    --------
    >>> is_unfinished("no-such-output.zarr")
    False
    """
    return (Path(out) / WORK / "run.json").is_file()


def _default_block(shape, mode: str, axis: str, step: int) -> tuple[int, int, int]:
    """Cubes of 256 for ortho (each axis is in plane for two views); slabs of 32 x 1024 x 1024 for stack."""
    from .geometry import axis_dim

    if mode == "ortho":
        want = [256, 256, 256]
    else:
        want = [1024] * 3
        want[axis_dim(axis)] = 32
    return tuple(min(s, w) for s, w in zip(shape, want))


def segment_distributed(
    model: nn.Module,
    volume,
    out: PathLike,
    client=None,
    *,
    mode: str = "stack",
    block: Sequence[int] | None = None,
    halo: Sequence[int] | None = None,
    workers: int | None = None,
    chunks: Sequence[int] | None = None,
    merge_thr: float = 0.5,
    overwrite: bool = False,
    resume: bool = True,
    progress: Progress = True,
    cancel: threading.Event | None = None,
    **options,
):
    """Segment a volume block by block on a dask.distributed cluster into OME-Zarr labels, resumably.

    Each block is segmented with its halo in memory by ``segment_stack`` (``mode="stack"``) or
    ``segment_ortho`` and only its core is kept; objects cut by block faces are joined where the two
    blocks' predictions of the face planes agree, ids are unique over the volume, and the size and
    extent filters apply to whole objects. Blocks already done (a record in ``out``'s work folder)
    are not recomputed when the run is started again after a crash.

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``; saved once into the run's work
        folder and loaded once by each worker.
    volume : array_like or str or os.PathLike
        A ``(Z, Y, X)`` zarr/OME-Zarr/TIFF path (workers open it themselves; it must be on a file system
        they share) or an array-like (sent to the workers once).
    out : str or os.PathLike
        Output folder (e.g. ``seg.ome.zarr``): OME-Zarr labels (NGFF 0.4 multiscales, the input's voxel
        size when it has one, a pyramid written once every block is done), full resolution in array
        ``"0"``. Must be reachable by every worker.
    client : dask.distributed.Client or str, optional
        A client, a scheduler address (``"tcp://host:8786"``) or None / ``"local"`` for a ``LocalCluster``
        of worker processes (one thread each; with GPUs, one worker per GPU, each on its own GPU).
    mode : {"stack", "ortho"}
        Inference in each block.
    block : sequence of int, optional
        Core size ``(Z, Y, X)``; default 32 x 1024 x 1024 for stack, 256 cubes for ortho.
    halo : sequence of int, optional
        Voxels of context per side; default ``default_halo``.
    workers : int, optional
        Worker processes of a ``LocalCluster``; default one per GPU, else a quarter of the CPU cores.
    chunks : sequence of int, optional
        Chunks of the output; must divide ``block`` so that workers never share a chunk.
    merge_thr : float
        Overlap over the smaller area of two ids on a face plane above which they are one object.
    overwrite : bool
        Start over even if ``out`` exists (only if empanada_nb wrote it).
    resume : bool
        Continue an unfinished run in ``out`` with the same settings and model.
    progress : bool or callable
        True: tqdm bars; a callable receives progress events (stages ``blocks`` and ``write``).
    cancel : threading.Event, optional
        When set, stops after the next finished block by raising ``Cancelled`` (done blocks are kept).
    **options
        Settings of ``segment_stack`` / ``segment_ortho`` (``axis``, ``min_size``, ``vote``, ...).

    Returns
    -------
    zarr.Array
        The full-resolution labels (array ``"0"`` of ``out``).

    Raises
    ------
    ValueError
        When a setting is invalid or ``out`` holds an unfinished run with other settings.
    FileExistsError
        When ``out`` exists and ``overwrite`` is False (and it is not an unfinished run to resume).
    Cancelled
        When ``cancel`` is set.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18")
    >>> vol = np.zeros((4, 64, 64), np.uint8)
    >>> out = tempfile.mkdtemp() + "/labels.zarr"
    >>> labels = enb.segment_distributed(model, vol, out, workers=1, progress=False)  # doctest: +SKIP
    >>> labels.shape  # doctest: +SKIP
    (4, 64, 64)
    """
    from .inference import check_divisor, label_dtype
    from .model_io import card_for
    from .models.blocks import semantic_channels
    from .omezarr import _build_levels
    from .volume import _voxel_size, as_volume, volume_irange

    if mode not in ("stack", "ortho"):
        raise ValueError(f"mode must be 'stack' or 'ortho', got {mode!r}")
    if options.get("keep_planes"):
        raise ValueError("segment_distributed does not keep the xy/xz/yz stacks; drop keep_planes")
    options.pop("keep_planes", None)
    if mode == "ortho" and "axis" in options:
        raise ValueError("mode='ortho' runs every axis; axis is for mode='stack'")
    source = str(volume) if isinstance(volume, (str, os.PathLike)) else None
    vol = as_volume(volume)
    shape = tuple(int(s) for s in vol.shape)
    axis = options.get("axis", "xy")
    card = card_for(model)
    div = check_divisor(options.pop("label_divisor", None), card)
    dtype = np.dtype(label_dtype(semantic_channels(card.num_classes), div))
    things = [] if options.get("semantic_only") else [int(t) for t in card.thing_list]
    min_size = int(options.pop("min_size", 500))
    min_extent = int(options.pop("min_extent", 5))
    step = int(getattr(model, "padding_factor", 16)) * int(options.get("downsample", 1))
    block = tuple(int(b) for b in (block or _default_block(shape, mode, axis, step)))
    halo = tuple(int(h) for h in (halo if halo is not None else default_halo(model, mode, **dict(options, axis=axis))))
    if len(block) != 3 or min(block) < 1 or len(halo) != 3 or min(halo) < 0:
        raise ValueError(f"block must be 3 positive and halo 3 non-negative integers, got {block} and {halo}")
    chunks = tuple(int(c) for c in (chunks or [math.gcd(b, d) for b, d in zip(block, (16, 256, 256))]))
    if len(chunks) != 3 or any(c < 1 or b % c for b, c in zip(block, chunks)):
        raise ValueError(f"chunks {chunks} must divide block {block} (workers must never write the same chunk)")
    if options.get("irange") is None:
        options["irange"] = tuple(float(v) for v in volume_irange(vol))  # one range for every block
    # the blocks keep every object: the size filter needs whole objects, so it runs after the merge
    kw = dict(options, label_divisor=div, min_size=0, min_extent=0)
    device = kw.pop("device", None)  # not a setting of the result: a resumed run may use other devices
    settings = {
        "shape": shape,
        "block": block,
        "halo": halo,
        "mode": mode,
        "options": kw,
        "dtype": dtype.name,
        "model": _fingerprint(model),
    }
    out = Path(out)
    work = out / WORK
    arr = _prepare(out, work, settings, chunks, overwrite, resume, model, _voxel_size(volume))
    blocks = grid(shape, block, halo)
    with _connect(client, workers) as (c, threads):
        src = source if source is not None else c.scatter(_Source(vol), broadcast=True)
        todo = [b for b in blocks if not record_path(work, b).exists()]
        spec = dict(work=str(work), source=src, mode=mode, kwargs=kw, threads=threads, device=device)
        futures = [c.submit(_block_task, b, pure=False, **spec) for b in todo]
        _gather(c, futures, len(blocks), len(blocks) - len(todo), "blocks", progress, cancel)
        maps = merge(blocks, work, things, div, merge_thr=merge_thr, min_size=min_size, min_extent=min_extent)
        futures = [
            c.submit(_write_task, b, str(work), str(out), *maps[b.name], things, div, pure=False) for b in blocks
        ]
        _gather(c, futures, len(blocks), 0, "write", progress, cancel)
    arr.attrs[MARKER] = dict(arr.attrs[MARKER], complete=True)
    _build_levels(out, None, progress, f"{out.name}: pyramid")  # OME-Zarr levels + NGFF metadata, complete
    shutil.rmtree(work, ignore_errors=True)  # ours: records and the model copy, no longer needed
    return arr


# --------------------------------------------------------------------------------------------
# the output and the run's work folder
# --------------------------------------------------------------------------------------------


def _create_labels(path: Path, shape, dtype, chunks, voxel_size, unit):
    """Level 0 of the OME-Zarr labels output, written in place (the run's records make it resumable).

    ``omezarr.create_labels`` builds under a hidden folder renamed at the end; here the blocks' done
    records carry the crash safety instead, and the group's marker says ``complete: false`` until the
    pyramid and the NGFF metadata are written (``_build_levels``).
    """
    from .omezarr import _init_group
    from .volume import mark_zarr

    arr = _init_group(path, shape, dtype, chunks, voxel_size, unit, name="labels", kind="labels")
    mark_zarr(arr)
    return arr


def _prepare(out: Path, work: Path, settings: dict, chunks, overwrite: bool, resume: bool, model, voxel=(None, None)):
    """The output array: a new one, or the unfinished run's when ``resume`` and its settings match."""
    import zarr

    from .model_io import save_model

    text = json.dumps(settings, sort_keys=True, default=list)
    run = work / "run.json"
    if out.exists() and resume and not overwrite and run.exists():
        if json.loads(run.read_text()) != json.loads(text):
            raise ValueError(
                f"{out} holds an unfinished run with other settings or another model; "
                "pass the same ones to resume, or overwrite=True to start over"
            )
        return zarr.open_array(str(out / "0"), mode="r+")
    claim(out, overwrite, hint="pass overwrite=True (CLI: --overwrite) to replace it")
    if out.exists():
        shutil.rmtree(out)  # claim checked it is ours
    arr = _create_labels(out, settings["shape"], settings["dtype"], chunks, *voxel)
    save_model(model, work / "model.pth")
    with atomic_path(run) as tmp:  # last: a run folder without it is started afresh
        Path(tmp).write_text(text)
    return arr


def _fingerprint(model: nn.Module) -> str:
    """A hash of the weights, so that a restart with another model is refused, not silently mixed."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _connect(client, workers: int | None) -> Iterator[tuple]:
    """``(client, torch threads per worker or None)``: a given client, one to an address, or a LocalCluster."""
    from distributed import Client, LocalCluster

    if client is not None and not isinstance(client, str):
        yield client, None
        return
    if isinstance(client, str) and client != "local":
        with Client(client) as c:
            yield c, None
        return
    import torch

    gpus = torch.cuda.device_count()
    n = int(workers or gpus or max(1, (os.cpu_count() or 1) // 4))
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with (
        LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c, max(1, (os.cpu_count() or 1) // n)


def _gather(c, futures, total: int, done: int, stage: str, progress: Progress, cancel) -> None:
    from distributed import as_completed

    with ProgressBar(total, stage, progress, unit="block") as bar:
        bar.update(done)
        for fut in as_completed(futures):
            fut.result()  # a block's error stops the run with that error
            bar.update(1)
            if cancel is not None and cancel.is_set():
                c.cancel(futures)
                raise Cancelled(f"{stage}: cancelled; the blocks done are kept, run again to resume")


# --------------------------------------------------------------------------------------------
# on the workers
# --------------------------------------------------------------------------------------------


class _Source:
    """An in-memory volume, wrapped so that dask sends it as it is (a dask array is not computed)."""

    def __init__(self, array):
        self.array = array


_CACHE: dict[str, object] = {}


def _worker_device(device):
    """The requested device, else this worker's GPU (LocalCluster workers are named 0, 1, ...), else CPU."""
    import torch

    if device is not None or not torch.cuda.is_available():
        return device or "cpu"
    try:
        from distributed import get_worker

        i = int(get_worker().name)
    except (ValueError, TypeError):
        i = 0  # a batch-system job sees its own GPU(s) only
    return f"cuda:{i % torch.cuda.device_count()}"


def _worker_model(work: str, device):
    """The run's model, loaded once per worker process."""
    from .model_io import load_model

    key = f"model:{work}:{device}"
    if key not in _CACHE:
        _CACHE[key] = load_model(Path(work) / "model.pth", device=device)
    return _CACHE[key]


def _worker_volume(source):
    if isinstance(source, _Source):
        return source.array
    from .reader import open_volume

    key = f"volume:{source}"
    if key not in _CACHE:
        _CACHE[key] = open_volume(source)
    return _CACHE[key]


def _block_task(blk: Block, *, work: str, source, mode: str, kwargs: dict, threads, device) -> str:
    """Segment one block (unless its record exists) and write its record."""
    import torch

    from .volume import segment_ortho, segment_stack

    rec = record_path(Path(work), blk)
    if rec.exists():
        return "skipped"
    fault_hooks(Path(work), blk)
    if threads:
        torch.set_num_threads(int(threads))
    device = _worker_device(device)
    model = _worker_model(work, device)
    data = np.asarray(_worker_volume(source)[blk.slices("box")])
    fn = segment_stack if mode == "stack" else segment_ortho
    labels = fn(model, data, progress=False, device=device, **kwargs)
    card = model.card
    things = [] if kwargs.get("semantic_only") else list(card.thing_list)
    save_record(rec, block_record(np.asarray(labels), blk, things, kwargs["label_divisor"]))
    return "done"


def _write_task(blk: Block, work: str, out: str, old, new, things, div: int) -> None:
    """Write one block's core with its final ids (idempotent: reads the record, not the output)."""
    import zarr

    from .tracking import apply_map

    core = np.load(record_path(Path(work), blk))["core"]
    arr = zarr.open_array(str(Path(out) / "0"), mode="r+")
    order = np.argsort(old)
    arr[blk.slices("core")] = apply_map(core, old[order], new[order], things, div).astype(arr.dtype)
