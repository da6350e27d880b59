"""Writers that run in a child process until a signal ends them, and the checks of what they left.

Used by tests/test_faults.py (a few kills per case) and benchmarks/faults.py (many). Each writer
loops over one kind of write into ``folder``; the parent kills it (SIGKILL) or interrupts it
(SIGINT) at a random moment and then calls the matching ``check_*`` to assert that nothing
half-written remains under a final name.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np

#: temporaries of empanada_nb._atomic (``.<name>.~enb-<host>-<pid>-<hex>[suffix].tmp``)
TMP = re.compile(r"^\..*\.~enb-.*\.tmp$")
TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", patch_size=64, batch_size=2)
OPS = ("train", "checkpoint", "model_save", "patch_save", "segment")


def context() -> mp.context.BaseContext:
    """A forkserver context that has torch and empanada_nb imported once (children start in ~0.1 s)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "empanada_nb", "fault_workers"])
    return ctx


def strays(test_id: str, wait_s: float = 15.0) -> list[str]:
    """Processes still running that a killed child of test ``test_id`` started (Linux ``/proc``).

    Found by the ``PYTEST_CURRENT_TEST`` they inherited; this process, the fault forkserver and its
    children (the next writers) are ours. Waits up to ``wait_s`` for them to end first.
    """
    from multiprocessing import forkserver

    ours = {os.getpid(), getattr(forkserver._forkserver, "_forkserver_pid", None)}
    deadline = time.time() + wait_s
    while True:
        found = []
        for d in Path("/proc").glob("[0-9]*"):
            try:
                env = (d / "environ").read_bytes().split(b"\0")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            if int(d.name) in ours or ppid in ours:
                continue
            if any(e.startswith(b"PYTEST_CURRENT_TEST=" + test_id.encode()) for e in env):
                found.append(f"{d.name} (parent {ppid}): {cmd[:120]}")
        if not found or time.time() > deadline:
            return found
        time.sleep(0.5)


