"""SegmentOptions: the one source of inference settings for the API, the InferencePanel and the CLI."""

import argparse
import dataclasses
import inspect

import pytest

from empanada_nb import SegmentOptions, segment_image, segment_ortho, segment_stack
from empanada_nb.cli import _segment_args
from empanada_nb.segment_options import NOT_SETTINGS

FUNCTIONS = {"2d": [segment_image], "stack": [segment_stack], "ortho": [segment_ortho, segment_stack]}


def _params(fn):
    return {n: p for n, p in inspect.signature(fn).parameters.items() if p.kind is not p.VAR_KEYWORD}


def test_every_api_keyword_is_a_setting_with_the_api_default():
    fields = {f.name: f for f in dataclasses.fields(SegmentOptions)}
    for fn in (segment_image, segment_stack, segment_ortho):
        for name, p in _params(fn).items():
            if name in NOT_SETTINGS:
                continue
            assert name in fields, f"{fn.__name__}({name}=...) has no SegmentOptions field"
            assert fields[name].default == p.default, (fn.__name__, name)
    # and every field the API has is one of those keywords
    for f in fields.values():
        if "api" in f.metadata["faces"] and f.name != "mode":
            assert any(f.name in _params(fn) for m in f.metadata["modes"] for fn in FUNCTIONS[m]), f.name


def test_kwargs_are_exactly_the_mode_functions_keywords():
    opts = SegmentOptions(erode=2, keep_planes=True, chunks=(2, 8, 8), seg_thr=0.3)
    for mode, fns in FUNCTIONS.items():
        kw = opts.kwargs(mode)
        allowed = set().union(*(_params(fn) for fn in fns)) - ({"axis"} if mode == "ortho" else set())
        assert set(kw) <= allowed, set(kw) - allowed
        assert kw["seg_thr"] == 0.3
    assert opts.kwargs("ortho")["erode"] == 2 and "erode" not in opts.kwargs("stack")
    assert opts.kwargs("stack")["chunks"] == [2, 8, 8] and "chunks" not in opts.kwargs("2d")


def test_form_values_are_converted_and_checked():
    opts = SegmentOptions.from_dict({"chunks": "4,32,32", "tile_size": "", "seg_thr": "0.3", "vote": "3"})
    assert opts.chunks == (4, 32, 32) and opts.tile_size is None and opts.seg_thr == 0.3 and opts.vote == 3
    errs = SegmentOptions.from_dict({"chunks": "4,x", "median_slices": 4, "min_size": "-1", "out": "a.tif"}).replace(
        mode="stack"
    )
    assert set(errs.problems()) == {"chunks", "median_slices", "min_size", "out"}
    with pytest.raises(ValueError, match="unknown inference setting"):
        SegmentOptions.from_dict({"sed_thr": 0.5})
    with pytest.raises(ValueError, match="between 0 and 1"):
        SegmentOptions(center_thr=1.5).check()


def test_cli_flags_are_the_cli_settings_with_the_api_defaults():
    p = argparse.ArgumentParser()
    _segment_args.add_options(p)
    args = p.parse_args([])
    cli = SegmentOptions.form("cli")
    for spec in cli:
        assert hasattr(args, spec["name"])
        if spec["name"] != "mode":  # the CLI picks the mode from the input
            assert getattr(args, spec["name"]) == spec["default"], spec["name"]
    # the cluster settings are the CLI's only: in a notebook, segment_distributed takes a Client
    cluster = {"cluster", "workers", "block"}
    assert {s["name"] for s in SegmentOptions.form("widget")} >= {s["name"] for s in cli} - cluster
    assert cluster <= {s["name"] for s in cli} and not cluster & set(SegmentOptions().kwargs("stack"))
    args = p.parse_args(["--cluster", "tcp://10.0.0.1:8786", "--workers", "3", "--block", "8,64,64"])
    opts = _segment_args.options_from(args, "stack")
    assert (opts.cluster, opts.workers, opts.block) == ("tcp://10.0.0.1:8786", 3, (8, 64, 64))
    with pytest.raises(ValueError, match="workers must be >= 1"):
        _segment_args.options_from(p.parse_args(["--workers", "0"]), "stack")
    args = p.parse_args(["--erode", "2", "--no-split-fragments", "--chunks", "1,16,16", "--keep-planes"])
    opts = _segment_args.options_from(args, "ortho")
    assert (opts.erode, opts.split_fragments, opts.chunks, opts.keep_planes) == (2, False, (1, 16, 16), True)
