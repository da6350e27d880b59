"""The fault catalogue: bad inputs and faults (files, shapes, dtypes, values, configs, models, CLI
arguments, concurrency, signals), each with its exact outcome; then signal loops over every writer.

Each catalogue entry is a function of a shared context registered with ``@case``; it asserts the
exception type and a message substring, an exit status and stderr line, or what is on disk.
The loops at the end kill (SIGKILL) or interrupt (SIGINT) each writer a few times
(``EMPANADA_NB_FAULT_KILLS``, default 3; benchmarks/faults.py runs more and prints the records).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import tifffile
import torch
import yaml
import zarr
from fault_workers import OPS, fault_loop, leftovers, prepare, strays

import empanada_nb as enb
from empanada_nb import _atomic
from empanada_nb.cli import main
from empanada_nb.data.io import intensity_range, normalize_image, write_tiff
from empanada_nb.patches import make_pick, save_patches
from empanada_nb.training import checkpoint_path, load_checkpoint
from empanada_nb.volume import write_volume_tiff

TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", patch_size=64, batch_size=2)
CASES: dict = {}


def case(group: str):
    def reg(fn):
        CASES[f"{group}-{fn.__name__}"] = fn
        return fn

    return reg


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    torch.manual_seed(0)
    model = enb.build_model("PanopticDeepLab", "resnet18").eval()
    model_path = enb.save_model(model, root / "tiny.pth")
    enb.make_synthetic_dataset(root / "ds", n_images=2, size=64, seed=1)
    vol, _ = enb.synthetic_volume((3, 48, 48), n_objects=2, seed=2, dtype=np.uint16)
    write_tiff(root / "vol.tif", vol)
    return SimpleNamespace(root=root, model=model, model_path=model_path, ds=root / "ds", vol=vol, n=[0])


def fresh(c) -> Path:
    c.n[0] += 1
    d = c.root / f"case{c.n[0]}"
    d.mkdir()
    return d


def raises(exc, text, fn, *a, **k):
    with pytest.raises(exc) as e:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*a, **k)
    assert text in str(e.value), f"{text!r} not in {str(e.value)!r}"
    assert "\n" not in str(e.value), "the message must be one line"
    return e.value


def cli(*argv) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main([str(a) for a in argv])
    lines = [ln.split("\r")[-1] for ln in err.getvalue().splitlines()]
    # a progress bar left open by an error shares its line with the message: keep the message
    lines = [ln[ln.index("empanada-nb ") :] if "empanada-nb " in ln else ln for ln in lines]
    return rc, [ln for ln in lines if ln.strip() and "%|" not in ln]


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def user_folder(d: Path) -> Path:
    """A folder of the user's own files, which no overwrite may delete."""
    f = d / "results"
    f.mkdir()
    (f / "notes.txt").write_text("mine")
    return f


def interrupted_run(c, iterations=4, at=2) -> Path:
    d = fresh(c)

    def stop(e):
        if e["type"] == "step" and e["iteration"] == at:
            raise KeyboardInterrupt

    quiet(enb.train, c.ds, out=d / "m.pth", iterations=iterations, callbacks=[stop], **TINY)
    return d / "m.pth"


# ------------------------------------------------------------------------------------------ files


@case("files")
def read_missing(c):
    raises(FileNotFoundError, "no such file", enb.read_image, c.root / "nope.tif")


@case("files")
def read_not_tiff(c):
    p = fresh(c) / "a.tif"
    p.write_text("hello")
    raises(ValueError, "not a readable TIFF image", enb.read_image, p)


@case("files")
def model_truncated(c):
    p = fresh(c) / "cut.pth"
    p.write_bytes(c.model_path.read_bytes()[:50_000])
    raises(ValueError, "damaged (truncated or incomplete, 50000 bytes", enb.load_model, p)


@case("files")
def checkpoint_truncated(c):
    src = checkpoint_path(interrupted_run(c))
    p = src.with_name("cut.checkpoint.pth")
    p.write_bytes(src.read_bytes()[:-1000])
    raises(ValueError, "damaged (truncated", load_checkpoint, p)


@case("files")
def model_not_torch(c):
    p = fresh(c) / "m.pth"
    p.write_text("not a model")
    raises(ValueError, "not a model file saved by empanada_nb", enb.load_model, p)


