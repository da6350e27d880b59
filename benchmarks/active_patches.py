"""Suggested against random training patches, with the same labelling budget, on real EM.

    python benchmarks/active_patches.py [--seeds 0 1] [--budget 16] [--patch 128] [--iters 150] [--ortho]
        [--dataset lucchipp|vnc|cdeep3m] [--parent MODEL.pth]

Per seed: a seed model is trained briefly (``--seed-iters``) on ``--seed-patches`` random patches of
the training block of ``--dataset`` (the blocks of ``benchmarks/accuracy.py``: Lucchi++ 0-124, VNC and
CDeep3M 0-14; masks: connected components of the semantic mask per slice, as a labeller would draw
them), or, with ``--parent``, that model is the seed model (a model trained elsewhere, adapted to this
data: the case users meet). Then each arm adds ``--budget`` patches and finetunes the same seed model
for the same ``--iters`` iterations with the same training seed:

- ``random``: ``empanada_nb.patches.random_patches`` over the training slices (not overlapping the seed
  picks);
- ``suggested``: ``empanada_nb.suggest_patches`` of the seed model (uncertainty sampling with flips)
  on ``--candidates`` evenly spread training slices;
- ``mixed``: half the budget suggested, half random (not overlapping the suggested ones);
- ``suggested+ortho`` (with ``--ortho``): the same plus the xy/xz/yz disagreement of the seed model
  (``ortho_disagreement`` at ``--ortho-downsample``).

Validation: the validation block (every ``--val-step``-th slice), whole slices through ``segment_image``,
``evaluate`` per slice (foreground IoU, instance F1 at IoU 0.5), mean over slices. Prints a table.
Run with one thread (``--threads 1``); a few CPU minutes per arm. Not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from accuracy import DATASETS, read_mask  # this folder is on sys.path when run as a script
from skimage.measure import label as cc_label

import empanada_nb as enb
from empanada_nb import patches as P

DATA = Path(os.environ.get("EMPANADA_NB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def instance_labels(mask: np.ndarray) -> np.ndarray:
    return np.stack([cc_label(m > 0, connectivity=1).astype(np.uint16) for m in mask])


def config(args, iterations: int, seed: int) -> enb.TrainConfig:
    return enb.TrainConfig(
        encoder="resnet18",
        pretrained=None,
        iterations=iterations,
        batch_size=args.batch,
        patch_size=args.patch,
        seed=seed,
        lr=args.lr,
        val_interval=iterations,
        checkpoint_interval=iterations,
    )


def fit(args, picks, image, labels, work: Path, name: str, seed: int, start=None):
    """Write ``picks`` as a dataset and train (``start`` None) or finetune ``start``; the model."""
    ds = work / f"ds_{name}"
    P.save_patches(image, picks, ds, args.dataset, labels=labels)
    out = work / f"{name}.pth"
    if start is None:
        h = enb.train(ds, config=config(args, args.seed_iters, seed), out=out)
    else:
        h = enb.finetune(start, ds, config=config(args, args.iters, seed), out=out)
    h.wait()
    return enb.load_model(out)


def validate(model, image, gt, idx) -> tuple[float, float]:
    ious, f1s = [], []
    for i in idx:
        # a large divisor: a badly finetuned model can find more than 1000 objects in a slice (scored, not refused)
        pred = enb.segment_image(model, image[i], irange=(0, 255), label_divisor=10**6)
        s = enb.evaluate(pred, gt[i])
        ious.append(s["iou"])
        f1s.append(s["f1"])
    return float(np.mean(ious)), float(np.mean(f1s))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed-patches", type=int, default=4)
    ap.add_argument("--seed-iters", type=int, default=150)
    ap.add_argument("--iters", type=int, default=150)
    ap.add_argument("--candidates", type=int, default=16, help="slices of 0-124 scored for suggestions")
    ap.add_argument("--downsample", type=int, default=2, help="of the uncertainty maps")
    ap.add_argument("--ortho", action="store_true")
    ap.add_argument("--ortho-downsample", type=int, default=4)
    ap.add_argument("--val-step", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (1e-3 suits finetuning --parent)")
    ap.add_argument("--dataset", choices=list(DATASETS), default="lucchipp")
    ap.add_argument("--parent", type=Path, default=None, help="the seed model (no seed training, no seed patches)")
    ap.add_argument("--bin", type=int, default=1, help="bin the volume's xy by this factor first (2: 384x512 slices)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    image_file, _, train_z, val_z = DATASETS[args.dataset]
    image = tifffile.imread(DATA / image_file)
    mask = read_mask(args.dataset)
    if args.bin > 1:  # block means of the image, every bin-th pixel of the mask
        b = args.bin
        z, y, x = image.shape[0], image.shape[1] // b * b, image.shape[2] // b * b
        image = image[:, :y, :x].reshape(z, y // b, b, x // b, b).mean((2, 4)).round().astype(np.uint8)
        mask = mask[:, :y:b, :x:b]
    labels = instance_labels(mask)
    train_img, train_lab = image[train_z.start : train_z.stop], labels[train_z.start : train_z.stop]
    val_idx = list(range(val_z.start, val_z.stop, args.val_step))
    whole = [{"name": "all", "axis": "xy", "slice": 0, "shape": "rectangle", "all_slices": True,
              "points": [[0, 0], list(image.shape[1:])]}]  # fmt: skip
    rows = []
    work = Path(tempfile.mkdtemp(prefix="enb-active-"))
    try:
        for seed in args.seeds:
            t = time.perf_counter()
            if args.parent is not None:
                seed_picks = []
                shutil.copy2(args.parent, work / f"seed{seed}.pth")
                seed_model = enb.load_model(args.parent)
            else:
                shape = train_img.shape
                seed_picks = P.random_patches(whole, shape, args.seed_patches, args.patch, rng=1000 + seed)
                seed_model = fit(args, seed_picks, train_img, train_lab, work, f"seed{seed}", seed)
            iou, f1 = validate(seed_model, image, labels, val_idx)
            rows.append((seed, "seed only", len(seed_picks), 0.0, time.perf_counter() - t, iou, f1))
            arms = {"random": None, "suggested": {}, "mixed": "mixed"}
            if args.ortho:
                arms["suggested+ortho"] = {"ortho": True, "ortho_kwargs": {"downsample": args.ortho_downsample}}
            for arm, kw in arms.items():
                t = time.perf_counter()
                shape = train_img.shape
                if kw is None:
                    new = P.random_patches(whole, shape, args.budget, args.patch, rng=seed, existing=seed_picks)
                else:
                    n_sug = args.budget // 2 if kw == "mixed" else args.budget
                    new = enb.suggest_patches(
                        seed_model,
                        train_img,
                        n=n_sug,
                        patch_size=args.patch,
                        exclude=seed_picks,
                        max_slices=args.candidates,
                        downsample=args.downsample,
                        **({} if kw == "mixed" else kw),
                    )
                    if kw == "mixed":
                        rest = args.budget - len(new)
                        new += P.random_patches(whole, shape, rest, args.patch, rng=seed, existing=seed_picks + new)
                t_pick = time.perf_counter() - t
                fg = np.mean([(P.crop_pick(train_lab, p) > 0).mean() for p in new])
                start = enb.load_model(work / f"seed{seed}.pth")
                model = fit(args, seed_picks + new, train_img, train_lab, work, f"{arm}{seed}", seed, start=start)
                iou, f1 = validate(model, image, labels, val_idx)
                rows.append((seed, arm, len(seed_picks) + len(new), fg, t_pick, iou, f1))
                print(f"seed {seed} {arm}: {len(new)} patches, fg {fg:.3f}, IoU {iou:.3f}, F1 {f1:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.dataset} binned {args.bin}x ({image.shape[1]}x{image.shape[2]} slices), {args.patch}^2 patches, "
          f"seed {'model ' + str(args.parent) if args.parent else args.seed_patches} + budget {args.budget}, "
          f"{args.seed_iters} + {args.iters} iterations, batch {args.batch}, "
          f"validation slices {val_idx[0]}-{val_idx[-1]} every {args.val_step}, {args.threads} thread(s)")  # fmt: skip
    print("| seed | patches | n | foreground in new patches | choosing s | val IoU | val F1@0.5 |")
    print("|---|---|---|---|---|---|---|")
    for seed, arm, n, fg, t, iou, f1 in rows:
        print(f"| {seed} | {arm} | {n} | {fg:.3f} | {t:.0f} | {iou:.3f} | {f1:.3f} |")
    for arm in dict.fromkeys(r[1] for r in rows):
        sel = [r for r in rows if r[1] == arm]
        print(f"| mean | {arm} | | | | {np.mean([r[5] for r in sel]):.3f} | {np.mean([r[6] for r in sel]):.3f} |")


if __name__ == "__main__":
    main()
