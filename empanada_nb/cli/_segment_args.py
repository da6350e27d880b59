"""``segment``'s inference flags, built from ``SegmentOptions`` (as the widget's form is)."""

from __future__ import annotations

import argparse

from ..segment_options import SegmentOptions

_TYPES = {"int": int, "int?": int, "float": float, "text?": str}


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 16,256,256, got {text!r}") from None


def add_options(p: argparse.ArgumentParser) -> None:
    """One flag per CLI setting of ``SegmentOptions`` (``seg_thr`` -> ``--seg-thr``), its default the API's."""
    for spec in SegmentOptions.form("cli"):
        name, kind, default = spec["name"], spec["kind"], spec["default"]
        flag = "--" + name.replace("_", "-")
        scope = "" if len(spec["modes"]) == 3 else f"[{'/'.join(spec['modes'])}] "
        text = scope + spec["help"]
        if name == "mode":  # the CLI picks the mode from the input when it is not given
            p.add_argument(
                flag, choices=spec["choices"], default=None, help=text + " (default: 2d for 2D input, stack for 3D)"
            )
        elif name == "overwrite":  # the CLI's rule covers every output it writes
            p.add_argument(flag, action="store_true", help="replace OUT (and its _xy/_xz/_yz planes) if it exists")
        elif kind == "bool" and not default:
            p.add_argument(flag, action="store_true", help=text)
        elif kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text + " (default: on)")
        elif kind == "choice":
            p.add_argument(flag, type=type(spec["choices"][0]), choices=spec["choices"], default=default, help=text)
        elif kind == "ints?":
            p.add_argument(flag, type=_ints, default=default, metavar="Z,Y,X", help=text)
        else:
            shown = "" if default is None else f" (default: {default})"  # None: the help says what happens
            p.add_argument(flag, type=_TYPES[kind], default=default, help=text + shown)


def options_from(args: argparse.Namespace, mode: str) -> SegmentOptions:
    """The ``SegmentOptions`` of the parsed flags, for ``mode``; a bad value is a one-line ValueError."""
    values = {s["name"]: getattr(args, s["name"]) for s in SegmentOptions.form("cli")}
    values["mode"] = mode
    return SegmentOptions(**values).check()