@case("files")
def zarr_group_many_arrays(c):
    p = fresh(c) / "g.zarr"
    g = zarr.open_group(str(p), mode="w")
    g.create_array("a", shape=(2, 2), dtype="u1")
    g.create_array("b", shape=(2, 2), dtype="u1")
    raises(ValueError, "zarr group with arrays ['a', 'b']", enb.open_volume, p)


# ----------------------------------------------------------------------------------------- shapes


@case("shapes")
def image_1d(c):
    raises(ValueError, "2D", enb.segment_image, c.model, np.zeros(64, np.uint8))


@case("shapes")
def stack_2d(c):
    raises(ValueError, "must be 3D (Z, Y, X), got shape (48, 48)", enb.segment_stack, c.model, c.vol[0])


@case("shapes")
def stack_rgb(c):
    raises(ValueError, "colour channel axis", enb.segment_stack, c.model, np.zeros((2, 32, 32, 3), np.uint8))


@case("shapes")
def stack_empty(c):
    raises(ValueError, "is empty (shape (0, 32, 32))", enb.segment_stack, c.model, np.zeros((0, 32, 32), np.uint8))


@case("shapes")
def train_mask_shape(c):
    d = fresh(c) / "ds" / "a"
    write_tiff(d / "images" / "x.tif", np.zeros((64, 64), np.uint8))
    write_tiff(d / "masks" / "x.tif", np.zeros((32, 64), np.uint8))
    raises(
        ValueError, "does not match image shape (64, 64)", enb.train, d.parent, out=d / "m.pth", iterations=1, **TINY
    )


# ----------------------------------------------------------------------------------------- dtypes


@case("dtypes")
def stack_complex(c):
    raises(ValueError, "has dtype complex64", enb.segment_stack, c.model, np.zeros((2, 32, 32), np.complex64))


@case("dtypes")
def train_mask_fractional(c):
    d = fresh(c) / "ds" / "a"
    write_tiff(d / "images" / "x.tif", np.zeros((64, 64), np.uint8))
    write_tiff(d / "masks" / "x.tif", np.full((64, 64), 0.5, np.float32))
    raises(ValueError, "mask has non-integer values", enb.train, d.parent, out=d / "m.pth", iterations=1, **TINY)


# ----------------------------------------------------------------------------------------- values


def _nan_image(c):
    img = c.vol[1].astype(np.float32)
    img[10, 10] = np.nan
    img[20, 5] = np.inf
    return img


@case("values")
def nan_range_ignores_missing(c):
    img = _nan_image(c)
    assert intensity_range(img) == intensity_range(img[np.isfinite(img)])
    x = normalize_image(img, {"mean": 0.5, "std": 0.5})
    assert np.isfinite(x).all() and x[10, 10] == 0 and x[20, 5] == 0  # filled with the mean


@case("values")
def nan_segment_image_same_as_filled(c):
    img = _nan_image(c)
    lo, hi = intensity_range(img)
    filled = np.where(np.isfinite(img), img, lo + 0.5 * (hi - lo)).astype(np.float32)  # the mean, raw
    a = enb.segment_image(c.model, img)
    b = enb.segment_image(c.model, filled, irange=(lo, hi))
    np.testing.assert_array_equal(a, b)


@case("values")
def nan_segment_stack_same_as_filled(c):
    vol = c.vol.astype(np.float32)
    vol[1, 3, 3] = np.nan
    lo, hi = enb.volume.volume_irange(vol)
    filled = np.nan_to_num(vol, nan=lo + 0.5 * (hi - lo))
    a = enb.segment_stack(c.model, vol, progress=False, min_size=0)
    b = enb.segment_stack(c.model, filled, progress=False, min_size=0, irange=(lo, hi))
    np.testing.assert_array_equal(a, b)


@case("values")
def all_nan_refused(c):
    raises(ValueError, "no finite values", enb.segment_image, c.model, np.full((32, 32), np.nan, np.float32))


@case("values")
def irange_equal_ends(c):
    raises(
        ValueError,
        "intensity range (5, 5) must have finite ends with low < high",
        normalize_image,
        c.vol[0],
        None,
        (5, 5),
    )


