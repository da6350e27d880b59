"""``empanada-nb evaluate PRED GT``: compare predicted labels with ground truth (IoU, PQ, F1, AP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import CLIError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="score predicted labels against ground truth",
        description="Compare two label images/volumes (TIFF or zarr) of the same shape.",
    )
    p.add_argument("pred", help="predicted labels (TIFF or zarr folder)")
    p.add_argument("gt", help="ground-truth labels or mask (TIFF or zarr folder)")
    p.add_argument(
        "--instances", action="store_true", help="also score instances (PQ, F1, AP); default: foreground IoU only"
    )
    p.add_argument(
        "--binary", action="store_true", help="treat both inputs as masks; objects are their connected components"
    )
    p.add_argument(
        "--label-divisor",
        type=int,
        default=None,
        help="ids are class * divisor + instance; objects match only within their class",
    )
    p.add_argument("--iou-thresholds", type=float, nargs="+", default=[0.5, 0.75])
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return p


def _read(path: str, what: str) -> np.ndarray:
    from ..reader import open_volume

    arr = np.asarray(open_volume(Path(path))[...])
    if arr.size == 0:
        raise CLIError(f"{path}: {what} is empty")
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.round(arr)):
            raise CLIError(f"{path}: {what} has fractional values; pass integer labels or a mask")
        arr = arr.astype(np.int64)
    return arr


def run(args) -> int:
    from ..metrics import evaluate

    pred, gt = _read(args.pred, "PRED"), _read(args.gt, "GT")
    try:
        scores = evaluate(
            pred,
            gt,
            label_divisor=args.label_divisor,
            instances=args.instances or args.binary,
            binary=args.binary,
            iou_thresholds=args.iou_thresholds,
        )
    except TypeError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(scores, indent=2, sort_keys=True, default=_jsonable))
        return 0
    for k, v in scores.items():
        if k != "per_class":
            print(f"{k:>14}: {_fmt(v)}")
    for cls, d in (scores.get("per_class") or {}).items():
        print(f"class {cls}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in d.items()))
    return 0


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, (float, np.floating)) else str(v)


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
