"""``empanada-nb train``: train a new model."""

from __future__ import annotations

from ..models import ARCHITECTURES, ENCODERS
from . import interrupted_exit
from ._progress import print_summary, progress_callback
from ._train_args import add_common, config_from


def add_parser(sub):
    p = sub.add_parser("train", help="train a new PanopticDeepLab or PanopticBiFPN model")
    p.add_argument("--arch", choices=list(ARCHITECTURES), help="architecture (default PanopticDeepLab)")
    p.add_argument("--encoder", choices=list(ENCODERS), help="encoder (default resnet50)")
    p.add_argument("--num-classes", type=int, help="foreground classes (default 1)")
    p.add_argument(
        "--pretrained", help="encoder weights: auto (default; CEM1.5M for resnet50), none, a CEM name, path or URL"
    )
    p.add_argument("--layers", help="finetunable encoder layers: none, stage1..stage4, all (default all)")
    add_common(p)
    return p


def run(args) -> int:
    from ..training import train

    cfg = config_from(
        args,
        architecture=args.arch,
        encoder=args.encoder,
        num_classes=args.num_classes,
        pretrained=args.pretrained,
        finetunable_layers=args.layers,
    )
    h = train(
        args.train_dir,
        config=cfg,
        val_dir=args.val_dir,
        out=args.out,
        overwrite=args.overwrite,
        resume=True if args.resume else None,
        callbacks=[progress_callback(cfg.iterations)],
    )
    print_summary(h)
    return interrupted_exit(h)
