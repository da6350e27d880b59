"""empanada_nb against empanada-dl 0.1.7, side by side in one run; writes benchmarks/RESULTS.md.

    python benchmarks/compare.py [--quick] [--threads 2] [--repeats 3] [--only forward,e2e,...] [--out FILE]

Every case of issue 14 runs in fresh subprocesses, one per library (empanada-dl in its own venv,
benchmarks/peer_venv.py), so each peak RSS is that case's own. The peer builds a random-init model
(BatchNorm statistics randomized), saves its state dict, and empanada_nb loads the same weights
(``model_from_state_dict``, the model-interop path): both run the same architecture with the same
weights, and the forward outputs are checked to agree. The peer runs what empanada-napari runs:
the fused, TorchScript-exported model (``fuse_model()`` + ``torch.jit.script``), and its int8
export (fbgemm) where this CPU has it.

Cases: forward at 512^2 and 1024^2 of PanopticDeepLab-R50 and PanopticBiFPN-R50 (fpn 160), with and
without PointRend (FLOPs from ``FlopCounterMode`` and achieved FLOP/s against a large matmul's in this
run); 2D end to end on a real slice; stack inference on a real volume; ortho-plane inference on a small
real volume (empanada-dl has none: ours only); training steps (bs 16, 256^2, PanopticBiFPN-R18
fpn 128 and PanopticDeepLab-R50, layers all/none) and a real training run's images/s with data loading
(``empanada_nb.train``; empanada-dl has no training loop: ours only); the CPU fast path
(``precision="auto"``) against empanada's fp32 and int8, with its accuracy against our fp32 on a
real volume (``metrics.evaluate`` of the labels of a model trained in the same run).

``--quick`` runs every case with tiny sizes (128^2 inputs, few slices, ResNet-18 for training; empanada's
quantizable models exist for ResNet-50 only) to check that the
harness works; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = Path(os.environ.get("EMPANADA_NB_DATA", ROOT / ".." / "shared" / "data"))
RESULT = "RESULT "


# ------------------------------------------------------------------------------------------------
# our side: jobs run in a fresh process (python compare.py --job NAME JSON)
# ------------------------------------------------------------------------------------------------


def _ours_model(state: str):
    import torch

    from empanada_nb.empanada_format import model_from_state_dict

    return model_from_state_dict(torch.load(state, map_location="cpu", weights_only=True)).eval()


def job_forward(a: dict) -> dict:
    import numpy as np
    import torch

    from empanada_nb.inference import Predictor

    model = _ours_model(a["state"])
    x = torch.from_numpy(np.load(a["x"]))
    res = {}
    if a.get("flops"):
        from torch.utils.flop_counter import FlopCounterMode

        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            model(x)
        res["flops"] = fc.get_total_flops()
    pred = Predictor(model, precision=a["precision"])
    res["precision"] = pred.precision.name
    net = pred.network()
    cl = net is not model and pred.precision.channels_last
    xin = x.contiguous(memory_format=torch.channels_last) if cl else x
    times = []
    with torch.inference_mode():
        for i in range(a["repeats"] + 1):
            t = time.perf_counter()
            with pred.precision.autocast(pred.device):
                out = net(xin)
            if i:
                times.append(time.perf_counter() - t)
            elif a.get("save"):
                keys = ("sem_logits", "ctr_hmp", "offsets")
                np.save(a["save"], torch.cat([out[k].float() for k in keys], 1).numpy())
    res["times"] = times
    return res


def job_e2e(a: dict) -> dict:
    import numpy as np

    import empanada_nb as enb

    model = _ours_model(a["state"])
    image = np.load(a["image"])
    times = []
    for i in range(a["repeats"] + 1):
        t = time.perf_counter()
        labels = enb.segment_image(model, image, irange=(0.0, 255.0), precision=a["precision"])
        if i:
            times.append(time.perf_counter() - t)
    np.save(a["save"], labels.astype(np.int64))
    return {"times": times}


def job_stack(a: dict) -> dict:
    import numpy as np

    import empanada_nb as enb

    model = _ours_model(a["state"])
    vol = np.load(a["volume"], mmap_mode="r")
    t = time.perf_counter()
    enb.segment_stack(model, vol, irange=(0.0, 255.0), progress=False, precision=a["precision"])
    return {"times": [time.perf_counter() - t], "slices": int(vol.shape[0])}


def job_ortho(a: dict) -> dict:
    import numpy as np

    import empanada_nb as enb

    model = _ours_model(a["state"])
    vol = np.load(a["volume"], mmap_mode="r")
    t = time.perf_counter()
    enb.segment_ortho(model, vol, irange=(0.0, 255.0), progress=False, precision=a["precision"])
    return {"times": [time.perf_counter() - t], "slices": int(sum(vol.shape))}


def job_train_step(a: dict) -> dict:
    import torch

    import empanada_nb as enb
    from empanada_nb.losses import PanopticLoss
    from empanada_nb.training.loop import make_optimizer, set_train_mode

    torch.manual_seed(0)
    kw = {"fpn_dim": a["fpn_dim"]} if a.get("fpn_dim") else {}
    model = enb.build_model(a["arch"], a["encoder"], **kw)
    enb.set_finetunable(model, a["layers"])
    opt = make_optimizer(model, enb.TrainConfig())
    crit = PanopticLoss()
    n, s = a["batch_size"], a["size"]
    x = torch.randn(n, 1, s, s)
    tgt = {
        "sem": (torch.rand(n, s, s) > 0.8).long(),
        "ctr_hmp": torch.rand(n, 1, s, s),
        "offsets": torch.randn(n, 2, s, s),
        "thing": torch.rand(n, s, s) > 0.8,
    }
    if enb.TrainConfig().channels_last:  # as train() runs it (NHWC on every device since session 4)
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    set_train_mode(model, a["layers"] == "none")
    # the step precision train() runs by default (TrainConfig.amp): bfloat16 on AVX512-BF16/AMX CPUs
    prec = enb.TrainConfig().step_precision("cpu")
    times = []
    for i in range(a["repeats"] + 1):
        t = time.perf_counter()
        with prec.autocast(torch.device("cpu")):
            out = model(x)
        loss, _ = crit(out, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return {"times": times, "precision": prec.name}


def job_train_run(a: dict) -> dict:
    """A real run of ``empanada_nb.train`` on real crops; images/s from its step events (first step excluded)."""
    import warnings

    import empanada_nb as enb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(
            a["train_dir"],
            out=a["out"],
            overwrite=True,
            architecture=a["arch"],
            encoder=a["encoder"],
            finetunable_layers=a["layers"],
            pretrained=None,
            iterations=a["iterations"],
            batch_size=a["batch_size"],
            patch_size=a["size"],
            connected_components=True,
            val_interval=a["iterations"],
            checkpoint_interval=a["iterations"],
        )
        h.wait()
    steps = h.events("step")
    span = steps[-1]["elapsed"] - steps[0]["elapsed"]
    ips = a["batch_size"] * (len(steps) - 1) / span if len(steps) > 1 and span > 0 else float("nan")
    return {"times": [span / max(1, len(steps) - 1)], "images_per_s": ips}


def job_accuracy(a: dict) -> dict:
    """Labels of the fast path against fp32 on a real volume, with the model trained in this run."""
    import numpy as np

    import empanada_nb as enb

    model = enb.load_model(a["model"])
    vol = np.load(a["volume"], mmap_mode="r")
    kw = dict(irange=(0.0, 255.0), progress=False, min_size=0, min_extent=0)
    t = time.perf_counter()
    ref = enb.segment_stack(model, vol, precision="fp32", **kw)
    t32 = time.perf_counter() - t
    t = time.perf_counter()
    fast = enb.segment_stack(model, vol, precision=a["precision"], **kw)
    tf = time.perf_counter() - t
    m = enb.evaluate(fast, ref)
    sem = enb.evaluate(fast > 0, ref > 0, instances=False)
    return {
        "times": [tf],
        "fp32_s": t32,
        "metrics": {k: float(v) for k, v in m.items() if isinstance(v, (int, float))},
        "semantic": {k: float(v) for k, v in sem.items() if isinstance(v, (int, float))},
        "objects": [int(len(np.unique(ref)) - 1), int(len(np.unique(fast)) - 1)],
    }


def peak_matmul(threads: int, n: int) -> dict:
    """FLOP/s of an n x n float32 (and bfloat16) matmul with ``threads`` threads: the machine's practical peak."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        out[name] = 2 * n**3 / best
    return out


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------


