"""Speed and memory of 3D inference on a real EM volume (prints figures; asserts nothing).

    python benchmarks/volume.py [--data DIR] [--size 192] [--slices 16] [--growth 8]

A crop of ``lucchipp_train_image.tif`` (from ``$EMPANADA_NB_DATA`` or ``../shared/data``) is
copied to a temporary zarr (so it is read lazily) and segmented with an untrained
PanopticDeepLab/resnet18: the figures are about speed and memory, not accuracy. Every run is a
fresh process; peak RSS is sampled every 5 ms and reported above the process's RSS after the
model is built and warmed up.

1. ``segment_stack`` along xy, xz and yz: slices/s and peak RSS.
2. ``segment_ortho`` (three stacks + consensus): total time and peak RSS.
3. ``segment_stack`` xy with 1x, 2x, 4x the slices, output to zarr and to numpy: peak RSS should
   stay flat for zarr (bounded working set) and grow by the label array for numpy.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_DATA = Path(os.environ.get("EMPANADA_NB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self.peak, self._stop = 0, threading.Event()

    def __enter__(self):
        self.base = self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _model():
    import torch

    from empanada_nb.models import build_model

    torch.manual_seed(0)
    return build_model("PanopticDeepLab", "resnet18", num_classes=1).eval()


def _job(kind: str, src: str, n_slices: int, out_kind: str, workdir: str, queue) -> None:
    """One measurement in a fresh process; puts a result dict on ``queue``."""
    import numpy as np
    import torch

    from empanada_nb.volume import open_volume, segment_ortho, segment_stack

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    model = _model()
    vol = open_volume(src)
    vol = vol if n_slices >= vol.shape[0] else _Crop(vol, n_slices)
    kw = dict(min_size=0, min_extent=0, progress=False, irange=(0.0, 255.0), batch_size=4)
    segment_stack(model, np.asarray(vol[:2, :64, :64]), **kw)  # warm-up outside the measurement
    out = None if out_kind == "numpy" else str(Path(workdir) / f"{kind}_{n_slices}_{time.time_ns()}.zarr")
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        if kind == "ortho":
            segment_ortho(model, vol, out=out, **kw)
            n = sum(vol.shape)
        else:
            segment_stack(model, vol, axis=kind, out=out, **kw)
            n = vol.shape[{"xy": 0, "xz": 1, "yz": 2}[kind]]
        dt = time.perf_counter() - t0
    queue.put(
        dict(
            kind=kind,
            shape=tuple(vol.shape),
            out=out_kind,
            seconds=dt,
            slices=n,
            base_mib=rss.base / 2**20,
            peak_mib=rss.peak / 2**20,
        )
    )


class _Crop:
    """The first ``n`` z slices of a lazy array, still lazy."""

    def __init__(self, arr, n: int):
        self.arr, self.n = arr, n
        self.shape, self.dtype, self.ndim = (n,) + tuple(arr.shape[1:]), arr.dtype, 3
        self.chunks = getattr(arr, "chunks", None)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        z = key[0]
        if isinstance(z, slice):
            z = slice(*z.indices(self.n))
        elif isinstance(z, int) and z < 0:
            z += self.n
        return self.arr[(z,) + key[1:]]


def measure(kind: str, src: str, n_slices: int, out_kind: str, workdir: str) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_job, args=(kind, src, n_slices, out_kind, workdir, q))
    p.start()
    res = q.get()
    p.join()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--size", type=int, default=192, help="crop side (y and x)")
    ap.add_argument("--slices", type=int, default=16, help="z slices for the per-axis and ortho runs")
    ap.add_argument("--growth", type=int, default=8, help="z slices of the 1x run of the growth series")
    args = ap.parse_args(argv)
    tif = args.data / "lucchipp_train_image.tif"
    if not tif.exists():
        print(f"{tif} not found; set EMPANADA_NB_DATA", file=sys.stderr)
        return 2
    import numpy as np
    import zarr

    from empanada_nb.volume import open_volume

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; untrained PanopticDeepLab/resnet18, CPU")
    with tempfile.TemporaryDirectory() as work:
        nz = max(args.slices, 4 * args.growth)
        src = str(Path(work) / "crop.zarr")
        crop = np.asarray(open_volume(tif)[:nz, : args.size, : args.size])
        zarr.open_array(src, mode="w", shape=crop.shape, dtype=crop.dtype, chunks=(1,) + crop.shape[1:])[:] = crop
        print(f"input: lucchipp_train_image.tif[:{nz}, :{args.size}, :{args.size}] as zarr (1-slice chunks)\n")
        head = f"{'run':<8}{'shape':<18}{'out':<7}{'slices':>7}{'s':>8}{'slices/s':>10}"
        print(head + f"{'base MiB':>10}{'peak MiB':>10}{'delta':>8}")

        def show(r):
            print(
                f"{r['kind']:<8}{str(r['shape']):<18}{r['out']:<7}{r['slices']:>7}{r['seconds']:>8.1f}"
                f"{r['slices'] / r['seconds']:>10.2f}{r['base_mib']:>10.0f}{r['peak_mib']:>10.0f}"
                f"{r['peak_mib'] - r['base_mib']:>8.0f}"
            )

        for kind in ("xy", "xz", "yz", "ortho"):
            show(measure(kind, src, args.slices, "zarr", work))
        print("\npeak RSS as the volume grows (xy stack):")
        for out_kind in ("zarr", "numpy"):
            for k in (1, 2, 4):
                show(measure("xy", src, k * args.growth, out_kind, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
