"""Sparse labels: train on patches with only some objects labelled, the rest marked unlabelled (the
ignore value) or wrongly left as background; validation IoU and F1 on held-out real slices.

    OMP_NUM_THREADS=1 python benchmarks/sparse_labels.py [--iterations 120] [--patches 16] [--size 128]
        [--dataset lucchipp|vnc|cdeep3m] [--parent MODEL.pth]

Data: ``--dataset`` from ``../shared/data`` (or ``$EMPANADA_NB_DATA``), instances are the connected
components of each slice. Training patches are ``--patches`` crops of the training block of
``benchmarks/accuracy.py`` (Lucchi++ 0-124, VNC and CDeep3M 0-14; fixed seed); validation is
``--val-slices`` whole slices of the validation block (never seen in training). With ``--parent`` every
arm finetunes that model (``empanada_nb.finetune``, all layers) instead of training from random init:
the case users meet, a model trained elsewhere adapted with a few sparse labels. In each arm
the same patches keep 100 %, 50 % or 25 % of their objects (the same objects in every run: the 25 %
are a subset of the 50 %); the others are either painted unlabelled (the object grown by
``--margin`` px, as a user's brush would cover it) or erased to background (the dense-label mistake
sparse labels avoid). Every arm trains the same model (PanopticDeepLab, resnet18, random init, the
default recipe otherwise) from the same seed, for the same iterations. Prints a table with foreground
IoU, instance F1@0.5 and recall; not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from accuracy import DATASETS, read_mask, stack_2d  # this folder is on sys.path when run as a script
from scipy import ndimage

import empanada_nb as enb
from empanada_nb.data.ignore import ignore_value

DATA = Path(os.environ.get("EMPANADA_NB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def make_patches(image, mask, n, size, seed, train_z):
    """``n`` (image, instance labels) crops of the training slices, each with at least one object."""
    rng = np.random.default_rng(seed)
    out = []
    zs = np.linspace(train_z[0], train_z[-1], n).round().astype(int)
    for z in zs:
        for _ in range(50):
            y = int(rng.integers(0, image.shape[1] - size + 1))
            x = int(rng.integers(0, image.shape[2] - size + 1))
            m = mask[z, y : y + size, x : x + size] > 0
            if m.mean() > 0.03:
                break
        lab = ndimage.label(m)[0].astype(np.uint8)
        out.append((np.asarray(image[z, y : y + size, x : x + size]), lab))
    return out


def choose_objects(patches, fraction, seed):
    """The (patch, id) objects kept labelled: the first ``fraction`` of one fixed shuffle of all objects,
    so a smaller fraction keeps a subset of a larger one."""
    objs = [(i, int(j)) for i, (_, lab) in enumerate(patches) for j in np.unique(lab) if j]
    order = np.random.default_rng(seed).permutation(len(objs))
    return {objs[k] for k in order[: int(round(fraction * len(objs)))]}


def keep_objects(lab, keep, margin, mode):
    """``lab`` with only the ids in ``keep``: the others unlabelled (grown by ``margin`` px) or background."""
    ids = np.unique(lab)
    drop = [j for j in ids if j and j not in keep]
    out = lab.copy()
    if not drop:
        return out
    gone = np.isin(lab, drop)
    out[gone] = 0
    if mode == "ignore":
        grown = ndimage.binary_dilation(gone, iterations=margin) & ~np.isin(lab, list(keep))
        out[grown] = ignore_value(out.dtype)
    return out


def write_dataset(root, patches, kept, mode, margin):
    for i, (img, lab) in enumerate(patches):
        keep = {j for (k, j) in kept if k == i}
        for sub, arr in (("images", img), ("masks", keep_objects(lab, keep, margin, mode))):
            d = root / "patches" / sub
            d.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(d / f"p{i:03d}.tif", arr)


def score(model, image, mask, slices):
    preds, gts = [], []
    for z in slices:
        # a large divisor: a badly trained arm can find more than 1000 objects in a slice (scored, not refused)
        preds.append(enb.segment_image(model, np.asarray(image[z]), label_divisor=10**6))
        gts.append(ndimage.label(mask[z] > 0)[0])
    r = enb.evaluate(stack_2d(preds), stack_2d(gts))
    return float(r["iou"]), float(r["f1"]), float(r["recall_50"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--iterations", type=int, default=120)
    ap.add_argument("--patches", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--val-slices", type=int, default=6)
    ap.add_argument("--downsample", type=int, default=2, help="bin the data d x d first (5 nm -> 10 nm pixels)")
    ap.add_argument("--margin", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", choices=list(DATASETS), default="lucchipp")
    ap.add_argument("--parent", type=Path, default=None, help="finetune this model in every arm (all layers)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    image_file, _, train_z, val_z = DATASETS[args.dataset]
    image = tifffile.imread(data / image_file)
    mask = read_mask(args.dataset, data=data)
    d = args.downsample
    if d > 1:  # d x d means for the image, every d-th pixel for the mask: CPU time for more context per patch
        z, hh, ww = image.shape
        image = image[:, : hh // d * d, : ww // d * d].reshape(z, hh // d, d, ww // d, d).mean((2, 4)).astype(np.uint8)
        mask = mask[:, : hh // d * d : d, : ww // d * d : d]
    patches = make_patches(image, mask, args.patches, args.size, args.seed, train_z)
    n_obj = sum(int(lab.max()) for _, lab in patches)
    val = np.unique(np.linspace(val_z[0], val_z[-1], args.val_slices).round().astype(int))
    start = f"finetuning {args.parent}" if args.parent else "resnet18 PanopticDeepLab from random init"
    print(
        f"{args.dataset}: {len(patches)} patches of {args.size}^2 (data binned {d}x{d}) from slices "
        f"{train_z[0]}-{train_z[-1]} ({n_obj} objects), validation on slices {val.tolist()}; {start}, "
        f"{args.iterations} iterations, batch {args.batch_size}, seed {args.seed}, "
        f"torch threads {torch.get_num_threads()}"
    )
    arms = []
    for f in args.fractions:
        arms += [(f, "ignore")] if f >= 1 else [(f, "ignore"), (f, "background")]
    rows = []
    for f, mode in arms:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            kept = choose_objects(patches, f, args.seed + 1)
            write_dataset(root, patches, kept, mode, args.margin)
            labelled = len(kept)
            t0 = time.time()
            kw = dict(
                out=root / "m.pth",
                iterations=args.iterations,
                batch_size=args.batch_size,
                patch_size=args.size,
                lr=args.lr,
                seed=args.seed,
                device="cpu",
                num_workers=0,
            )
            if args.parent is not None:
                h = enb.finetune(args.parent, root, layers="all", **kw)
            else:
                h = enb.train(root, encoder="resnet18", pretrained=None, **kw)
            h.wait()
            model = enb.load_model(root / "m.pth")
            secs = time.time() - t0
            iou, f1, rec = score(model, image, mask, val)
        name = "100 %" if f >= 1 else f"{f:.0%} + rest {'unlabelled' if mode == 'ignore' else 'as background'}"
        rows.append((name, labelled, iou, f1, rec, secs))
        print(f"  {name}: IoU {iou:.3f}, F1@0.5 {f1:.3f}, recall {rec:.3f} ({secs:.0f} s)", flush=True)
    if args.parent is not None:
        iou, f1, rec = score(enb.load_model(args.parent), image, mask, val)
        rows.insert(0, ("parent, not finetuned", 0, iou, f1, rec, 0.0))
    print("\n| labelled objects | objects with labels | val IoU | val F1@0.5 | val recall@0.5 | train s |")
    print("|---|---|---|---|---|---|")
    for name, n, iou, f1, rec, secs in rows:
        print(f"| {name} | {n} | {iou:.3f} | {f1:.3f} | {rec:.3f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
