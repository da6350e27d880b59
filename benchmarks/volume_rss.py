"""Peak RSS of single-process stack inference as the volume grows 1x, 4x, 16x (prints a table; asserts nothing).

    python benchmarks/volume_rss.py [--data DIR] [--crop 16 256 256] [--quick]

A crop of ``lucchipp_train_image.tif`` (from ``$EMPANADA_NB_DATA`` or ``../shared/data``) is tiled
into a zarr (chunks ``(8, 256, 256)``) of 1x, 4x and 16x its size, in two series:

- ``z``: tiled along z only (1, 4, 16 copies): the slice stays the same, so peak RSS should stay flat;
- ``zyx``: tiled along z, y and x ((1, 1, 1), (1, 2, 2), (4, 2, 2) copies): slices grow 4x at 4x and
  16x, so RSS grows with the slice (network activations) but not with the number of slices.

Each run is ``segment_stack`` (xy, untrained PanopticDeepLab/resnet18, 1 torch thread) from the
zarr into a zarr, in a fresh spawned process; RSS is sampled every 5 ms and reported above the
process's RSS after the model is built and warmed up (``benchmarks/volume.py`` ``PeakRSS``).
``--quick`` uses a tiny crop and checks that the script runs; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from volume import DEFAULT_DATA, PeakRSS  # noqa: E402  (the sibling benchmark's sampler)

SERIES = {"z": [(1, 1, 1), (4, 1, 1), (16, 1, 1)], "zyx": [(1, 1, 1), (1, 2, 2), (4, 2, 2)]}


def tile_zarr(crop, reps, path: str, chunks=(8, 256, 256)) -> tuple[int, ...]:
    """Write ``crop`` tiled ``reps`` times along (z, y, x) into a new zarr, one copy at a time."""
    import zarr

    shape = tuple(s * r for s, r in zip(crop.shape, reps))
    arr = zarr.open_array(
        path, mode="w", shape=shape, dtype=crop.dtype, chunks=tuple(min(c, s) for c, s in zip(chunks, shape))
    )
    for i in range(reps[0]):
        for j in range(reps[1]):
            for k in range(reps[2]):
                z, y, x = (i * crop.shape[0], j * crop.shape[1], k * crop.shape[2])
                arr[z : z + crop.shape[0], y : y + crop.shape[1], x : x + crop.shape[2]] = crop
    return shape


def _job(src: str, out: str, queue) -> None:
    import numpy as np
    import torch

    from empanada_nb.models import build_model
    from empanada_nb.reader import open_volume
    from empanada_nb.volume import segment_stack

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("PanopticDeepLab", "resnet18", num_classes=1).eval()
    vol = open_volume(src)
    kw = dict(min_size=0, min_extent=0, progress=False, irange=(0.0, 255.0), batch_size=4)
    segment_stack(model, np.asarray(vol[:2, :64, :64]), **kw)  # warm-up outside the measurement
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        segment_stack(model, vol, out=out, **kw)
        dt = time.perf_counter() - t0
    queue.put(dict(seconds=dt, base_mib=rss.base / 2**20, peak_mib=rss.peak / 2**20))


def measure(src: str, out: str) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_job, args=(src, out, q))
    p.start()
    res = q.get()
    p.join()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--crop", type=int, nargs=3, metavar=("Z", "Y", "X"), default=[16, 256, 256])
    ap.add_argument("--series", choices=sorted(SERIES), nargs="+", default=["z", "zyx"])
    ap.add_argument("--quick", action="store_true", help="tiny crop (2, 64, 64): checks that the script runs")
    args = ap.parse_args(argv)
    tif = args.data / "lucchipp_train_image.tif"
    if not tif.exists():
        print(f"{tif} not found; set EMPANADA_NB_DATA", file=sys.stderr)
        return 2
    import numpy as np

    from empanada_nb.reader import open_volume

    cz, cy, cx = (2, 64, 64) if args.quick else args.crop
    crop = np.asarray(open_volume(tif)[:cz, :cy, :cx])
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; untrained PanopticDeepLab/resnet18, 1 thread"
    )
    print(f"crop: lucchipp_train_image.tif[:{cz}, :{cy}, :{cx}], tiled into zarr (8, 256, 256) chunks, output zarr\n")
    head = f"{'series':<7}{'size':>5}  {'shape':<20}{'GiB in':>8}{'s':>9}{'slices/s':>10}"
    print(head + f"{'base MiB':>10}{'peak MiB':>10}{'delta':>8}")
    with tempfile.TemporaryDirectory() as work:
        for name in args.series:
            for reps in SERIES[name]:
                src = str(Path(work) / "in.zarr")
                shape = tile_zarr(crop, reps, src)
                r = measure(src, str(Path(work) / f"out_{time.time_ns()}.zarr"))
                size = int(np.prod(reps))
                gib = np.prod(shape) * crop.dtype.itemsize / 2**30
                print(
                    f"{name:<7}{str(size) + 'x':>5}  {str(shape):<20}{gib:>8.3f}{r['seconds']:>9.1f}"
                    f"{shape[0] / r['seconds']:>10.2f}{r['base_mib']:>10.0f}{r['peak_mib']:>10.0f}"
                    f"{r['peak_mib'] - r['base_mib']:>8.0f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
