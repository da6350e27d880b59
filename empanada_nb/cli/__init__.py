"""``empanada-nb`` command line: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand modules inside this package, in the order ``--help`` lists them
COMMANDS = ["demo", "train", "finetune", "segment", "evaluate", "models", "convert"]


class CLIError(Exception):
    """A bad argument or input: printed as one line, exit status 2."""


def interrupted_exit(handle) -> int:
    """Exit status of a training command: 130 (as for Ctrl-C) when the run was interrupted, else 0."""
    if not getattr(handle, "interrupted", False):
        return 0
    print(
        f"interrupted at iteration {handle.iteration}: model saved to {handle.out}; continue with --resume",
        file=sys.stderr,
    )
    return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empanada-nb", description="Panoptic segmentation of organelles in EM.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CLIError, ValueError, OSError, FloatingPointError) as e:
        # OSError covers missing files, existing outputs and folders that cannot be written
        print(f"empanada-nb {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"empanada-nb {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
