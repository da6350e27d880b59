"""Benchmark: empanada_nb.panoptic_postprocess against empanada-dl 0.1.7 on the same synthetic outputs.

A 1024^2 frame with ~50 disk-shaped objects (exact offsets, Gaussian center peaks, +-10 logits) is
postprocessed with fine and coarse boundaries by empanada_nb and by empanada-dl, which runs in its
own virtual environment (benchmarks/.venv-empanada, created on first use as described in
/work/shared/notes/empanada-dl-baseline.md) through a small script fed by an .npz.

empanada-dl paths timed:
  fine:   empanada.inference.postprocess.get_panoptic_segmentation on full-resolution outputs
  coarse: PanopticDeepLabRenderEngine.get_instance_cells + get_panoptic_seg (its coarse_boundaries
          path) on 1/4-resolution heatmap and offsets; these are derived from the full-resolution
          outputs exactly as empanada_nb does internally (average-pooled heatmap, per-cell mean vote),
          so both group the same cells and should give the same instances.

Run:  python benchmarks/postprocess.py [--size 1024] [--objects 50] [--repeats 7] [--threads 1 2]
Prints medians, the speed-up ratios against the targets (20x fine, 5x coarse), instance counts and
pixel agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peer_venv import VENV, peer_python

HERE = Path(__file__).resolve().parent
VENV_PY = VENV / "bin" / "python"
TARGETS = {"fine": 20.0, "coarse": 5.0}

BASELINE_SCRIPT = textwrap.dedent(
    """
    import json, statistics, sys, time
    import numpy as np, torch, torch.nn.functional as F
    from empanada.inference.postprocess import get_panoptic_segmentation
    from empanada.inference.engines import PanopticDeepLabRenderEngine

    src, dst, repeats, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    d = np.load(src)
    sem = torch.from_numpy(d["sem"])          # (1, 1, H, W) hardened classes
    ctr = torch.from_numpy(d["ctr"])          # (1, 1, H, W)
    off = torch.from_numpy(d["off"])          # (1, 2, H, W)
    ctr_c = torch.from_numpy(d["ctr_c"])      # (1, 1, H/4, W/4)
    off_c = torch.from_numpy(d["off_c"])      # (1, 2, H/4, W/4)
    out, res = {}, {}

    def fine():
        return get_panoptic_segmentation(sem, ctr, off, [1], 1000, 64, 0, 0.1, 3)[0]

    eng = PanopticDeepLabRenderEngine(torch.nn.Identity(), thing_list=[1], label_divisor=1000,
                                      stuff_area=64, nms_threshold=0.1, nms_kernel=3,
                                      coarse_boundaries=True)

    def coarse():
        cells = eng.get_instance_cells(ctr_c, off_c)
        return eng.get_panoptic_seg(sem[0], cells)

    with torch.no_grad():
        for name, fn in (("fine", fine), ("coarse", coarse)):
            times = []
            for _ in range(repeats):
                t = time.perf_counter(); pan = fn(); times.append(time.perf_counter() - t)
            out[name] = pan.squeeze().numpy()
            res[name] = {"times": times, "instances": int(len(np.unique(out[name])) - (out[name] == 0).any())}
    np.savez_compressed(dst, **out)
    print(json.dumps(res))
    """
)


def ensure_venv() -> None:
    """Create the empanada-dl 0.1.7 venv if it is missing (shared with the interop tests)."""
    peer_python()


def synthetic_frame(size: int, n_objects: int, seed: int = 0, sigma: float = 8.0):
    """Full-resolution outputs for ~n_objects non-overlapping disks (radius 12-40 px)."""
    rng = np.random.default_rng(seed)
    disks: list[tuple[float, float, float]] = []
    for _ in range(100 * n_objects):
        if len(disks) == n_objects:
            break
        r = rng.uniform(12, 40)
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        if all((cy - y) ** 2 + (cx - x) ** 2 > (r + q + 6) ** 2 for y, x, q in disks):
            disks.append((cy, cx, r))
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    owner = np.full((size, size), -1)
    hmp = np.zeros((size, size), np.float32)
    for k, (cy, cx, r) in enumerate(disks):  # setup only, not timed
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        owner[d2 <= r * r] = k
        np.maximum(hmp, np.exp(-d2 / (2 * sigma**2)), out=hmp)
    ctr = np.array([(round(cy), round(cx)) for cy, cx, _ in disks], np.float32)
    fg = owner >= 0
    off = np.zeros((2, size, size), np.float32)
    off[0][fg] = ctr[owner[fg], 0] - yy[fg]
    off[1][fg] = ctr[owner[fg], 1] - xx[fg]
    sem = np.where(fg, 10.0, -10.0).astype(np.float32)[None]
    return torch.from_numpy(sem), torch.from_numpy(hmp[None]), torch.from_numpy(off), len(disks)


def coarse_inputs_for_empanada(sem: torch.Tensor, hmp: torch.Tensor, off: torch.Tensor):
    """1/4-resolution heatmap and offsets in empanada's convention (cell i sits at 4*i), built the
    way empanada_nb coarsens internally (avg-pooled heatmap, mean vote of each cell's thing pixels,
    shifted by the 1.5 px between a 4x4 block's center and empanada's 4*i)."""
    H, W = sem.shape[-2:]
    w = (torch.sigmoid(sem[0]) >= 0.5).float()
    ys = torch.arange(H, dtype=torch.float32)[:, None]
    xs = torch.arange(W, dtype=torch.float32)[None, :]
    votes = torch.stack(((ys + off[0]) * w, (xs + off[1]) * w, w))
    p = F.avg_pool2d(votes[None], 4, 4, ceil_mode=True)[0]
    cnt = p[2].clamp(min=1e-12)
    gy = torch.arange(p.shape[1], dtype=torch.float32)[:, None] * 4 + 1.5
    gx = torch.arange(p.shape[2], dtype=torch.float32)[None, :] * 4 + 1.5
    has = p[2] > 0
    off_c = torch.stack((torch.where(has, p[0] / cnt - gy, 0.0), torch.where(has, p[1] / cnt - gx, 0.0)))
    ctr_c = F.avg_pool2d(hmp[None], 4, 4, ceil_mode=True)[0]
    return ctr_c[None], off_c[None]


def time_ours(sem, hmp, off, fine: bool, repeats: int):
    from empanada_nb.postprocess import panoptic_postprocess

    panoptic_postprocess(sem, hmp, off, fine_boundaries=fine)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pan = panoptic_postprocess(sem, hmp, off, fine_boundaries=fine)
        times.append(time.perf_counter() - t)
    return times, pan.numpy()


def n_instances(pan: np.ndarray) -> int:
    return int(len(np.unique(pan[pan > 0])))


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    pairs, counts = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1, return_counts=True)
    best = np.zeros(int(pairs[0].max()) + 1, dtype=np.int64)
    np.maximum.at(best, pairs[0], counts)
    return float(best.sum() / a.size)


def partition_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels on which two label maps agree up to renaming of ids (each id mapped to the
    id it overlaps most, both ways, worst of the two); 1.0 means the same partition."""
    return min(_agreement(a, b), _agreement(b, a))


