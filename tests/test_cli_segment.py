"""``empanada-nb segment`` and ``empanada-nb evaluate``: outputs, refusals and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
import zarr

import empanada_nb.cli as cli
from empanada_nb.model_io import save_model
from empanada_nb.models import build_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model("PanopticDeepLab", "resnet18", num_classes=1)
    return save_model(m, tmp_path_factory.mktemp("model") / "tiny.pth")


@pytest.fixture
def run(monkeypatch, capsys):
    """Run ``cli.main`` with only this file's subcommands registered (others may not exist yet)."""
    monkeypatch.setattr(cli, "COMMANDS", ["segment", "evaluate"])

    def _run(*argv):
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return _run


def _tif(path, arr):
    tifffile.imwrite(path, arr, photometric="minisblack", compression="zlib")
    return path


@pytest.fixture
def img2d(tmp_path, rng):
    return _tif(tmp_path / "img.tif", rng.integers(0, 255, (40, 56), dtype=np.uint8))


@pytest.fixture
def vol3d(tmp_path, rng):
    return _tif(tmp_path / "vol.tif", rng.integers(0, 255, (4, 24, 32), dtype=np.uint8))


def test_segment_2d_tiff(run, model_path, img2d, tmp_path):
    out = tmp_path / "labels.tif"
    rc, stdout, err = run("segment", model_path, img2d, "--out", out, "--quiet")
    assert rc == 0, err
    labels = tifffile.imread(out)
    assert labels.shape == (40, 56) and labels.dtype == np.int32
    assert "wrote" in stdout


def test_segment_stack_to_zarr_and_tiff(run, model_path, vol3d, tmp_path):
    rc, _, err = run(
        "segment",
        model_path,
        vol3d,
        "--out",
        tmp_path / "s.zarr",
        "--min-size",
        0,
        "--min-extent",
        0,
        "--batch-size",
        16,
        "--quiet",
    )
    assert rc == 0, err
    z = zarr.open_array(str(tmp_path / "s.zarr"), mode="r")
    assert z.shape == (4, 24, 32) and z.dtype == np.int32
    rc, _, err = run(
        "segment",
        model_path,
        vol3d,
        "--out",
        tmp_path / "s.tif",
        "--axis",
        "yz",
        "--median-slices",
        3,
        "--batch-size",
        32,
        "--quiet",
    )
    assert rc == 0, err
    assert tifffile.imread(tmp_path / "s.tif").shape == (4, 24, 32)
    # the temporary zarr behind the TIFF is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif", "s.zarr", "vol.tif"]


def test_segment_ortho_and_2d_mode_on_a_volume(run, model_path, vol3d, tmp_path):
    rc, _, err = run(
        "segment", model_path, vol3d, "--out", tmp_path / "o.zarr", "--mode", "ortho", "--batch-size", 32, "--quiet"
    )
    assert rc == 0, err
    assert zarr.open_array(str(tmp_path / "o.zarr"), mode="r").shape == (4, 24, 32)
    rc, _, err = run(
        "segment", model_path, vol3d, "--out", tmp_path / "p.tif", "--mode", "2d", "--batch-size", 4, "--quiet"
    )
    assert rc == 0, err
    assert tifffile.imread(tmp_path / "p.tif").shape == (4, 24, 32)


def test_existing_out_needs_overwrite(run, model_path, img2d, tmp_path):
    out = _tif(tmp_path / "taken.tif", np.full((3, 3), 7, np.uint8))
    rc, _, err = run("segment", model_path, img2d, "--out", out, "--quiet")
    assert rc == 2 and "--overwrite" in err and err.count("\n") == 1
    assert tifffile.imread(out).max() == 7  # untouched
    # --overwrite replaces only what empanada_nb wrote: the user's own TIFF stays
    rc, _, err = run("segment", model_path, img2d, "--out", out, "--overwrite", "--quiet")
    assert rc == 2 and "empanada_nb did not write" in err and tifffile.imread(out).max() == 7
    ours = tmp_path / "ours.tif"
    assert run("segment", model_path, img2d, "--out", ours, "--quiet")[0] == 0
    rc, _, err = run("segment", model_path, img2d, "--out", ours, "--overwrite", "--quiet")
    assert rc == 0, err
    assert tifffile.imread(ours).shape == (40, 56)


def _bad_inputs(tmp_path, model_path, img2d):
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(3)}, other)
    zarr.open_array(str(tmp_path / "empty.zarr"), mode="w", shape=(0, 8), dtype=np.uint8)
    return [
        ((model_path, tmp_path / "missing.tif"), "no such file"),
        ((model_path, text), "not a readable TIFF"),
        ((model_path, _tif(tmp_path / "4d.tif", np.zeros((2, 3, 16, 16), np.uint8))), "2D image or a 3D volume"),
        ((model_path, _tif(tmp_path / "rgb.tif", np.zeros((16, 16, 3), np.uint8))), "colour channel"),
        ((other, img2d), "not an empanada_nb model"),
        ((model_path, tmp_path / "empty.zarr"), "empty"),
        ((model_path, img2d, "--mode", "stack"), "2D image"),
    ]