@case("values")
def label_divisor_zero_segment(c):
    raises(
        ValueError, "label_divisor must be a positive integer", enb.segment_image, c.model, c.vol[0], label_divisor=0
    )


@case("values")
def label_divisor_zero_config(c):
    raises(ValueError, "label_divisor must be a positive integer", enb.TrainConfig, label_divisor=0)


@case("values")
def synthetic_too_small(c):
    raises(ValueError, "at least 48 x 48 pixels", enb.make_synthetic_dataset, fresh(c), n_images=1, size=32)


@case("values")
def evaluate_ids_below_divisor(c):
    gt = np.zeros((40, 8), np.int32)
    for i in range(10):
        gt[4 * i : 4 * i + 3, 2:6] = i + 1
    raises(ValueError, "pred has ids below label_divisor=4 (class 0)", enb.evaluate, gt, gt, label_divisor=4)


@case("values")
def train_nan_image_names_file(c):
    d = fresh(c) / "ds" / "a"
    img = np.ones((64, 64), np.float32)
    img[3, 3] = np.nan
    write_tiff(d / "images" / "x.tif", img)
    write_tiff(d / "masks" / "x.tif", np.ones((64, 64), np.uint8))
    e = raises(ValueError, "1 NaN or inf pixel(s)", enb.train, d.parent, out=d / "m.pth", iterations=1, **TINY)
    assert str(d / "images" / "x.tif") in str(e)


@case("values")
def train_only_background_warns(c):
    d = fresh(c)
    ds = d / "ds" / "a"
    write_tiff(ds / "images" / "x.tif", c.vol[0].astype(np.uint8))
    write_tiff(ds / "masks" / "x.tif", np.zeros((48, 48), np.uint8))
    with pytest.warns(UserWarning, match="background only"):
        enb.train(ds.parent, out=d / "m.pth", iterations=1, **{**TINY, "patch_size": 48})


# ---------------------------------------------------------------------------------------- configs


@case("configs")
def zero_iterations(c):
    raises(ValueError, "iterations must be a positive integer, got 0", enb.TrainConfig, iterations=0)


@case("configs")
def unknown_field(c):
    raises(ValueError, "unknown TrainConfig field(s): nope", enb.TrainConfig.from_dict, {"nope": 1})


@case("configs")
def forgotten_resume_keeps_checkpoint(c):
    out = interrupted_run(c)
    before = checkpoint_path(out).read_bytes()
    raises(
        FileExistsError,
        "holds an unfinished run (iteration 2 of 4); resume it with resume=True",
        enb.train,
        c.ds,
        out=out,
        iterations=4,
        **TINY,
    )
    assert checkpoint_path(out).read_bytes() == before


@case("configs")
def resume_changed_patch_size_refused(c):
    out = interrupted_run(c)
    raises(
        ValueError,
        "cannot resume with patch_size=96 (the run has 64)",
        enb.train,
        c.ds,
        out=out,
        resume=True,
        **{**TINY, "patch_size": 96},
    )


@case("configs")
def resume_changed_lr_refused(c):
    out = interrupted_run(c)
    raises(ValueError, "cannot resume with lr=0.1", enb.train, c.ds, out=out, resume=True, iterations=4, lr=0.1, **TINY)


@case("configs")
def resume_more_iterations_applied(c):
    out = interrupted_run(c)
    h = quiet(enb.train, c.ds, out=out, resume=True, iterations=5, **TINY)
    assert [s["iteration"] for s in h.events("step")] == [1, 2, 3, 4, 5]
    assert load_checkpoint(checkpoint_path(out))["scheduler"]["total_steps"] == 5


@case("configs")
def resume_fewer_iterations_refused(c):
    out = interrupted_run(c)
    raises(
        ValueError,
        "the checkpoint is at iteration 2; ask for more iterations",
        enb.train,
        c.ds,
        out=out,
        resume=True,
        iterations=2,
        **TINY,
    )


# ----------------------------------------------------------------------------------------- models


@case("models")
def unknown_model_name(c):
    raises(
        FileNotFoundError,
        "not a file, a registered name or a published empanada model",
        enb.load_model,
        "no-such-model",
    )