def run_job(side: str, job: str, args: dict, threads: int, peer_py: Path | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if side == "ours":
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--job", job, json.dumps(args)]
    else:
        env.pop("PYTHONPATH", None)
        cmd = [str(peer_py), str(HERE / "_peer_jobs.py"), job, json.dumps(args)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT) :])
    tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
    return {"error": f"{side} {job} failed (exit {r.returncode}): {tail}"}


def _agree(a_path: str, b_path: str) -> str:
    import numpy as np

    a, b = np.load(a_path), np.load(b_path)
    if a.shape != b.shape:
        return f"shapes differ {a.shape} vs {b.shape}"
    rel = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
    return f"max rel. diff {rel:.1e}" + ("" if rel < 1e-3 else " (DIFFERENT)")


def _med(r: dict) -> float | None:
    return statistics.median(r["times"]) if r and "times" in r and r["times"] else None


def _fmt_s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f} s"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "" if not ours or not theirs else f"{theirs / ours:.2f}x"


def _rss(r: dict | None) -> str:
    return "" if not r or "peak_rss_mib" not in r else f"{r['peak_rss_mib']:.0f}"


def sizes(quick: bool) -> dict:
    if quick:
        return dict(
            encoder="resnet50", fwd=(128,), slice=256, stack=(3, 128, 128), ortho=(3, 64, 64), train_bs=2,
            train_size=128, train_iters=3, steps=[("PanopticBiFPN", "resnet18", 64)], acc=(3, 128, 128),
        )  # fmt: skip
    return dict(
        encoder="resnet50", fwd=(512, 1024), slice=1024, stack=(20, 1024, 1024), ortho=(32, 256, 256), train_bs=16,
        train_size=256, train_iters=30, acc=(20, 768, 1024),
        steps=[("PanopticBiFPN", "resnet18", 128), ("PanopticDeepLab", "resnet50", None)],
    )  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, figures mean nothing")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every process (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per case (median reported)")
    ap.add_argument("--only", default="", help="comma-separated cases: forward,e2e,stack,ortho,train,fast")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    a = ap.parse_args(argv)
    if a.job:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        res = globals()[f"job_{a.job}"](json.loads(a.args))
        res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(RESULT + json.dumps(res), flush=True)
        return 0

    import numpy as np
    import tifffile

    sys.path.insert(0, str(HERE))
    from peer_venv import PeerUnavailable, peer_python

    cases = set(filter(None, a.only.split(","))) or {"forward", "e2e", "stack", "ortho", "train", "fast"}
    z = sizes(a.quick)
    try:
        peer = peer_python()
    except PeerUnavailable as e:
        print(f"empanada-dl venv unavailable ({e}); peer columns stay empty", file=sys.stderr)
        peer = None
    reps = 1 if a.quick else a.repeats
    rows: dict[str, list[list[str]]] = {k: [] for k in ("forward", "e2e", "stack", "train", "fast", "acc")}
    notes: list[str] = []
    t_start = time.time()
    peak = peak_matmul(a.threads, 1024 if a.quick else 4096)
    print(f"matmul peak: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s", flush=True)

    def both(job, ours_args, peer_args):
        o = run_job("ours", job, ours_args, a.threads, None)
        p = run_job("peer", job, peer_args, a.threads, peer) if peer and peer_args is not None else None
        for r in (o, p):
            if r and "error" in r:
                notes.append(f"{job}: {r['error']}")
                print("  " + r["error"], flush=True)
        return o, p

    with tempfile.TemporaryDirectory(prefix="enb-compare-") as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        models = {}
        variants = [(arch, pr) for arch in ("PanopticDeepLab", "PanopticBiFPN") for pr in (False, True)]
        if peer is None:
            cases -= {"forward", "e2e", "stack", "fast"}  # the weights come from the peer's models
        need = cases & {"forward", "e2e", "stack", "fast", "ortho"}
        for arch, pr in variants if need else []:
            key = f"{arch}{'+PR' if pr else ''}"
            d = tmp / key
            d.mkdir()
            x = (rng.standard_normal((1, 1, z["fwd"][0], z["fwd"][0])) * 0.5).astype(np.float32)
            np.save(d / "calib.npy", x)
            print(f"setup {key} ...", flush=True)
            r = run_job(
                "peer",
                "setup",
                dict(arch=arch, pointrend=pr, encoder=z["encoder"], out=str(d), x=str(d / "calib.npy")),
                a.threads,
                peer,
            )
            if "error" in r:
                notes.append(f"setup {key}: {r['error']}")
                continue
            models[key] = dict(r, state=str(d / "state.pt"), pf=128 if arch == "PanopticBiFPN" else 16)

        if "forward" in cases:
            for key, m in models.items():
                for s in z["fwd"]:
                    x = rng.standard_normal((1, 1, s, s)).astype(np.float32)
                    xp = tmp / f"x{s}.npy"
                    np.save(xp, x)
                    print(f"forward {key} {s}^2 ...", flush=True)
                    oa = dict(state=m["state"], x=str(xp), repeats=reps, precision="fp32", flops=True)
                    o, p = both(
                        "forward",
                        dict(oa, save=str(tmp / "o.npy")),
                        dict(pth=m["fp32"], x=str(xp), repeats=reps, save=str(tmp / "p.npy")),
                    )
                    agree = _agree(str(tmp / "o.npy"), str(tmp / "p.npy")) if p and "error" not in p else ""
                    mo, mp = _med(o), _med(p)
                    fl = o.get("flops")
                    rate = f"{fl / mo / 1e9:.1f} GFLOP/s ({100 * fl / mo / peak['fp32']:.0f}%)" if fl and mo else ""
                    rows["forward"].append(
                        [key, f"{s}^2", _fmt_s(mo), _fmt_s(mp), _ratio(mo, mp), _rss(o), _rss(p),
                         f"{fl / 1e9:.1f}" if fl else "", rate, agree]
                    )  # fmt: skip

        def real_volume(name: str, shape) -> np.ndarray:
            with tifffile.TiffFile(DATA / name) as tif:
                return np.stack([tif.pages[i].asarray()[: shape[1], : shape[2]] for i in range(shape[0])])

        have_data = (DATA / "vnc_stack1_image.tif").exists()
        if not have_data:
            notes.append(f"real data not found in {DATA} (set EMPANADA_NB_DATA): real-data cases skipped")
        if "e2e" in cases and have_data:
            img = real_volume("vnc_stack1_image.tif", (1, z["slice"], z["slice"]))[0]
            np.save(tmp / "slice.npy", img)
            for key in ("PanopticDeepLab", "PanopticBiFPN+PR"):
                if key not in models:
                    continue
                m = models[key]
                print(f"2D end to end {key} ...", flush=True)
                # ours normalizes with the model's norms (build_model's 0.5/0.5): the engine gets the same
                o, p = both(
                    "e2e",
                    dict(state=m["state"], image=str(tmp / "slice.npy"), repeats=reps, precision="fp32",
                         save=str(tmp / "lo.npy")),
                    dict(pth=m["fp32"], image=str(tmp / "slice.npy"), repeats=reps, norms={"mean": 0.5, "std": 0.5},
                         padding_factor=m["pf"], save=str(tmp / "lp.npy")),
                )  # fmt: skip
                mo, mp = _med(o), _med(p)
                rows["e2e"].append([key, f"{z['slice']}^2 vnc_stack1", _fmt_s(mo), _fmt_s(mp), _ratio(mo, mp),
                                    _rss(o), _rss(p)])  # fmt: skip

        if "stack" in cases and have_data and "PanopticDeepLab" in models:
            vol = real_volume("vnc_stack1_image.tif", z["stack"])
            np.save(tmp / "vol.npy", vol)
            m = models["PanopticDeepLab"]
            for prec in ("fp32", "auto"):
                print(f"stack {prec} ...", flush=True)
                o, p = both(
                    "stack",
                    dict(state=m["state"], volume=str(tmp / "vol.npy"), precision=prec),
                    dict(pth=m["fp32"], volume=str(tmp / "vol.npy"), norms={"mean": 0.5, "std": 0.5},
                         padding_factor=m["pf"]) if prec == "fp32" else None,
                )  # fmt: skip
                so = o["slices"] / _med(o) if _med(o) else None
                sp = p["slices"] / _med(p) if p and _med(p) else None
                rows["stack"].append(
                    [f"PanopticDeepLab {prec}", "x".join(map(str, z["stack"])), f"{so:.2f}" if so else "n/a",
                     f"{sp:.2f}" if sp else "", f"{so / sp:.2f}x" if so and sp else "", _rss(o), _rss(p)]
                )  # fmt: skip

        if "ortho" in cases and have_data and "PanopticDeepLab" in models:
            vol = real_volume("lucchipp_train_image.tif", z["ortho"])
            np.save(tmp / "ortho.npy", vol)
            print("ortho ...", flush=True)
            o, _ = both("ortho", dict(state=models["PanopticDeepLab"]["state"], volume=str(tmp / "ortho.npy"),
                                      precision="fp32"), None)  # fmt: skip
            so = o["slices"] / _med(o) if _med(o) else None
            rows["stack"].append(
                ["ortho (xy+xz+yz+consensus) fp32", "x".join(map(str, z["ortho"])), f"{so:.2f}" if so else "n/a",
                 "n/a (no ortho in empanada-dl)", "", _rss(o), ""]
            )  # fmt: skip

        train_model = None
        if "train" in cases:
            for arch, enc, fpn in z["steps"]:
                for layers in ("all", "none"):
                    print(f"train step {arch}-{enc} {layers} ...", flush=True)
                    ta = dict(arch=arch, encoder=enc, fpn_dim=fpn, layers=layers, batch_size=z["train_bs"],
                              size=z["train_size"], repeats=reps)  # fmt: skip
                    o, p = both("train_step", ta, ta if peer else None)
                    mo, mp = _med(o), _med(p)
                    rows["train"].append(
                        [f"step {arch}-{enc}" + (f" fpn {fpn}" if fpn else "") + f" (ours {o.get('precision', '?')})",
                         layers, _fmt_s(mo), _fmt_s(mp),
                         _ratio(mo, mp), _rss(o), _rss(p)]
                    )  # fmt: skip
            if have_data:
                from empanada_nb.data import write_tiff

                keys = list(range(0, 160, 10))
                img = tifffile.imread(DATA / "lucchipp_train_image.tif", key=keys)
                msk = tifffile.imread(DATA / "lucchipp_train_mito_semantic.tif", key=keys)
                for i in range(len(keys)):
                    for y0, x0 in ((0, 0), (256, 512)):
                        name = f"z{i:02d}_{y0}_{x0}.tif"
                        write_tiff(tmp / "train" / "lucchi" / "images" / name, img[i, y0 : y0 + 384, x0 : x0 + 384])
                        write_tiff(tmp / "train" / "lucchi" / "masks" / name, msk[i, y0 : y0 + 384, x0 : x0 + 384])
                for layers in ("all", "none"):
                    print(f"training run {layers} ...", flush=True)
                    out = tmp / f"trained_{layers}.pth"
                    o = run_job(
                        "ours", "train_run",
                        dict(train_dir=str(tmp / "train"), out=str(out), arch="PanopticDeepLab", encoder="resnet18",
                             layers=layers, iterations=z["train_iters"], batch_size=z["train_bs"],
                             size=z["train_size"]),
                        a.threads, None,
                    )  # fmt: skip
                    if "error" in o:
                        notes.append(o["error"])
                    elif layers == "all":
                        train_model = str(out)
                    rows["train"].append(
                        ["real run PanopticDeepLab-R18 (images/s with data loading)", layers,
                         f"{o.get('images_per_s', float('nan')):.2f} img/s", "n/a (no loop in empanada-dl)", "",
                         _rss(o), ""]
                    )  # fmt: skip

        if "fast" in cases:
            for key in ("PanopticDeepLab", "PanopticBiFPN+PR"):
                if key not in models:
                    continue
                m, s = models[key], z["fwd"][-1]
                xp = tmp / f"x{s}.npy"
                if not xp.exists():
                    np.save(xp, rng.standard_normal((1, 1, s, s)).astype(np.float32))
                print(f"fast path {key} ...", flush=True)
                o = run_job("ours", "forward", dict(state=m["state"], x=str(xp), repeats=reps, precision="auto"),
                            a.threads, None)  # fmt: skip
                p32 = run_job("peer", "forward", dict(pth=m["fp32"], x=str(xp), repeats=reps), a.threads, peer)
                p8 = (
                    run_job("peer", "forward", dict(pth=m["int8"], x=str(xp), repeats=reps), a.threads, peer)
                    if m.get("int8") else None
                )  # fmt: skip
                mo = _med(o)
                rows["fast"].append(
                    [key, f"{s}^2", o.get("precision", "?"), _fmt_s(mo), _fmt_s(_med(p32)), _ratio(mo, _med(p32)),
                     _fmt_s(_med(p8)) if p8 else "n/a", _ratio(mo, _med(p8)) if p8 else "", _rss(o)]
                )  # fmt: skip
            if train_model and have_data:
                vol = real_volume("lucchipp_train_image.tif", z["acc"])
                np.save(tmp / "acc.npy", vol)
                print("fast-path accuracy ...", flush=True)
                o = run_job("ours", "accuracy", dict(model=train_model, volume=str(tmp / "acc.npy"), precision="auto"),
                            a.threads, None)  # fmt: skip
                if "error" in o:
                    notes.append(o["error"])
                else:
                    mt, st = o["metrics"], o["semantic"]
                    rows["acc"].append(
                        ["x".join(map(str, z["acc"])), f"{st.get('iou', float('nan')):.4f}",
                         f"{mt.get('f1', mt.get('f1@0.5', float('nan'))):.4f}",
                         f"{mt.get('pq', float('nan')):.4f}", f"{o['objects'][0]} / {o['objects'][1]}",
                         f"{o['fp32_s']:.1f} s / {o['times'][0]:.1f} s"]
                    )  # fmt: skip
            elif "train" not in cases:
                notes.append("fast-path accuracy needs the trained model of the 'train' case (run without --only)")

    write_results(a, rows, notes, peak, time.time() - t_start)
    print(f"wrote {a.out}")
    return 0


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_results(a, rows, notes, peak, wall) -> None:
    import torch

    from empanada_nb.precision import native_bf16_cpu

    load = os.getloadavg()
    parts = [
        "# empanada_nb vs empanada-dl 0.1.7",
        "",
        "<!-- GENERATED by benchmarks/compare.py: do not edit by hand; rerun the script instead. -->",
        "",
        f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
        f"`python benchmarks/compare.py {' '.join(sys.argv[1:])}` in {wall / 60:.1f} min"
        + (" (**--quick: tiny sizes, figures mean nothing**)" if a.quick else "")
        + ".",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"native bf16: {native_bf16_cpu()}, load average at the end {load[0]:.1f}; torch {torch.__version__} "
        f"(empanada-dl's venv: torch 2.13.0); **{a.threads} torch thread(s)** in every process; median of "
        f"{1 if a.quick else a.repeats} timed repeats after one warm-up. Matmul peak in this run: fp32 "
        f"{peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s. Ratio = empanada / ours "
        "(> 1: empanada_nb faster). Peak RSS in MiB, each side in its own process.",
        "",
        "Both sides run the same random-init weights (empanada's model, BatchNorm statistics randomized, loaded "
        "into empanada_nb); empanada runs them fused and TorchScript-exported as empanada-napari does.",
        "",
        "## Forward pass (fp32)",
        "",
        _table(
            [
                "model",
                "size",
                "ours",
                "empanada",
                "ratio",
                "RSS ours",
                "RSS emp.",
                "GFLOP",
                "ours achieved",
                "outputs agree",
            ],
            rows["forward"],
        ),  # fmt: skip
        "",
        "## 2D end to end (real slice, normalization to labels)",
        "",
        _table(["model", "image", "ours", "empanada", "ratio", "RSS ours", "RSS emp."], rows["e2e"]),
        "",
        "## Stack and ortho-plane inference (real volume)",
        "",
        _table(["run", "volume", "ours slices/s", "empanada slices/s", "ratio", "RSS ours", "RSS emp."], rows["stack"]),
        "",
        "empanada's stack row: PanopticDeepLabEngine3d per slice (median of 1) plus its InstanceTracker where it "
        "imports; ortho counts the slices of all three views.",
        "",
        "## Training",
        "",
        _table(["case", "layers", "ours", "empanada", "ratio", "RSS ours", "RSS emp."], rows["train"]),
        "",
        "Each library's step as its training runs it on this device: ours at `TrainConfig.amp`'s precision "
        "(bf16 on CPUs with AVX512-BF16/AMX, named in the case), empanada's scripts/train.py autocasts through "
        "torch.cuda.amp only, so its CPU steps are fp32.",
        "",
        '## CPU fast path (`precision="auto"`) against empanada\'s fp32 and int8 forward',
        "",
        _table(
            ["model", "size", "ran as", "ours", "empanada fp32", "ratio", "empanada int8", "ratio", "RSS ours"],
            rows["fast"],
        ),  # fmt: skip
        "",
        "Accuracy of the fast path against our fp32 on a real volume (Lucchi++), model trained in this run "
        "(`metrics.evaluate`: semantic IoU, instance F1 and PQ of fast-path labels against fp32 labels):",
        "",
        _table(["volume", "semantic IoU", "F1", "PQ", "objects fp32 / fast", "time fp32 / fast"], rows["acc"]),
    ]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    a.out.write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    sys.exit(main())
