"""Arguments shared by ``train`` and ``finetune``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..training import TrainConfig


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--train-dir",
        required=True,
        action="append",
        help="dataset folder: <name>/images/*.tif and <name>/masks/*.tif; repeat the flag to train on several "
        "folders (empanada's additional_train_dirs)",
    )
    p.add_argument("--val-dir", help="validation dataset folder (same layout)")
    p.add_argument("--iterations", type=int, help="training iterations (default: config or 1000)")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="train for this wall-clock budget instead of --iterations: the iteration count and the LR schedule "
        "are fitted to the steps that fit (validation, checkpoints and saving included)",
    )
    p.add_argument(
        "--num-workers",
        help="worker processes preparing batches while the step runs: auto (default), or a count (0: main thread)",
    )
    p.add_argument("--patch-size", type=int, help="square patch size (16x for PanopticDeepLab, 128x for PanopticBiFPN)")
    p.add_argument(
        "--batch-size", type=int, help="global batch size (default 16; split among the processes under torchrun)"
    )
    p.add_argument("--lr", type=float, help="maximum learning rate (OneCycle)")
    p.add_argument(
        "--config",
        help="config YAML: TrainConfig fields, or empanada's custom_training.yaml layout (unused keys are "
        "listed in a warning); flags override it",
    )
    p.add_argument(
        "--connected-components", action="store_true", help="binary masks: one instance per connected object"
    )
    p.add_argument(
        "--no-ignore-unlabelled",
        dest="ignore_unlabelled",
        action="store_false",
        default=None,
        help="the masks' ignore value (255 in uint8, 65535 in uint16, 4294967295 in uint32, -1 in signed masks) is "
        "an ordinary label, not 'unlabelled' (sparse labels are on by default)",
    )
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        default=None,
        help="keep the trained foreground threshold at 0.5 (by default the best threshold on the validation "
        "images, or 8 training images, is fitted at the end and folded into the model)",
    )
    p.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        default=None,
        help="train in float32 (by default steps run mixed precision where the device computes it natively: "
        "float16 on CUDA, bfloat16 on CPUs with AVX512-BF16 or AMX)",
    )
    p.add_argument("--val-fraction", type=float, help="hold out this fraction of training images when no --val-dir")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True, help="output model file (.pth; a .yaml model card is written beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out written by empanada_nb")
    p.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint beside --out (--iterations may grow)"
    )


def config_from(args: argparse.Namespace, **extra) -> TrainConfig:
    if args.config and not Path(args.config).is_file():
        raise FileNotFoundError(f"--config {args.config}: no such file (a TrainConfig YAML file)")
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    changes: dict = {k: v for k, v in extra.items() if v is not None}
    for flag in ("iterations", "max_minutes", "patch_size", "batch_size", "lr", "val_fraction", "device", "seed"):
        v = getattr(args, flag)
        if v is not None:
            changes[flag] = v
    if args.num_workers is not None:
        w = args.num_workers.strip().lower()
        if w != "auto" and not w.isdigit():
            raise ValueError(f"--num-workers {args.num_workers}: give auto or a count (0: the main thread)")
        changes["num_workers"] = w if w == "auto" else int(w)
    if args.connected_components:
        changes["connected_components"] = True
    if args.ignore_unlabelled is not None:
        changes["ignore_unlabelled"] = args.ignore_unlabelled
    if args.calibrate is not None:
        changes["calibrate"] = args.calibrate
    if args.amp is not None:
        changes["amp"] = args.amp
    return cfg.replace(**changes)
