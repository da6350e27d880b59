"""Runs INSIDE the empanada-dl 0.1.7 virtual environment (benchmarks/peer_venv.py), driven by
tests/test_empanada_interop.py through .npy/.json files.

  build OUT IMAGE_NPY   build random-init MitoNet_v1 (PanopticDeepLabPR) and MitoNet_v1_mini
                        (PanopticBiFPNPR) models, export them exactly as empanada's
                        scripts/export_model.py does (Quantizable* model, fuse_model(), torch.jit.script,
                        torch.jit.save, YAML) plus an .empanada archive as empanada-napari 1.2.4's
                        _export_import_models.py writes it, then run each through
                        PanopticDeepLabEngine on IMAGE_NPY (already normalized, (1, 1, H, W)).
  run IMAGE_NPY OUT PTH...  torch.jit.load models (ours or theirs) and run each the same way.
  train PTH IMAGE_NPY OUT   one finetuning step on a TorchScript model as empanada-napari does.

Each run writes OUT/<name>_{sem_logits,ctr_hmp,offsets,pan}.npy.
"""

import json
import os
import sys
import zipfile

import numpy as np
import torch
import yaml
from empanada.inference.engines import PanopticDeepLabEngine
from empanada.models import quantization as qm

# MODEL sections of empanada's projects/mitonet/configs/mmm_panoptic_{deeplab,bifpn}_pointrend.yaml
PDL = dict(
    arch="PanopticDeepLabPR", encoder="resnet50", num_classes=1, stage4_stride=16, decoder_channels=256,
    low_level_stages=[1], low_level_channels_project=[32], atrous_rates=[2, 4, 6], aspp_channels=None,
    aspp_dropout=0.5, ins_decoder=True, ins_ratio=0.5, num_fc=3, train_num_points=1024, oversample_ratio=3,
    importance_sample_ratio=0.75, subdivision_steps=2, subdivision_num_points=8192,
)  # fmt: skip
BIFPN = dict(PDL, arch="PanopticBiFPNPR", fpn_dim=160, fpn_layers=3, confidence_head=False, confidence_bins=5)
ENGINE = dict(thing_list=[1], label_divisor=1000, stuff_area=64, void_label=0, nms_threshold=0.1, nms_kernel=7,
              confidence_thr=0.5)  # fmt: skip


def randomize(model, x):
    """Make a random-init model produce informative outputs: random BN statistics (so fusing matters),
    then last-layer scales so semantics cross 0.5, heatmaps have peaks above 0.1 and offsets span pixels."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(2)
    for name, m in model.named_modules():  # empanada inits decoder convs with std 0.001: features vanish
        if not name.startswith("encoder") and isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    model.eval()
    heads = (
        (model.semantic_head.head[1], model.semantic_head, 4.0, 0.0),
        (model.ins_center.head[1], model.ins_center, 0.3, -0.4),  # heatmap peaks above 0.1 at ~1.7 sigma
        (model.ins_xy.head[1], model.ins_xy, 6.0, 0.0),
    )
    calibrate(model, x, heads, (0, 2, 3))
    pr = model.semantic_pr.point_head
    calibrate(model, x, ((pr.predictor, pr, 4.0, 0.0),), (0, 2))  # refined points as decisive as the rest
    return model


def calibrate(model, x, heads, dims):
    """Rescale each head's last conv per output channel so its output has the given std and mean."""
    seen = {}
    hooks = [mod.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o)) for k, (_, mod, _, _) in
             enumerate(heads)]  # fmt: skip
    with torch.no_grad():
        model(x)
        for k, (conv, _, std, mean) in enumerate(heads):
            o = seen[k]
            s = std / o.std(dim=dims).clamp_min(1e-12)
            conv.weight.mul_(s.view(-1, *([1] * (conv.weight.ndim - 1))))
            conv.bias.copy_((conv.bias - o.mean(dim=dims)) * s + mean)
    for h in hooks:
        h.remove()


