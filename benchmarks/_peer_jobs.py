"""Jobs of benchmarks/compare.py that run INSIDE the empanada-dl 0.1.7 venv (benchmarks/peer_venv.py).

    python _peer_jobs.py JOB JSON_ARGS

Each job prints one line ``RESULT {json}`` (seconds per repeat, peak RSS of this process, ...).
Models are built the way empanada's ``scripts/export_model.py`` builds what empanada-napari runs:
the Quantizable* model, ``fuse_model()``, ``torch.jit.script`` (fp32), and for the int8 path
``prepare_quantization`` / ``convert`` with fbgemm (tests/peer/empanada_peer.py does the same).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np
import torch

# MODEL sections of empanada's projects/mitonet/configs/mmm_panoptic_{deeplab,bifpn}_pointrend.yaml
PDL = dict(
    encoder="resnet50", num_classes=1, stage4_stride=16, decoder_channels=256, low_level_stages=[1],
    low_level_channels_project=[32], atrous_rates=[2, 4, 6], aspp_channels=None, aspp_dropout=0.5,
    ins_decoder=True, ins_ratio=0.5,
)  # fmt: skip
PR = dict(
    num_fc=3, train_num_points=1024, oversample_ratio=3, importance_sample_ratio=0.75, subdivision_steps=2,
    subdivision_num_points=8192,
)  # fmt: skip
BIFPN = dict(PDL, fpn_dim=160, fpn_layers=3, confidence_head=False, confidence_bins=5)
ENGINE = dict(thing_list=[1], label_divisor=1000, stuff_area=64, void_label=0, nms_threshold=0.1, nms_kernel=7,
              confidence_thr=0.5)  # fmt: skip


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config(arch: str, pointrend: bool, encoder: str, fpn_dim: int | None = None) -> tuple[str, dict]:
    cfg = dict(BIFPN if arch == "PanopticBiFPN" else PDL, encoder=encoder)
    if fpn_dim:
        cfg["fpn_dim"] = fpn_dim
    if pointrend:
        cfg.update(PR)
    return arch + ("PR" if pointrend else ""), cfg


def randomize_bn(model: torch.nn.Module) -> None:
    """Random BatchNorm statistics, so that folding them changes every convolution."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


def job_setup(a: dict) -> dict:
    """Random-init empanada model: its eager state dict (for empanada_nb), fp32 and int8 TorchScript."""
    from empanada.models import quantization as qm

    name, cfg = config(a["arch"], a["pointrend"], a["encoder"])
    torch.manual_seed(0)
    model = qm.__dict__["Quantizable" + name](**cfg, quantize=False)
    randomize_bn(model)
    model.eval()
    state = model.state_dict()
    torch.save({k: v.clone() for k, v in state.items()}, os.path.join(a["out"], "state.pt"))
    if a["pointrend"]:  # what empanada-napari runs: MitoNet models are PointRend ones, fused and scripted
        model.fuse_model()
        fp32 = os.path.join(a["out"], "fp32.pth")
        torch.jit.save(torch.jit.script(model), fp32)
    else:  # the quantizable non-PointRend models return 1/4-resolution outputs: run the eager model
        from empanada import models

        eager = models.__dict__[name](**cfg).eval()
        eager.load_state_dict(state)
        fp32 = os.path.join(a["out"], "fp32_eager.pt")
        torch.save(eager, fp32)
    res = {"fp32": fp32, "int8": None}
    if not hasattr(model, "prepare_quantization"):
        res["int8_error"] = f"empanada-dl 0.1.7 has no int8 export of {name}"
        return res
    try:
        torch.backends.quantized.engine = "fbgemm"
        q = qm.__dict__["Quantizable" + name](**cfg, quantize=True)
        q.load_state_dict(state)
        q.eval()
        q.fuse_model()
        q.fix_qconfig("fbgemm")
        q.prepare_quantization()
        with torch.no_grad():
            q(torch.from_numpy(np.load(a["x"])))  # calibration on the benchmark input
        torch.quantization.convert(q, inplace=True)
        res["int8"] = os.path.join(a["out"], "int8.pth")
        torch.jit.save(torch.jit.script(q), res["int8"])
    except Exception as e:  # no fbgemm on this platform: no int8 row
        res["int8_error"] = f"{e.__class__.__name__}: {e}"
    return res