def run_baseline(sem, hmp, off, repeats: int, threads: int):
    """Time empanada-dl in its own venv on the same outputs; returns (results, label maps)."""
    ctr_c, off_c = coarse_inputs_for_empanada(sem, hmp, off)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, script = Path(tmp, "in.npz"), Path(tmp, "out.npz"), Path(tmp, "baseline.py")
        np.savez(
            src,
            sem=(torch.sigmoid(sem) >= 0.5).long()[None].numpy(),
            ctr=hmp[None].numpy(),
            off=off[None].numpy(),
            ctr_c=ctr_c.numpy(),
            off_c=off_c.numpy(),
        )
        script.write_text(BASELINE_SCRIPT)
        run = subprocess.run(
            [str(VENV_PY), str(script), str(src), str(dst), str(repeats), str(threads)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            sys.exit(f"empanada-dl baseline failed:\n{run.stderr[-3000:]}")
        return json.loads(run.stdout.strip().splitlines()[-1]), dict(np.load(dst))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--baseline-repeats", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="torch intra-op threads, the same for both libraries; one table per value",
    )
    args = ap.parse_args()
    ensure_venv()
    sem, hmp, off, n = synthetic_frame(args.size, args.objects)
    print(
        f"frame {args.size}x{args.size}, {n} objects, torch {torch.__version__} "
        f"(empanada-dl venv: torch 2.13.0), {os.cpu_count()} cores"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        load0 = os.getloadavg()[0]
        ours = {name: time_ours(sem, hmp, off, name == "fine", args.repeats) for name in ("fine", "coarse")}
        base, base_pan = run_baseline(sem, hmp, off, args.baseline_repeats, threads)
        print(
            f"\n{threads} thread(s), load average {load0:.2f} -> {os.getloadavg()[0]:.2f}; "
            "median of repeats (min in brackets), seconds"
        )
        print(
            f"{'mode':8}{'empanada_nb':>18}{'empanada-dl':>18}{'ratio':>9}{'target':>8}"
            f"{'inst nb':>9}{'inst dl':>9}{'pixel agree':>13}"
        )
        for name in ("fine", "coarse"):
            t_ours = statistics.median(ours[name][0])
            t_base = statistics.median(base[name]["times"])
            pan = ours[name][1]
            ni, nb = n_instances(pan), base[name]["instances"]
            agree = f"{partition_agreement(pan, base_pan[name]):.4%}"
            ours_s = f"{t_ours:.4f} ({min(ours[name][0]):.4f})"
            base_s = f"{t_base:.3f} ({min(base[name]['times']):.3f})"
            print(
                f"{name:8}{ours_s:>18}{base_s:>18}{t_base / t_ours:8.1f}x{TARGETS[name]:7.0f}x"
                f"{ni:9d}{nb:9d}{agree:>13}   same number of instances: {ni == nb}"
            )


if __name__ == "__main__":
    main()
