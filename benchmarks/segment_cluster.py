"""Throughput of segment_distributed with 1 and 2 LocalCluster workers against single-process segment_stack.

    python benchmarks/segment_cluster.py [--slices 32] [--size 256] [--workers 1 2] [--block 8]

Reads a crop of the Lucchi++ volume from ../shared/data (or $EMPANADA_NB_DATA) into a zarr in a
temporary folder, segments it with a resnet18 Panoptic-DeepLab (random weights: the work per voxel
is what is measured) and prints voxels per second for each run, cluster start-up included and
excluded (a second run on the same client). On a GPU machine each worker takes one GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import tifffile
import zarr

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EMPANADA_NB_DATA", ROOT / ".." / "shared" / "data"))


def main() -> int:
    import empanada_nb as enb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--block", type=int, default=8, help="block depth along z (whole slices in the plane)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        n, s = args.slices, args.size
        vol = tifffile.imread(DATA / "lucchipp_train_image.tif", key=range(n))[:, :s, :s]
        src = zarr.open_array(str(tmp / "in.zarr"), mode="w", shape=vol.shape, dtype=vol.dtype, chunks=(8, s, s))
        src[:] = vol
        model = enb.build_model("PanopticDeepLab", "resnet18").eval()
        t = time.perf_counter()
        enb.segment_stack(model, vol, progress=False)
        dt = time.perf_counter() - t
        print(f"segment_stack, 1 process: {dt:.1f} s, {vol.size / dt / 1e6:.2f} Mvoxel/s")
        from distributed import Client, LocalCluster

        for w in args.workers:
            t0 = time.perf_counter()
            with (
                LocalCluster(n_workers=w, threads_per_worker=1, dashboard_address=":0") as cluster,
                Client(cluster) as client,
            ):
                t1 = time.perf_counter()
                for run in ("first", "second"):
                    t = time.perf_counter()
                    enb.segment_distributed(
                        model,
                        tmp / "in.zarr",
                        tmp / f"out{w}{run}.zarr",
                        client,
                        block=(args.block, s, s),
                        progress=False,
                    )
                    dt = time.perf_counter() - t
                    print(
                        f"segment_distributed, {w} worker(s), {run} run: {dt:.1f} s, "
                        f"{vol.size / dt / 1e6:.2f} Mvoxel/s (cluster start {t1 - t0:.1f} s)"
                    )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
