"""``empanada-nb convert INPUT.tif OUTPUT.ome.zarr``: a TIFF stack to a chunked OME-Zarr image pyramid."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CLIError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert",
        help="convert a TIFF stack to a chunked OME-Zarr image pyramid",
        description="Convert a TIFF image or stack (read lazily, page by page) to an OME-Zarr image pyramid "
        "(NGFF 0.4, levels by block means), streaming with bounded memory. The output appears only when complete.",
    )
    p.add_argument("input", help="TIFF image or (Z, Y, X) stack")
    p.add_argument("output", help="output folder, e.g. volume.ome.zarr")
    p.add_argument(
        "--chunks",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=[32, 256, 256],
        help="chunk shape (default 32 256 256)",
    )
    p.add_argument("--levels", type=int, default=None, help="pyramid levels (default: until every side <= 256)")
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=None,
        help="physical voxel size (default: the TIFF's resolution and ImageJ spacing, if any)",
    )
    p.add_argument("--unit", default=None, help="unit of --voxel-size, e.g. nanometer or micrometer")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT (only one empanada_nb wrote)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from .._atomic import claim
    from ..omezarr import convert_to_ome_zarr
    from ..reader import volume_info

    src, out = Path(args.input), Path(args.output)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if args.levels is not None and args.levels < 1:
        raise CLIError(f"--levels must be >= 1, got {args.levels}")
    if min(args.chunks) < 1:
        raise CLIError(f"--chunks must be positive, got {' '.join(map(str, args.chunks))}")
    if args.voxel_size is not None and min(args.voxel_size) <= 0:
        raise CLIError(f"--voxel-size must be positive, got {' '.join(map(str, args.voxel_size))}")
    claim(out, args.overwrite, hint="pass --overwrite to replace it")
    convert_to_ome_zarr(
        src,
        out,
        chunks=args.chunks,
        n_levels=args.levels,
        voxel_size=args.voxel_size,
        unit=args.unit,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    info = volume_info(out)
    vs = f", voxel size {info['voxel_size']} {info['unit'] or ''}".rstrip() if info["voxel_size"] else ""
    print(f"wrote {out}: {len(info['levels'])} levels {info['levels']}, dtype {info['dtype']}{vs}")
    return 0
