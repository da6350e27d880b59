"""``empanada-nb finetune``: finetune a saved model on a dataset."""

from __future__ import annotations

from ..models import FINETUNABLE_LAYERS
from . import interrupted_exit
from ._progress import print_summary, progress_callback
from ._train_args import add_common, config_from


def add_parser(sub):
    p = sub.add_parser("finetune", help="finetune a saved model on new data")
    p.add_argument("model", help="model file, registered name or published name (MitoNet_v1_mini, ...)")
    p.add_argument(
        "--layers",
        choices=list(FINETUNABLE_LAYERS),
        help="finetunable encoder layers (default none; --resume: the run's)",
    )
    add_common(p)
    return p


def run(args) -> int:
    from ..model_io import load_model
    from ..training import finetune

    model = load_model(args.model)
    layers = args.layers or (None if args.resume else "none")
    cfg = config_from(args, finetunable_layers=layers)
    if not args.iterations and not args.config and not args.resume:
        cfg = cfg.replace(iterations=100)
    h = finetune(
        model,
        args.train_dir,
        layers=layers,
        config=cfg,
        val_dir=args.val_dir,
        out=args.out,
        overwrite=args.overwrite,
        resume=True if args.resume else None,
        callbacks=[progress_callback(cfg.iterations)],
    )
    print_summary(h)
    return interrupted_exit(h)
