"""``empanada-nb segment MODEL INPUT --out OUT``: 2D, stack or ortho-plane inference to TIFF or zarr."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import CLIError
from ._segment_args import add_options, options_from


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "segment",
        help="segment a 2D image or a 3D volume with a saved model",
        description="Segment a TIFF (2D or 3D) or zarr volume; write panoptic labels "
        "(class * label_divisor + instance) to a TIFF or a zarr folder.",
    )
    p.add_argument("model", help="model file, registered name or published name (MitoNet_v1_mini, ...)")
    p.add_argument("input", help="TIFF image/volume or zarr folder")
    p.add_argument("--out", required=True, help="output .tif/.tiff file or zarr folder (.zarr or no suffix)")
    # every inference setting (--mode, --axis, --seg-thr, ..., --erode, --keep-planes, --overwrite) comes
    # from SegmentOptions, the source the InferencePanel's form is built from
    add_options(p)
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
    from .._atomic import atomic_dir, check_writable, claim, temp_dir
    from ..data.io import write_tiff
    from ..distributed import is_unfinished, segment_distributed
    from ..inference import segment_batch, segment_image
    from ..model_io import load_model
    from ..reader import open_pyramid
    from ..volume import (
        is_ome_zarr,
        mark_zarr,
        output_kind,
        segment_ortho,
        segment_stack,
        volume_irange,
        write_volume_tiff,
    )

    src, out = Path(args.input), Path(args.out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    to_tiff = output_kind(out) == "tiff"
    if out.resolve() == src.resolve():
        raise CLIError("--out must differ from INPUT")
    # before any work: an existing OUT is replaced only with --overwrite and only when it is ours
    # (an unfinished --cluster run in OUT is resumed instead)
    if not (args.cluster and is_unfinished(out)):
        claim(out, args.overwrite, hint="pass --overwrite to replace it")
    check_writable(out.parent)
    vol = _open_input(src)
    mode = args.mode or ("2d" if vol.ndim == 2 else "stack")
    if vol.ndim == 2 and mode != "2d":
        raise CLIError(f"{src} is a 2D image; --mode {mode} needs a 3D volume (use --mode 2d)")
    if args.cluster and mode == "2d":
        raise CLIError("--cluster segments 3D volumes block-wise; use --mode stack or --mode ortho")
    model = load_model(args.model, device=args.device or "cpu")
    opts = options_from(args, mode)
    progress = not args.quiet

    if mode == "2d":
        if vol.ndim == 2:
            labels = segment_image(model, np.asarray(vol), **opts.kwargs("2d"))
        else:
            labels = segment_batch(
                model,
                (np.asarray(vol[i]) for i in range(vol.shape[0])),
                irange=volume_irange(vol),
                progress=progress,
                **opts.kwargs("2d"),
            )
            labels = np.stack(labels)
        if to_tiff and labels.ndim == 3:
            write_volume_tiff(labels, out, overwrite=args.overwrite)  # one greyscale page per slice
        elif to_tiff:
            write_tiff(out, labels, overwrite=args.overwrite)
        else:
            import zarr

            with atomic_dir(out, args.overwrite) as tmp:
                arr = zarr.open_array(str(tmp), mode="w", shape=labels.shape, dtype=labels.dtype)
                arr[:] = labels
                mark_zarr(arr)
        return _report(out, labels)

    kw = dict(opts.kwargs(mode), progress=progress)
    planes = {}
    if opts.keep_planes and mode == "ortho" and to_tiff:
        planes = {a: out.with_name(f"{out.stem}_{a}{out.suffix}") for a in ("xy", "xz", "yz")}
        taken = [str(p) for p in planes.values() if p.exists()]
        if taken and not args.overwrite:
            raise FileExistsError(f"{taken[0]} exists; pass --overwrite to replace it")

    def segment(dst):
        if opts.cluster:  # block-wise on a dask cluster; workers open INPUT themselves
            dist = {k: v for k, v in kw.items() if k not in ("out", "keep_planes")}
            if opts.keep_planes:
                raise CLIError("--keep-planes is not available with --cluster")
            return segment_distributed(
                model, src, dst, opts.cluster, mode=mode, workers=opts.workers, block=opts.block, **dist
            )
        # an .ome.zarr output carries the input's voxel sizes: pass the pyramid (its level 0 is vol)
        inp = open_pyramid(src) if is_ome_zarr(dst) else vol
        if mode == "stack":
            return segment_stack(model, inp, **dict(kw, out=dst))
        result = segment_ortho(model, inp, **dict(kw, out=dst))
        if not opts.keep_planes:
            return result
        labels, views = result  # zarr out: the API wrote OUT_xy.zarr, ... beside it
        for a, path in planes.items():
            write_volume_tiff(views[a], path, progress=progress)
        return labels

    if not to_tiff:
        return _report(out, segment(out))
    # TIFF: labels go to a temporary zarr beside OUT, then stream page by page into the TIFF
    with temp_dir(out, ".zarr") as tmp:
        labels = segment(tmp / "labels.zarr")
        write_volume_tiff(labels, out, progress=progress, overwrite=args.overwrite)
        return _report(out, labels)


def _report(out: Path, labels) -> int:
    print(f"wrote {out}: shape {tuple(labels.shape)}, dtype {np.dtype(labels.dtype).name}")
    return 0