def export(cfg, name, out, x):
    """empanada's scripts/export_model.py, minus the CUDA and the training checkpoint."""
    torch.manual_seed(0)
    model = qm.__dict__["Quantizable" + cfg["arch"]](**cfg, quantize=False)
    randomize(model, x)
    state = model.state_dict()
    model = qm.__dict__["Quantizable" + cfg["arch"]](**cfg, quantize=False)
    model.load_state_dict(state)
    model.eval()
    model.fuse_model()
    scripted = torch.jit.script(model)
    pth = os.path.join(out, f"{name}.pth")
    torch.jit.save(scripted, pth)
    desc = {
        "model": pth,
        "model_quantized": None,
        "norms": {"mean": 0.57571, "std": 0.12765},
        "padding_factor": 128 if "BiFPN" in cfg["arch"] else 16,
        "thing_list": [1],
        "labels": [1],
        "class_names": {1: "mito"},
        "description": f"random-init {cfg['arch']} built by empanada-dl for the interop test",
        "FINETUNE": {
            "dataset_class": "SingleClassInstanceDataset",
            "dataset_params": {"weight_gamma": 0.7},
            "criterion": "PanopticLoss",
            "criterion_params": {"ce_weight": 1, "mse_weight": 200, "l1_weight": 0.01, "top_k_percent": 0.2,
                                 "pr_weight": 1},
            "engine": "PanopticDeepLabEngine",
            "engine_params": ENGINE,
        },
    }  # fmt: skip
    if "BiFPN" in cfg["arch"]:
        desc["model_quantized"] = quantize(cfg, state, out, name, x)
    with open(os.path.join(out, f"{name}.yaml"), "w") as f:
        yaml.dump(desc, f)
    if "BiFPN" not in cfg["arch"]:
        return pth  # (the test reads MitoNet_v1 from its YAML; no need for a second 220 MB copy)
    # .empanada as empanada-napari 1.2.4's export widget writes it: the YAML names files by base name
    arch_cfg = dict(desc, model=f"{name}.pth")
    if desc["model_quantized"]:
        arch_cfg["model_quantized"] = os.path.basename(desc["model_quantized"])
    with zipfile.ZipFile(os.path.join(out, f"{name}.empanada"), "w") as z:
        z.writestr(f"{name}.yaml", yaml.dump(arch_cfg))
        z.write(pth, f"{name}.pth")
        if desc["model_quantized"]:
            z.write(desc["model_quantized"], arch_cfg["model_quantized"])
    return pth


def quantize(cfg, state, out, name, x):
    """The --quantize branch of export_model.py (calibrated on the test image instead of the training set)."""
    try:
        torch.backends.quantized.engine = "fbgemm"
        m = qm.__dict__["Quantizable" + cfg["arch"]](**cfg, quantize=True)
        m.load_state_dict(state)
        m.eval()
        m.fuse_model()
        m.fix_qconfig("fbgemm")
        m.prepare_quantization()
        with torch.no_grad():
            m(x)
        torch.quantization.convert(m, inplace=True)
        path = os.path.join(out, f"{name}_quantized.pth")
        torch.jit.save(torch.jit.script(m), path)
        return path
    except Exception as e:  # platform without fbgemm: the test then checks the fp32 fallback only
        print(f"quantization unavailable: {e.__class__.__name__}: {e}", file=sys.stderr)
        return None


def run(pth, x, out, name):
    model = torch.jit.load(pth, map_location="cpu").eval()
    with torch.no_grad():
        raw = model(x)
        pan = PanopticDeepLabEngine(model, **ENGINE)(x)
    for k in ("sem_logits", "ctr_hmp", "offsets"):
        np.save(os.path.join(out, f"{name}_{k}.npy"), raw[k].numpy())
    np.save(os.path.join(out, f"{name}_pan.npy"), pan.squeeze().numpy().astype(np.int64))


def train_step(pth, x, out):
    """One step of empanada-napari's finetune.py on a TorchScript model: freeze 'encoder' parameters
    (finetune_layer 'none'), train mode, PanopticLoss, AdamW; reports the loss and whether weights moved."""
    from empanada.losses import PanopticLoss

    model = torch.jit.load(pth, map_location="cpu")
    for name, p in model.named_parameters():
        if "encoder" in name:
            p.requires_grad = False
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sem = (x[:, 0] > 0).float()  # one class: BCE targets, as SingleClassInstanceDataset gives
    target = {"sem": sem, "ctr_hmp": torch.zeros_like(x), "offsets": torch.zeros(x.shape[0], 2, *x.shape[2:])}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    output = model(x.repeat(2, 1, 1, 1))
    target = {k: v.repeat(2, *([1] * (v.ndim - 1))) for k, v in target.items()}
    loss, aux = PanopticLoss()(output, target)
    loss.backward()
    opt.step()
    moved = {n: not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters()}
    res = {
        "loss": float(loss),
        "keys": sorted(output),
        "encoder_moved": any(v for n, v in moved.items() if "encoder" in n),
        "decoder_moved": any(v for n, v in moved.items() if "encoder" not in n),
    }
    with open(os.path.join(out, "train_step.json"), "w") as f:
        json.dump(res, f)


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cmd = sys.argv[1]
    if cmd == "build":
        out, x = sys.argv[2], torch.from_numpy(np.load(sys.argv[3]))
        info = {}
        for name, cfg in (("MitoNet_v1", PDL), ("MitoNet_v1_mini", BIFPN)):
            pth = export(cfg, name, out, x)
            run(pth, x, out, name)
            info[name] = pth
        print(json.dumps(info))
    elif cmd == "run":
        x, out = torch.from_numpy(np.load(sys.argv[2])), sys.argv[3]
        for pth in sys.argv[4:]:
            run(pth, x, out, os.path.splitext(os.path.basename(pth))[0])
    elif cmd == "train":
        train_step(sys.argv[2], torch.from_numpy(np.load(sys.argv[3])), sys.argv[4])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