@case("models")
def weights_of_other_class_count(c):
    p = fresh(c) / "m.pth"
    enb.save_model(enb.build_model("PanopticDeepLab", "resnet18", num_classes=3), p)
    ck = torch.load(p, weights_only=False)
    ck["card"] = dict(ck["card"], num_classes=1)
    torch.save(ck, p)
    raises(
        ValueError,
        "do not fit its model card (PanopticDeepLab, resnet18, 1 class(es)); the file holds the weights of a "
        "PanopticDeepLab with a basic-block (resnet18/34-like) encoder, 3 class(es)",
        enb.load_model,
        p,
    )


@case("models")
def weights_of_other_architecture(c):
    p = fresh(c) / "m.pth"
    enb.save_model(enb.build_model("PanopticBiFPN", "resnet18"), p)
    ck = torch.load(p, weights_only=False)
    ck["card"] = dict(ck["card"], architecture="PanopticDeepLab", arch_kwargs={})
    torch.save(ck, p)
    raises(ValueError, "the file holds the weights of a PanopticBiFPN", enb.load_model, p)


@case("models")
def save_model_existing_refused(c):
    p = fresh(c) / "m.pth"
    enb.save_model(c.model, p)
    before = p.read_bytes()
    raises(FileExistsError, "exists; pass overwrite=True", enb.save_model, c.model, p)
    assert p.read_bytes() == before


@case("models")
def save_model_over_user_file_refused(c):
    p = fresh(c) / "m.pth"
    p.write_text("my notes")
    raises(FileExistsError, "is a file that empanada_nb did not write", enb.save_model, c.model, p, overwrite=True)
    assert p.read_text() == "my notes"


@case("models")
def save_model_overwrite_own(c):
    p = fresh(c) / "m.pth"
    enb.save_model(enb.build_model("PanopticDeepLab", "resnet18", num_classes=2), p)
    enb.save_model(c.model, p, overwrite=True)
    assert enb.load_model(p).num_classes == 1


# -------------------------------------------------------------------------------------------- CLI


@case("cli")
def segment_png_suffix(c):
    rc, err = cli("segment", c.model_path, c.root / "vol.tif", "--out", fresh(c) / "labels.png", "--quiet")
    assert rc == 2 and len(err) == 1
    assert "unsupported output suffix '.png'; use .tif or .tiff (TIFF) or .zarr or no suffix" in err[0]


@case("cli")
def segment_overwrite_user_folder_refused(c):
    f = user_folder(fresh(c))
    rc, err = cli("segment", c.model_path, c.root / "vol.tif", "--out", f, "--overwrite", "--quiet")
    assert rc == 2 and len(err) == 1 and "is a folder that empanada_nb did not write" in err[0]
    assert (f / "notes.txt").read_text() == "mine"


@case("cli")
def segment_overwrite_own_output(c):
    out = fresh(c) / "seg.zarr"
    assert cli("segment", c.model_path, c.root / "vol.tif", "--out", out, "--quiet", "--min-size", "0")[0] == 0
    (out / "extra").mkdir()  # still ours: the zarr attributes carry the marker
    rc, err = cli("segment", c.model_path, c.root / "vol.tif", "--out", out, "--quiet", "--overwrite")
    assert rc == 0, err
    assert not (out / "extra").exists() and "empanada_nb" in zarr.open_array(str(out), mode="r").attrs


@case("cli")
def segment_overwrite_user_tiff_refused(c):
    p = fresh(c) / "raw.tif"
    tifffile.imwrite(p, c.vol)  # the user's own TIFF: no empanada_nb Software tag
    rc, err = cli("segment", c.model_path, c.root / "vol.tif", "--out", p, "--overwrite", "--quiet")
    assert rc == 2 and "is a file that empanada_nb did not write" in err[0]
    np.testing.assert_array_equal(tifffile.imread(p), c.vol)