def leftovers(folder: Path) -> list[str]:
    """Temporaries of ours anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if TMP.match(p.name))


def _tiny_model(seed: int = 0):
    import torch

    import empanada_nb as enb

    torch.manual_seed(seed)
    return enb.build_model("PanopticDeepLab", "resnet18")


# ----------------------------------------------------------------------------------- writers


def writer(op: str, folder: str, data: str, started: str) -> None:
    """Child process body: loop over writes of kind ``op`` until killed; touch ``started`` when going.

    A SIGINT (KeyboardInterrupt) ends the loop with exit status 1 (training: 130, from the handle).
    """
    import torch

    torch.set_num_threads(1)
    folder, data = Path(folder), Path(data)
    if op == "train":
        import empanada_nb as enb
        from empanada_nb.training import checkpoint_path

        out = folder / "m.pth"
        resume = checkpoint_path(out).exists()
        Path(started).touch()
        h = enb.train(
            data / "ds",
            out=out,
            iterations=10_000,
            checkpoint_interval=1,
            resume=True if resume else None,
            overwrite=not resume,
            **TINY,
        )
        sys.exit(130 if h.interrupted else 0)

    def going() -> None:  # after the first whole write: signals then land in steady-state writes
        Path(started).touch()

    if op == "checkpoint":
        from empanada_nb.training.checkpoint import save_checkpoint

        state = {"iteration": 0, "optimizer": {}, "model": _tiny_model().state_dict()}
        for i in range(10**9):
            state["iteration"] = i
            save_checkpoint(folder / "c.checkpoint.pth", state)
            going()
    elif op == "model_save":
        from empanada_nb import save_model

        m = _tiny_model()
        while True:
            save_model(m, folder / "m.pth", overwrite=True)
            going()
    elif op == "patch_save":
        from empanada_nb.patches import make_pick, save_patches

        vol = np.load(data / "vol.npy")
        k = len(list((folder / "p" / "images").glob("*.tif"))) if (folder / "p").exists() else 0
        while True:
            picks = [
                make_pick("xy", (k + j) % vol.shape[0], 16 + (k + j) % 32, 16 + j, 32, vol.shape) for j in range(4)
            ]
            save_patches(vol, picks, folder, "p", labels=(vol > 128).astype(np.uint8), on_clash="skip")
            k += 4
            going()
    elif op == "segment":
        import empanada_nb as enb

        m = _tiny_model().eval()
        vol = np.load(data / "vol.npy")
        while True:
            enb.segment_stack(m, vol, out=folder / "seg.zarr", overwrite=True, progress=False, min_size=0)
            going()


# ------------------------------------------------------------------------------------ checks


def check(op: str, folder: Path, data: Path, sig: int, exitcode: int | None) -> dict:
    """Assert that what ``op`` left in ``folder`` after ``sig`` is complete; return what was there."""
    import torch

    import empanada_nb as enb
    from empanada_nb.training import load_checkpoint

    seen = {"exitcode": exitcode, "leftovers": leftovers(folder)}
    if op == "train":
        ck = folder / "m.checkpoint.pth"
        if ck.exists():
            st = load_checkpoint(ck)
            steps = {int(s["step"]) for s in st["optimizer"]["state"].values()}
            assert steps == {st["iteration"]}, f"checkpoint says {st['iteration']}, optimizer holds {steps}"
            seen["checkpoint_iteration"] = st["iteration"]
        if (folder / "m.pth").exists():
            enb.load_model(folder / "m.pth")
            seen["model"] = True
        if sig == signal.SIGINT:
            assert exitcode == 130, f"interrupted training exited {exitcode}"
            assert ck.exists() and (folder / "m.pth").exists()
    elif op == "checkpoint":
        if (folder / "c.checkpoint.pth").exists():
            seen["iteration"] = int(torch.load(folder / "c.checkpoint.pth", weights_only=False)["iteration"])
    elif op == "model_save":
        if (folder / "m.pth").exists():
            enb.load_model(folder / "m.pth")
            seen["model"] = True
    elif op == "patch_save":
        root = folder / "p"
        imgs = {p.name for p in (root / "images").glob("*.tif")} if root.exists() else set()
        msks = {p.name for p in (root / "masks").glob("*.tif")} if root.exists() else set()
        assert not imgs - msks, f"images without masks: {sorted(imgs - msks)}"
        for name in imgs:  # every file under a final name reads whole
            import tifffile

            tifffile.imread(root / "images" / name)
            tifffile.imread(root / "masks" / name)
        seen["pairs"], seen["half_pairs"] = len(imgs), len(msks - imgs)
        if (root / "p_picks.json").exists():  # rewritten by every save: never half-written
            json.loads((root / "p_picks.json").read_text())
    elif op == "segment":
        if (folder / "seg.zarr").exists():
            ref = np.load(data / "seg_ref.npy")
            got = np.asarray(enb.open_volume(folder / "seg.zarr")[...])
            assert np.array_equal(got, ref), "the zarr store under the final name differs from a whole run"
            seen["store"] = True
    return seen


def pair_digests(root: Path) -> dict[str, str]:
    """sha256 of each complete image/mask pair under a dataset folder, by file name."""
    import hashlib

    out = {}
    for img in sorted((root / "images").glob("*.tif")) if root.exists() else []:
        msk = root / "masks" / img.name
        if msk.exists():
            out[img.name] = hashlib.sha256(img.read_bytes() + msk.read_bytes()).hexdigest()
    return out


def repair(op: str, folder: Path, data: Path) -> None:
    """One write in this (live) process: must clean every temporary the killed writers left."""
    import empanada_nb as enb

    if op in ("train", "checkpoint", "model_save"):
        enb.save_model(_tiny_model(), folder / "repair.pth")
    elif op == "patch_save":
        from empanada_nb.patches import save_patches

        vol = np.load(data / "vol.npy")
        save_patches(vol, [], folder, "p")  # reconciles the picks file with the pairs on disk
        enb.save_model(_tiny_model(), folder / "p" / "images" / "x.pth")  # a write in each folder
        (folder / "p" / "images" / "x.pth").unlink()
        (folder / "p" / "images" / "x.yaml").unlink()
        enb.save_model(_tiny_model(), folder / "p" / "masks" / "x.pth")
        (folder / "p" / "masks" / "x.pth").unlink()
        (folder / "p" / "masks" / "x.yaml").unlink()
    elif op == "segment":
        vol = np.load(data / "vol.npy")
        enb.segment_stack(
            _tiny_model().eval(), vol, out=folder / "seg.zarr", overwrite=True, progress=False, min_size=0
        )


def prepare(data: Path) -> None:
    """Inputs of the writers: a tiny dataset, a small volume and its reference segmentation."""
    import empanada_nb as enb

    data.mkdir(parents=True, exist_ok=True)
    enb.make_synthetic_dataset(data / "ds", n_images=2, size=64, seed=3)
    vol, _ = enb.synthetic_volume((4, 64, 64), n_objects=3, seed=4)
    np.save(data / "vol.npy", vol)
    ref = enb.segment_stack(_tiny_model().eval(), vol, progress=False, min_size=0)
    np.save(data / "seg_ref.npy", np.asarray(ref))


def fault_loop(op: str, sig: int, folder: Path, data: Path, kills: int, seed: int = 0) -> list[dict]:
    """Start ``op``'s writer ``kills`` times, each time signalling it at a random moment; check after each."""
    ctx = context()
    rng = np.random.default_rng([seed, OPS.index(op), int(sig)])
    folder.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    complete: dict[str, str] = {}
    for k in range(kills):
        started = folder.parent / f".started-{op}-{k}"
        p = ctx.Process(target=writer, args=(op, str(folder), str(data), str(started)))
        p.start()
        t0 = time.time()
        while not started.exists() and p.is_alive() and time.time() - t0 < 120:
            time.sleep(0.01)
        if op == "train":  # let it reach the loop: signals then land in iterations and checkpoints
            ck = folder / "m.checkpoint.pth"
            before = ck.stat().st_mtime_ns if ck.exists() else 0
            while p.is_alive() and time.time() - t0 < 120 and (not ck.exists() or ck.stat().st_mtime_ns == before):
                time.sleep(0.01)
        delay = float(rng.uniform(0.0, 0.4))
        time.sleep(delay)
        assert p.is_alive(), f"{op} writer ended before the signal (exit {p.exitcode})"
        os.kill(p.pid, sig)
        p.join(120)
        if p.is_alive():  # SIGINT not honoured in time: that is a failure, but do not hang
            p.kill()
            p.join()
            raise AssertionError(f"{op} writer ignored {signal.Signals(sig).name} for 120 s")
        rec = check(op, folder, data, sig, p.exitcode)
        if op == "patch_save":  # every pair complete before this kill is still there, byte for byte
            now = pair_digests(folder / "p")
            changed = sorted(n for n, d in complete.items() if now.get(n) != d)
            assert not changed, f"kill {k} changed or removed earlier patches: {changed}"
            complete = now
        rec.update(kill=k, signal=signal.Signals(sig).name, delay_s=round(delay, 3))
        records.append(rec)
    repair(op, folder, data)
    rest = leftovers(folder)
    assert not rest, f"temporaries survive the next write: {rest}"
    if op == "patch_save" and (folder / "p").exists():
        pairs = {p.name for p in (folder / "p" / "images").glob("*.tif")}
        assert pairs == {p.name for p in (folder / "p" / "masks").glob("*.tif")}, "half pairs survive a save"
        listed = [q["file"] for q in json.loads((folder / "p" / "p_picks.json").read_text())["picks"]]
        assert sorted(listed) == sorted(pairs), "the picks file does not list exactly the saved pairs"
    return records