def _load(pth: str):
    if pth.endswith(".pt"):
        return torch.load(pth, map_location="cpu", weights_only=False).eval()
    return torch.jit.load(pth, map_location="cpu").eval()


def job_forward(a: dict) -> dict:
    model = _load(a["pth"])
    x = torch.from_numpy(np.load(a["x"]))
    times = []
    with torch.no_grad():
        out = model(x)  # warm-up (TorchScript profiles its first calls)
        if a.get("save"):
            np.save(a["save"], torch.cat([out["sem_logits"], out["ctr_hmp"], out["offsets"]], 1).numpy())
        for _ in range(a["repeats"]):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return {"times": times}


def _engine_input(image: np.ndarray, norms: dict, pf: int) -> torch.Tensor:
    """empanada-napari's 2D path: scale to [0, 1], normalize with the model's norms, pad to the factor."""
    x = (image.astype(np.float32) / 255.0 - norms["mean"]) / norms["std"]
    h, w = x.shape
    ph, pw = -h % pf, -w % pf
    x = np.pad(x, ((0, ph), (0, pw)), mode="reflect") if ph or pw else x
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]


def job_e2e(a: dict) -> dict:
    from empanada.inference.engines import PanopticDeepLabEngine

    model = _load(a["pth"])
    engine = PanopticDeepLabEngine(model, **ENGINE)
    image = np.load(a["image"])
    times, pan = [], None
    for i in range(a["repeats"] + 1):
        t = time.perf_counter()
        x = _engine_input(image, a["norms"], a["padding_factor"])
        pan = engine(x).squeeze().numpy()[: image.shape[0], : image.shape[1]]
        if i:
            times.append(time.perf_counter() - t)
    np.save(a["save"], pan.astype(np.int64))
    return {"times": times}


def job_stack(a: dict) -> dict:
    """Every slice through PanopticDeepLabEngine3d (median queue of 1) and empanada's slice tracker."""
    from empanada.inference.engines import PanopticDeepLabEngine3d

    model = _load(a["pth"])
    vol = np.load(a["volume"], mmap_mode="r")
    engine = PanopticDeepLabEngine3d(model, **ENGINE, median_kernel_size=1)
    tracker = None
    try:
        from empanada.inference.tracker import InstanceTracker

        tracker = InstanceTracker(class_id=1, label_divisor=1000, shape3d=vol.shape, axis_name="xy")
    except Exception:
        pass
    t = time.perf_counter()
    for z in range(vol.shape[0]):
        pan = engine(_engine_input(np.asarray(vol[z]), a["norms"], a["padding_factor"]))
        if pan is not None and tracker is not None:
            try:
                tracker.update(pan.squeeze()[: vol.shape[1], : vol.shape[2]].numpy().astype(np.int64), z)
            except Exception:
                tracker = None
    dt = time.perf_counter() - t
    return {"times": [dt], "slices": int(vol.shape[0]), "tracker": tracker is not None}


def job_train_step(a: dict) -> dict:
    """One AdamW step of empanada's PanopticLoss, encoder frozen for layers 'none' (empanada-napari's finetune)."""
    from empanada import models
    from empanada.losses import PanopticLoss

    name, cfg = config(a["arch"], False, a["encoder"], a.get("fpn_dim"))
    torch.manual_seed(0)
    model = models.__dict__[name](**cfg)
    if a["layers"] == "none":
        for n, p in model.named_parameters():
            if n.startswith("encoder"):
                p.requires_grad = False
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    crit = PanopticLoss()
    n, s = a["batch_size"], a["size"]
    x = torch.randn(n, 1, s, s)
    tgt = {
        "sem": (torch.rand(n, s, s) > 0.8).float(),
        "ctr_hmp": torch.rand(n, 1, s, s),
        "offsets": torch.randn(n, 2, s, s),
    }
    times = []
    for i in range(a["repeats"] + 1):
        t = time.perf_counter()
        loss, _ = crit(model(x), tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return {"times": times}


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    job, args = sys.argv[1], json.loads(sys.argv[2])
    res = globals()[f"job_{job}"](args)
    res["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