@case("cli")
def segment_nan_volume(c):
    d = fresh(c)
    vol = c.vol.astype(np.float32)
    vol[0, :4, :4] = np.nan
    write_tiff(d / "v.tif", vol)
    rc, err = cli("segment", c.model_path, d / "v.tif", "--out", d / "s.tif", "--quiet", "--min-size", "0")
    assert rc == 0, err
    lo, hi = enb.volume.volume_irange(vol)
    ref = enb.segment_stack(
        c.model, np.nan_to_num(vol, nan=lo + 0.5 * (hi - lo)), progress=False, min_size=0, irange=(lo, hi)
    )
    np.testing.assert_array_equal(tifffile.imread(d / "s.tif"), ref)


@case("cli")
def segment_cuda_without_gpu(c):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc, err = cli(
        "segment", c.model_path, c.root / "vol.tif", "--out", fresh(c) / "s.zarr", "--device", "cuda", "--quiet"
    )
    assert rc == 2 and err == [
        "empanada-nb segment: error: device 'cuda': no CUDA GPU is available on this machine; use cpu"
    ]


@case("cli")
def train_missing_config(c):
    d = fresh(c)
    rc, err = cli("train", "--train-dir", c.ds, "--config", d / "nope.yaml", "--out", d / "m.pth")
    assert rc == 2 and err == [
        f"empanada-nb train: error: --config {d / 'nope.yaml'}: no such file (a TrainConfig YAML file)"
    ]


@case("cli")
def train_unwritable_folder(c):
    d = fresh(c)
    (d / "file").write_text("x")  # a file where the output folder should be: nothing can be written there
    rc, err = cli(
        "train", "--train-dir", c.ds, "--iterations", "1", "--patch-size", "64", "--out", d / "file" / "m.pth"
    )
    assert rc == 2 and len(err) == 1 and f"cannot write to {d / 'file'}" in err[0]


@case("cli")
def evaluate_divisor_cli(c):
    d = fresh(c)
    gt = np.zeros((40, 8), np.int32)
    for i in range(10):
        gt[4 * i : 4 * i + 3, 2:6] = i + 1
    write_tiff(d / "gt.tif", gt)
    rc, err = cli("evaluate", d / "gt.tif", d / "gt.tif", "--instances", "--label-divisor", "4")
    assert rc == 2 and err == [
        "empanada-nb evaluate: error: pred has ids below label_divisor=4 (class 0); "
        "pass label_divisor only for panoptic ids"
    ]


@case("cli")
def train_nan_loss_one_line(c):
    d = fresh(c)
    rc, err = cli(
        "train",
        "--train-dir",
        c.ds,
        "--iterations",
        "3",
        "--patch-size",
        "64",
        "--batch-size",
        "2",
        "--encoder",
        "resnet18",
        "--lr",
        "1e30",
        "--out",
        d / "m.pth",
    )
    assert rc == 2 and len(err) == 1 and "loss became nan at iteration" in err[0] and "lower lr" in err[0]


# ----------------------------------------------------------------------------------- writers, disk


@case("disk")
def stack_out_user_folder_refused(c):
    f = user_folder(fresh(c))
    raises(FileExistsError, "did not write", enb.segment_stack, c.model, c.vol, out=f, overwrite=True, progress=False)
    assert (f / "notes.txt").read_text() == "mine"


@case("disk")
def stack_out_png_refused(c):
    raises(
        ValueError,
        "unsupported output suffix '.png'",
        enb.segment_stack,
        c.model,
        c.vol,
        out=fresh(c) / "x.png",
        progress=False,
    )


@case("disk")
def volume_tiff_over_user_tiff(c):
    p = fresh(c) / "raw.tif"
    tifffile.imwrite(p, c.vol)
    raises(FileExistsError, "did not write", write_volume_tiff, c.vol, p, overwrite=True)


@case("disk")
def export_over_user_tiff(c):
    p = fresh(c) / "raw.tif"
    tifffile.imwrite(p, c.vol)
    raises(FileExistsError, "did not write", enb.export_tiff, c.vol.astype(np.int32), p, overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(p), c.vol)


@case("disk")
def files_respect_umask(c):
    d = fresh(c)
    old = os.umask(0o027)
    try:
        enb.save_model(c.model, d / "m.pth")
        write_tiff(d / "a.tif", c.vol[0])
    finally:
        os.umask(old)
    assert {oct((d / n).stat().st_mode & 0o777) for n in ("m.pth", "m.yaml", "a.tif")} == {"0o640"}


