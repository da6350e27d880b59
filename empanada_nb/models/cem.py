"""Loading CEM pretrained encoder weights (Conrad & Narayan 2021, CEM500K / CEM1.5M).

The published files are dicts with ``state_dict`` in torchvision ResNet keys (3- or 1-channel
first conv) and ``norms`` = [mean, std] of the pretraining data.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

#: Published CEM weights (Conrad & Narayan: CEM1.5M SwAV, CEM500K MoCoV2), both ResNet-50, as empanada-napari's
#: ``_train.py`` uses them; fetched on first use into the model cache (see :mod:`empanada_nb.registry`).
CEM_URLS = {
    "cem1.5m_swav_resnet50_200ep": "https://zenodo.org/record/6453160/files/cem1.5m_swav_resnet50_200ep_balanced.pth.tar?download=1",
    "cem500k_mocov2_resnet50_200ep": "https://zenodo.org/record/6453140/files/cem500k_mocov2_resnet50_200ep.pth.tar?download=1",
}
#: What ``pretrained="auto"`` (TrainConfig's default) means: empanada's training guide says to always
#: start from the CEM1.5M weights, which exist for ResNet-50 only.
CEM_DEFAULT = "cem1.5m_swav_resnet50_200ep"
CEM_ENCODERS = ("resnet50",)


def resolve_pretrained(pretrained: str | os.PathLike | None, encoder: str) -> str | None:
    """The weights to load for ``encoder``, or None for random init; decided before any download.

    Parameters
    ----------
    pretrained : str, path or None
        ``"auto"``: CEM1.5M for ResNet-50, None for other encoders (which cannot take CEM weights);
        None, ``""`` or ``"none"``: random init; a name in :data:`CEM_URLS`, a path or a URL: those weights.
    encoder : str
        The encoder the weights are for.

    Returns
    -------
    str or None
        A CEM name, path or URL; None for random init.

    Examples
    --------
    >>> resolve_pretrained("auto", "resnet50"), resolve_pretrained("auto", "resnet18")
    ('cem1.5m_swav_resnet50_200ep', None)
    """
    if pretrained is None or str(pretrained).strip().lower() in ("", "none"):
        return None
    s = str(pretrained).strip()
    if s.lower() == "auto":
        return CEM_DEFAULT if encoder in CEM_ENCODERS else None
    if s in CEM_URLS and encoder not in CEM_ENCODERS:
        raise ValueError(
            f"CEM weights {s} are for ResNet-50 and encoder {encoder} cannot take them; "
            "use encoder='resnet50', or pretrained=None to train from random init"
        )
    return s


def _read(source: str | os.PathLike) -> dict:
    source = str(source)
    if source in CEM_URLS:
        source = CEM_URLS[source]
    if source.startswith(("http://", "https://")):
        from .._download import fetch, url_filename
        from ..registry import registry_dir

        name = url_filename(source)
        # weights empanada-napari or torch.hub already downloaded need no second download
        for folder in (Path(torch.hub.get_dir()) / "checkpoints", Path.home() / ".empanada" / "checkpoints"):
            if (folder / name).is_file():
                return torch.load(folder / name, map_location="cpu", weights_only=False)
        source = str(fetch(source, registry_dir() / "cem"))
    if not os.path.exists(source):
        raise FileNotFoundError(
            f"pretrained weights {source!r} not found: give a path, a URL or one of {list(CEM_URLS)}"
        )
    try:
        return torch.load(source, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(
            f"{source}: not CEM-format weights (truncated or not a torch file: {e.__class__.__name__})"
        ) from None


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
