"""Loading CEM pretrained encoder weights (Conrad & Narayan 2021, CEM500K / CEM1.5M).

The published files are dicts with ``state_dict`` in torchvision ResNet keys (3- or 1-channel
first conv) and ``norms`` = [mean, std] of the pretraining data.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

#: Published CEM weights (MoCoV2 on CEM1.5M), fetched on first use and cached by torch.hub.
CEM_URLS = {
    "cem1.5m_swav_resnet50_200ep": "https://zenodo.org/record/6453160/files/cem1.5m_swav_resnet50_200ep_balanced.pth.tar?download=1",
    "cem500k_mocov2_resnet50_200ep": "https://zenodo.org/record/6453140/files/cem500k_mocov2_resnet50_200ep.pth.tar?download=1",
}


def _read(source: str | os.PathLike) -> dict:
    source = str(source)
    if source in CEM_URLS:
        source = CEM_URLS[source]
    if source.startswith(("http://", "https://")):
        return torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=True)
    if not os.path.exists(source):
        raise FileNotFoundError(
            f"pretrained weights {source!r} not found: give a path, a URL or one of {list(CEM_URLS)}"
        )
    return torch.load(source, map_location="cpu", weights_only=False)


def load_encoder_weights(encoder: nn.Module, source: str | os.PathLike) -> dict[str, float]:
    """Load CEM-format weights into ``encoder.body``; returns the norms as {'mean', 'std'}."""
    ckpt = _read(source)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{source}: not CEM-format weights (expected a dict with 'state_dict' and 'norms')")
    sd = {k.removeprefix("module.").removeprefix("encoder."): v for k, v in ckpt["state_dict"].items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    first = encoder.body.conv1 if hasattr(encoder.body, "conv1") else encoder.body.stem[0]
    key = "conv1.weight" if hasattr(encoder.body, "conv1") else "stem.0.weight"
    if key in sd and sd[key].shape[1] != first.weight.shape[1]:
        # RGB-pretrained first conv on greyscale input: sum over colour channels keeps activations equal
        sd[key] = sd[key].sum(1, keepdim=True)
    try:
        missing, unexpected = encoder.body.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches: weights of another encoder
        raise ValueError(
            f"{source}: weights do not fit encoder {getattr(encoder, 'name', '?')}: "
            f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}"
        ) from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not fit encoder {getattr(encoder, 'name', '?')}: "
            f"missing {missing[:3]}..., unexpected {unexpected[:3]}..."
        )
    norms = ckpt.get("norms", [0.5, 0.5])
    if isinstance(norms, dict):
        return {"mean": float(norms["mean"]), "std": float(norms["std"])}
    return {"mean": float(norms[0]), "std": float(norms[1])}