@case("disk")
def checkpoint_write_fails_mid_run(c):
    d = fresh(c)
    ck = checkpoint_path(d / "m.pth")

    def block(e):  # after the checkpoint of iteration 2, the checkpoint path becomes unwritable
        if e["type"] == "checkpoint" and e["iteration"] == 2:
            ck.unlink()
            ck.mkdir()

    e = raises(
        OSError,
        f"could not write the checkpoint {ck}",
        quiet,
        enb.train,
        c.ds,
        out=d / "m.pth",
        iterations=6,
        checkpoint_interval=2,
        callbacks=[block],
        **TINY,
    )
    assert f"the last good checkpoint is {ck} (iteration 2)" in str(e)


# ------------------------------------------------------------------------------------ concurrency


@case("concurrency")
def stale_temp_of_dead_pid_removed(c):
    d = fresh(c)
    dead = _atomic.temp_name(d / "m.pth", ".pth")
    dead = dead.with_name(dead.name.replace(f"-{os.getpid()}-", "-999999999-"))
    dead.write_bytes(b"half")
    live = _atomic.temp_name(d / "other.pth")  # this process is alive: its temporary stays
    live.write_bytes(b"in progress")
    user = d / ".m.pth.tmp"  # not our pattern: never touched
    user.write_bytes(b"user")
    enb.save_model(c.model, d / "m.pth")
    assert not dead.exists() and live.exists() and user.exists()


@case("concurrency")
def threads_writing_one_file(c):
    d = fresh(c)
    datas = [np.full((32, 32), v, np.uint8) for v in range(8)]
    errors = []

    def w(a):
        try:
            write_tiff(d / "a.tif", a, overwrite=True)
        except FileExistsError:
            pass  # a thread that checked before another renamed: refused, never half
        except Exception as e:  # pragma: no cover - a failure shows in the assert
            errors.append(e)

    ts = [threading.Thread(target=w, args=(a,)) for a in datas]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors and not leftovers(d)
    got = tifffile.imread(d / "a.tif")
    assert any(np.array_equal(got, a) for a in datas)


