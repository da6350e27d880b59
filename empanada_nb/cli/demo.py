"""``empanada-nb demo``: synthetic (or your) data -> a trained model, with progress and metrics."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("demo", help="train a small model on generated EM-like data (or --data) and report metrics")
    p.add_argument("--data", help="a dataset in the training layout instead of the generated one")
    p.add_argument("--iterations", type=int, default=150, help="training iterations (default 150, a few CPU minutes)")
    p.add_argument("--out", default="demo_out/demo_model.pth", help="where to save the model")
    p.add_argument("--connected-components", action="store_true", help="binary masks: one instance per object")
    return p


def run(args) -> int:
    from ..demo import run_demo
    from ._progress import print_summary, progress_callback

    if args.iterations < 1:
        raise ValueError("--iterations must be at least 1")
    extra = {"connected_components": True} if args.connected_components else {}
    print(
        f"empanada_nb demo: {'dataset ' + args.data if args.data else 'generated EM-like data'}, "
        f"{args.iterations} iterations of a PanopticDeepLab (ResNet-18) on the CPU/GPU"
    )
    h = run_demo(
        args.data, iterations=args.iterations, out=args.out, callbacks=[progress_callback(args.iterations)], **extra
    )
    print_summary(h)
    return 0
