"""``empanada-nb segment MODEL INPUT --out OUT``: 2D, stack or ortho-plane inference to TIFF or zarr."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import CLIError

TIFF = (".tif", ".tiff")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "segment",
        help="segment a 2D image or a 3D volume with a saved model",
        description="Segment a TIFF (2D or 3D) or zarr volume; write panoptic labels "
        "(class * label_divisor + instance) to a TIFF or a zarr folder.",
    )
    p.add_argument("model", help="model file, registered name or published name (MitoNet_v1_mini, ...)")
    p.add_argument("input", help="TIFF image/volume or zarr folder")
    p.add_argument("--out", required=True, help="output .tif/.tiff file or zarr folder")
    p.add_argument(
        "--mode",
        choices=["2d", "stack", "ortho"],
        default=None,
        help="2d: every slice on its own; stack: slices linked in 3D; ortho: xy+xz+yz consensus "
        "(default: 2d for 2D input, stack for 3D)",
    )
    p.add_argument("--axis", choices=["xy", "xz", "yz"], default="xy", help="slicing axis for --mode stack")
    p.add_argument("--downsample", type=int, default=1, help="shrink the input by 1, 2, 4, ... 64 for the network")
    p.add_argument("--tile-size", type=int, default=None, help="tile side in network pixels (default: auto)")
    p.add_argument("--tile-overlap", type=int, default=128, help="tile overlap in network pixels")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 (default: cpu)")
    p.add_argument("--seg-thr", type=float, default=0.5)
    p.add_argument("--center-thr", type=float, default=0.1)
    p.add_argument("--min-distance", type=int, default=3)
    p.add_argument("--fine-boundaries", action="store_true")
    p.add_argument("--semantic-only", action="store_true")
    p.add_argument("--min-size", type=int, default=500, help="3D: drop instances under this many voxels")
    p.add_argument("--min-extent", type=int, default=5, help="3D: drop instances thinner than this along any axis")
    p.add_argument("--median-slices", type=int, default=1, help="3D: odd number of slices for the median filter")
    p.add_argument("--iou-thr", type=float, default=0.25, help="3D: IoU to link instances between slices")
    p.add_argument("--ioa-thr", type=float, default=0.25, help="3D: IoA to merge split pieces")
    p.add_argument("--vote", type=int, default=2, help="ortho: views (of 3) that must agree on a voxel")
    p.add_argument("--label-divisor", type=int, default=None, help="default: the model card's")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _open_input(path: Path):
    from ..reader import open_volume

    vol = open_volume(path)
    shape = tuple(vol.shape)
    if 0 in shape:
        raise CLIError(f"{path}: the image is empty (shape {shape})")
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4 or len(shape) == 4 and shape[-1] in (3, 4):
        raise CLIError(f"{path}: has a colour channel axis (shape {shape}); convert it to greyscale first")
    if len(shape) not in (2, 3):
        raise CLIError(f"{path}: expected a 2D image or a 3D volume, got shape {shape}")
    return vol


def run(args) -> int:
    from .._atomic import atomic_dir
    from ..data.io import write_tiff
    from ..inference import segment_batch, segment_image
    from ..model_io import load_model
    from ..volume import segment_ortho, segment_stack, volume_irange, write_volume_tiff

    src, out = Path(args.input), Path(args.out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.resolve() == src.resolve():
        raise CLIError("--out must differ from INPUT")
    vol = _open_input(src)
    mode = args.mode or ("2d" if vol.ndim == 2 else "stack")
    if vol.ndim == 2 and mode != "2d":
        raise CLIError(f"{src} is a 2D image; --mode {mode} needs a 3D volume (use --mode 2d)")
    model = load_model(args.model, device=args.device or "cpu")
    post = dict(
        seg_thr=args.seg_thr,
        center_thr=args.center_thr,
        min_distance=args.min_distance,
        fine_boundaries=args.fine_boundaries,
        semantic_only=args.semantic_only,
        label_divisor=args.label_divisor,
    )
    net = dict(
        downsample=args.downsample,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        batch_size=args.batch_size,
        device=args.device,
    )
    progress = not args.quiet
    to_tiff = out.suffix.lower() in TIFF

    if mode == "2d":
        if vol.ndim == 2:
            labels = segment_image(model, np.asarray(vol), **net, **post)
        else:
            labels = segment_batch(
                model,
                (np.asarray(vol[i]) for i in range(vol.shape[0])),
                irange=volume_irange(vol),
                progress=progress,
                **net,
                **post,
            )
            labels = np.stack(labels)
        if to_tiff and labels.ndim == 3:
            write_volume_tiff(labels, out)  # one greyscale page per slice
        elif to_tiff:
            write_tiff(out, labels)
        else:
            import zarr

            with atomic_dir(out) as tmp:
                zarr.open_array(str(tmp), mode="w", shape=labels.shape, dtype=labels.dtype)[:] = labels
        return _report(out, labels)

    kw = dict(
        min_size=args.min_size,
        min_extent=args.min_extent,
        median_slices=args.median_slices,
        iou_thr=args.iou_thr,
        ioa_thr=args.ioa_thr,
        progress=progress,
        **net,
        **post,
    )

    def segment(dst):
        if mode == "stack":
            return segment_stack(model, vol, axis=args.axis, out=dst, overwrite=args.overwrite, **kw)
        return segment_ortho(model, vol, vote=args.vote, out=dst, overwrite=args.overwrite, **kw)

    if not to_tiff:
        return _report(out, segment(out))
    # TIFF: labels go to a temporary zarr beside OUT, then stream page by page into the TIFF
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".zarr.tmp", dir=out.parent))
    try:
        labels = segment(tmp / "labels.zarr")
        write_volume_tiff(labels, out, progress=progress)
        return _report(out, labels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _report(out: Path, labels) -> int:
    print(f"wrote {out}: shape {tuple(labels.shape)}, dtype {np.dtype(labels.dtype).name}")
    return 0
