"""Training-step throughput and peak memory: images/s for bs 16, 256^2, ResNet-50, each
architecture, finetunable layers "none" and "all", each step precision (fp32 and what ``amp=True``
runs on the device: fp16 on CUDA, bf16 on AVX512-BF16/AMX CPUs). Prints figures; not a test.

    python benchmarks/train_step.py [--steps 3] [--batch-size 16] [--size 256] [--device cuda]
                                    [--encoder resnet50] [--precisions fp32 auto]

The baseline in the same run is the forward pass alone (inference throughput), so the ratio
says what backward + optimizer cost on this machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np
import torch

import empanada_nb as enb
from empanada_nb.losses import PanopticLoss
from empanada_nb.precision import PRECISIONS, resolve_precision
from empanada_nb.training.loop import make_optimizer, set_train_mode


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(arch, layers, args, device, precision="fp32"):
    model = enb.build_model(arch, args.encoder).to(device)
    trainable = enb.set_finetunable(model, layers)
    cfg = enb.TrainConfig()
    opt = make_optimizer(model, cfg)
    crit = PanopticLoss()
    n, s = args.batch_size, args.size
    x = torch.randn(n, 1, s, s, device=device)
    tgt = {
        "sem": (torch.rand(n, s, s, device=device) > 0.8).long(),
        "ctr_hmp": torch.rand(n, 1, s, s, device=device),
        "offsets": torch.randn(n, 2, s, s, device=device),
        "thing": torch.rand(n, s, s, device=device) > 0.8,
    }
    prec = resolve_precision(precision, device)  # as train() resolves TrainConfig.amp ("auto") or amp=False
    amp = device.type == "cuda"  # CUDA: synchronise and report GPU memory
    if cfg.channels_last:  # as train() runs it: NHWC on every device
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if amp:
        torch.cuda.reset_peak_memory_stats()
    scaler = torch.amp.GradScaler("cuda", enabled=prec.dtype is torch.float16)
    times = []
    set_train_mode(model, False)
    for i in range(args.steps + 1):
        if amp:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with prec.autocast(device):
            out = model(x)
        loss, _ = crit(out, tgt)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if amp:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    model.eval()
    with torch.inference_mode(), prec.autocast(device):
        t = time.perf_counter()
        model(x)
        if amp:
            torch.cuda.synchronize()
        fwd = time.perf_counter() - t
    mem = torch.cuda.max_memory_allocated() / 2**20 if amp else peak_rss_mb()
    step = float(np.median(times))
    print(
        f"{arch:16s} {layers:5s} {prec.name:4s} trainable {trainable / 1e6:6.2f} M  step {step:6.2f} s  "
        f"{n / step:7.2f} img/s  forward-only {n / fwd:7.2f} img/s  (train/forward {fwd / step:.2f})  "
        f"peak {'GPU' if amp else 'RSS'} {mem:8.0f} MiB",
        flush=True,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--encoder", default="resnet50")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=["fp32", "auto"],
        help="step precisions to compare: fp32 is train(amp=False), auto is the default amp=True",
    )
    args = p.parse_args()
    device = torch.device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"batch {args.batch_size} x {args.size}^2, encoder {args.encoder}"
    )
    # each configuration in a fresh process, so that peak RSS is that configuration's own
    ctx = mp.get_context("spawn")
    for arch in ("PanopticDeepLab", "PanopticBiFPN"):
        for layers in ("none", "all"):
            for precision in args.precisions:
                proc = ctx.Process(target=bench, args=(arch, layers, args, device, precision))
                proc.start()
                proc.join()


if __name__ == "__main__":
    main()