def test_bad_inputs_give_one_line_errors(run, model_path, img2d, tmp_path):
    for i, (args, match) in enumerate(_bad_inputs(tmp_path, model_path, img2d)):
        rc, _, err = run("segment", *args[:2], "--out", tmp_path / f"o{i}.tif", *args[2:], "--quiet")
        assert rc == 2, (args, err)
        assert match in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert not (tmp_path / f"o{i}.tif").exists()


def test_evaluate_json_and_text(run, tmp_path):
    gt = np.zeros((32, 32), np.int32)
    gt[2:10, 2:10], gt[20:30, 15:25] = 1, 2
    pred = gt.copy()
    pred[20:30, 15:19] = 0  # 60 % of object 2 is left
    _tif(tmp_path / "gt.tif", gt)
    _tif(tmp_path / "pred.tif", pred)
    rc, out, err = run("evaluate", tmp_path / "pred.tif", tmp_path / "gt.tif", "--instances", "--json")
    assert rc == 0, err
    scores = json.loads(out)
    assert scores["iou"] == pytest.approx((64 + 60) / (64 + 100))
    assert scores["f1_50"] == pytest.approx(1.0) and scores["f1_75"] == pytest.approx(0.5)
    rc, out, _ = run("evaluate", tmp_path / "pred.tif", tmp_path / "gt.tif")
    assert rc == 0 and "iou" in out and "pq" not in out
    _tif(tmp_path / "small.tif", gt[:10])
    rc, _, err = run("evaluate", tmp_path / "pred.tif", tmp_path / "small.tif")
    assert rc == 2 and "shape" in err and err.count("\n") == 1


def test_segment_through_subprocess(model_path, img2d, tmp_path):
    out = tmp_path / "sub.zarr"
    # what the empanada-nb console script runs (with only this file's subcommands, as in ``run``)
    code = "import sys, empanada_nb.cli as c; c.COMMANDS = ['segment', 'evaluate']; sys.exit(c.main())"
    cmd = [sys.executable, "-c", code, "segment", str(model_path), str(img2d), "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert zarr.open_array(str(out), mode="r").shape == (40, 56)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.strip().endswith("pass --overwrite to replace it")


def test_every_api_setting_is_a_flag(run, model_path, vol3d, tmp_path):
    """Ortho options the CLI used to refuse, zarr chunks, and the kept xy/xz/yz stacks (zarr and TIFF)."""
    rc, _, err = run(
        "segment", model_path, vol3d, "--out", tmp_path / "o.zarr", "--mode", "ortho", "--erode", 1, "--dilate", 1,
        "--consensus-fill-holes", "--keep-single-view", "--vote", 1, "--cluster-iou-thr", 0.5, "--chunks", "2,8,8",
        "--keep-planes", "--fill-holes", "--no-split-fragments", "--stuff-area", 10, "--min-size", 0,
        "--batch-size", 32, "--quiet",
    )  # fmt: skip
    assert rc == 0, err
    z = zarr.open_array(str(tmp_path / "o.zarr"), mode="r")
    assert z.shape == (4, 24, 32) and tuple(z.chunks) == (2, 8, 8)
    for a in ("xy", "xz", "yz"):
        assert zarr.open_array(str(tmp_path / f"o_{a}.zarr"), mode="r").shape == (4, 24, 32)
    rc, _, err = run(
        "segment", model_path, vol3d, "--out", tmp_path / "o.tif", "--mode", "ortho", "--keep-planes", "--quiet",
        "--batch-size", 32,
    )  # fmt: skip
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.glob("o_*.tif")) == ["o_xy.tif", "o_xz.tif", "o_yz.tif"]
    assert tifffile.imread(tmp_path / "o_xz.tif").shape == (4, 24, 32)
    # the planes follow the overwrite rule too (checked before any work)
    (tmp_path / "o3_xy.tif").write_bytes(b"mine")
    rc, _, err = run("segment", model_path, vol3d, "--out", tmp_path / "o3.tif", "--mode", "ortho", "--keep-planes")
    assert rc == 2 and "o3_xy.tif exists" in err and (tmp_path / "o3_xy.tif").read_bytes() == b"mine"


def test_bad_settings_are_one_line_errors(run, model_path, vol3d, tmp_path):
    for args, match in [
        (("--seg-thr", 2), "seg_thr must be between 0 and 1"),
        (("--median-slices", 2), "median_slices must be an odd number"),
        (("--min-distance", 0), "min_distance must be >= 1"),
    ]:
        rc, _, err = run("segment", model_path, vol3d, "--out", tmp_path / "x.zarr", *args, "--quiet")
        assert rc == 2 and match in err and err.count("\n") == 1, err
        assert not (tmp_path / "x.zarr").exists()