@case("concurrency")
def two_patch_saves_same_dataset(c):
    d = fresh(c)
    vol = (c.vol // 16).astype(np.uint8)
    picks = [make_pick("xy", z, 24, 24, 16, vol.shape) for z in range(3)]
    ts = [threading.Thread(target=quiet, args=(save_patches, vol, picks, d, "p")) for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    files = sorted(p.name for p in (d / "p" / "images").iterdir())
    assert files == sorted(p.name for p in (d / "p" / "masks").iterdir()) and len(files) == 3
    assert not leftovers(d)


# ---------------------------------------------------------------------------------------- signals


@case("signals")
def keyboard_interrupt_mid_write(c):
    d = fresh(c)
    write_tiff(d / "a.tif", c.vol[0])
    with pytest.raises(KeyboardInterrupt):
        with _atomic.atomic_path(d / "a.tif", ".tif") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    np.testing.assert_array_equal(tifffile.imread(d / "a.tif"), c.vol[0])
    assert not leftovers(d)


@case("signals")
def sigint_checkpoint_consistent(c):
    d = fresh(c)

    def ctrl_c(e):
        if e["type"] == "step" and e["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, taken at the end of the iteration

    h = quiet(enb.train, c.ds, out=d / "m.pth", iterations=6, callbacks=[ctrl_c], **TINY)
    st = load_checkpoint(checkpoint_path(d / "m.pth"))
    steps = {int(s["step"]) for s in st["optimizer"]["state"].values()}
    assert h.interrupted and st["iteration"] == 2 and steps == {2}
    assert h.events("end")[-1]["stopped"] is True and enb.load_model(d / "m.pth")


@case("signals")
def cli_train_interrupted_exits_130(c):
    d = fresh(c)
    from empanada_nb.cli import _progress

    real = _progress.progress_callback

    def wrapped(total):
        cb = real(total)

        def on(e):
            cb(e)
            if e["type"] == "step" and e["iteration"] == 1:
                os.kill(os.getpid(), signal.SIGINT)

        return on

    with (
        mock.patch.object(_progress, "progress_callback", wrapped),
        mock.patch("empanada_nb.cli.train.progress_callback", wrapped),
    ):
        rc, err = cli(
            "train",
            "--train-dir",
            c.ds,
            "--iterations",
            "4",
            "--patch-size",
            "64",
            "--batch-size",
            "2",
            "--encoder",
            "resnet18",
            "--out",
            d / "m.pth",
        )
    assert rc == 130
    assert f"interrupted at iteration 1: model saved to {d / 'm.pth'}; continue with --resume" in err
    assert load_checkpoint(checkpoint_path(d / "m.pth"))["iteration"] == 1


@case("signals")
def half_pair_redone_and_picks_reconciled(c):
    d = fresh(c)
    vol = (c.vol // 16).astype(np.uint8)
    picks = [make_pick("xy", z, 24, 24, 16, vol.shape) for z in range(3)]
    save_patches(vol, picks[:2], d, "p")
    root = d / "p"
    # what a kill -9 can leave: a mask without its image, and a picks file that lags behind
    fn = enb.patches.patch_filename("p", picks[2])
    write_tiff(root / "masks" / fn, np.zeros((16, 16), np.uint32))
    meta = json.loads((root / "p_picks.json").read_text())
    meta["picks"] = meta["picks"][:1]
    (root / "p_picks.json").write_text(json.dumps(meta))
    res = save_patches(vol, picks, d, "p")
    assert res["written"] == [fn] and (root / "images" / fn).exists()
    listed = [p["file"] for p in json.loads((root / "p_picks.json").read_text())["picks"]]
    assert sorted(listed) == sorted(p.name for p in (root / "images").iterdir())


@pytest.mark.parametrize("name", list(CASES))
def test_catalogue(name, ctx):
    first = ctx.n[0] + 1
    CASES[name](ctx)
    # a passed case's folders go at once: the 60 cases write ~4 GB of models and checkpoints
    for i in range(first, ctx.n[0] + 1):
        shutil.rmtree(ctx.root / f"case{i}", ignore_errors=True)


def test_catalogue_size():
    groups = {n.split("-")[0] for n in CASES}
    assert len(CASES) >= 40 and groups == {
        "files",
        "shapes",
        "dtypes",
        "values",
        "configs",
        "models",
        "cli",
        "disk",
        "concurrency",
        "signals",
    }


# ------------------------------------------------------------------------------------ signal loops

KILLS = int(os.environ.get("EMPANADA_NB_FAULT_KILLS", "3"))


@pytest.fixture(scope="module")
def fault_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("fault_data")
    prepare(d)
    return d


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("op", OPS)
def test_signal_loop_leaves_nothing_half_written(op, sig, fault_data, tmp_path):
    records = fault_loop(op, sig, tmp_path / "out", fault_data, KILLS)
    assert len(records) == KILLS
    if op == "train" and Path("/proc/self/environ").exists():
        # a killed run's batch workers end too (their parent is a forkserver, which torch does not watch)
        assert strays(os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]) == []
    report = os.environ.get("EMPANADA_NB_FAULT_REPORT")
    if report:  # benchmarks/faults.py collects what each kill left on disk
        with open(report, "a") as f:
            for r in records:
                f.write(json.dumps({"op": op, **r}) + "\n")


def test_ctrl_c_and_resume_match_an_uninterrupted_run(ctx, tmp_path):
    """A real SIGINT at an iteration, then resume: bit-exact with the run never interrupted (as kill -9)."""
    cfg = dict(iterations=5, checkpoint_interval=1, **TINY)
    full = quiet(enb.train, ctx.ds, out=tmp_path / "full.pth", **cfg)

    def ctrl_c(e):
        if e["type"] == "step" and e["iteration"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    part = quiet(enb.train, ctx.ds, out=tmp_path / "part.pth", callbacks=[ctrl_c], **cfg)
    assert part.interrupted and load_checkpoint(checkpoint_path(tmp_path / "part.pth"))["iteration"] == 3
    resumed = quiet(enb.train, ctx.ds, out=tmp_path / "part.pth", resume=True, **cfg)
    assert [s["iteration"] for s in resumed.events("step")] == [1, 2, 3, 4, 5]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert yaml.safe_load((tmp_path / "part.yaml").read_text())["history_summary"]["iterations"] == 5
