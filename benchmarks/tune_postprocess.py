"""Choose 2D postprocessing settings on a validation split, from a trained model's network outputs.

    python benchmarks/tune_postprocess.py MODEL.pth [--dataset lucchipp] [--results FILE]

The network runs once per validation slice (the validation block of ``benchmarks/accuracy.py``:
Lucchi++ 125-164, CDeep3M and VNC 15-19); every postprocessing setting is then scored on the same
maps, so a grid costs postprocessing time only. Settings searched, in stages (each stage keeps the
best of the one before): the centre threshold and NMS window (empanada's model configs use a window
of 7 at 1/4 resolution, ours defaults to 3), fine boundaries; then the foreground threshold, hole
filling and the minimum object area. The objective is instance F1@0.5 (ties broken by foreground IoU),
as in issue 15. Prints one line per setting and the best; appends the stages to ``--results``.
Tune on a validation split only, never on data you report as held out. Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from accuracy import DATA, DATASETS, read_mask, stack_2d  # this folder is on sys.path when run as a script
from scipy import ndimage

import empanada_nb as enb
from empanada_nb.inference import engine, intensity_range, model_norms, normalize_image


def network_maps(model, pred, images) -> list[torch.Tensor]:
    """Stitched maps of each image, with ``segment_image``'s defaults (its normalisation and tiling)."""
    out = []
    for img in images:
        x = normalize_image(img, model_norms(model), intensity_range(img))
        out.append(pred.maps([x])[0])
    return out


def score(post, maps, gts, min_size: int) -> dict:
    preds = []
    for m in maps:
        lab = post(m)
        if min_size:
            lab = enb.filter_labels(lab, min_size=min_size)
        preds.append(lab)
    s = enb.evaluate(stack_2d(preds), gts)
    return {"iou": s["iou"], "f1": s["f1_50"], "precision": s["precision_50"], "recall": s["recall_50"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--dataset", choices=list(DATASETS), default="lucchipp")
    p.add_argument("--results", type=Path, default=None, help="a markdown file the stages are appended to")
    a = p.parse_args()
    image_file, _, _, val_z = DATASETS[a.dataset]
    image = tifffile.imread(DATA / image_file, key=list(val_z))
    mask = read_mask(a.dataset, key=list(val_z))
    gts = stack_2d([ndimage.label(m > 0, structure=np.ones((3, 3)))[0] for m in mask])
    model = enb.load_model(a.model).eval()
    t = time.monotonic()
    base, pred, _ = engine(model)
    maps = network_maps(model, pred, image)
    print(f"{len(maps)} validation slices of {a.dataset}: network {time.monotonic() - t:.1f} s", flush=True)
    lines = []

    def run(stage: str, grid: dict, keep: dict) -> dict:
        best, best_key = None, None
        names = list(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            cfg = dict(keep, **dict(zip(names, values)))
            min_size = cfg.get("min_size", 0)
            post = dataclasses.replace(base, **{k: v for k, v in cfg.items() if k != "min_size"})
            s = score(post, maps, gts, min_size)
            line = f"{stage}: {cfg}  IoU {s['iou']:.3f}  F1 {s['f1']:.3f}  P {s['precision']:.3f}  R {s['recall']:.3f}"
            print(line, flush=True)
            lines.append(line)
            if best is None or (s["f1"], s["iou"]) > best_key:
                best, best_key = cfg, (s["f1"], s["iou"])
        print(f"best of {stage}: {best} F1 {best_key[0]:.3f} IoU {best_key[1]:.3f}", flush=True)
        return best

    cfg = run("defaults", {}, {})
    cfg = run(
        "centres",
        {"center_thr": [0.05, 0.1, 0.2, 0.3], "min_distance": [3, 5, 7], "fine_boundaries": [False, True]},
        cfg,
    )
    cfg = run("foreground", {"seg_thr": [0.3, 0.4, 0.5, 0.6]}, cfg)
    cfg = run("cleanup", {"fill_holes": [False, True], "min_size": [0, 64, 128, 256, 512, 1024]}, cfg)
    if a.results is not None:
        with open(a.results, "a") as f:
            f.write(f"\n## {a.dataset}, {a.model}\n\n" + "\n".join(f"- {ln}" for ln in lines) + "\n")
    print(f"chosen: {cfg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
