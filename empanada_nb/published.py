"""The models empanada publishes, by name: the configs empanada-napari 1.2.4 bundles.

Copied from ``empanada_napari/configs/{MitoNet_v1,MitoNet_v1_mini,DropNet_base_v1,NucleoNet_base_v2}.yaml``
of empanada-napari 1.2.4 (PyPI), with the weight URLs split into :data:`PUBLISHED_BASE` and a path, so
that tests can point them at a local server. ``architecture`` is not in those files: it comes from
empanada's project configs (MitoNet) and the weight file names (DropNet, NucleoNet). empanada publishes
no checksums, so ``sha256`` is None (fill it in to have downloads verified).
"""

from __future__ import annotations

import copy
from typing import Any

#: Where the published weights live (Zenodo). Tests monkeypatch this to a 127.0.0.1 server.
PUBLISHED_BASE = "https://zenodo.org"

_FINETUNE = {
    "criterion": "PanopticLoss",
    "criterion_params": {"ce_weight": 1, "l1_weight": 0.01, "mse_weight": 200, "pr_weight": 1, "top_k_percent": 0.2},
    "dataset_class": "SingleClassInstanceDataset",
    "dataset_params": {"weight_gamma": 0.7},
    "engine": "PanopticDeepLabEngine",
    "engine_params": {
        "confidence_thr": 0.5,
        "label_divisor": 1000,
        "nms_kernel": 7,
        "nms_threshold": 0.1,
        "stuff_area": 64,
        "thing_list": [1],
        "void_label": 0,
    },
}
_NORMS = {"mean": 0.57571, "std": 0.12765}
_PREPRINT = "Read the preprint: https://www.biorxiv.org/content/10.1101/2022.03.17.484806"
_DLPR = "records/{rec}/files/PanopticDeepLabPR_{uid}_panoptic_deeplab_pointrend{q}.pth?download=1"


def _entry(arch: str, cls: str, model: str, quantized: str, padding: int, description: str) -> dict[str, Any]:
    return {
        "architecture": arch,
        "sha256": None,
        "config": {
            "class_names": {1: cls},
            "labels": [1],
            "thing_list": [1],
            "model": model,
            "model_quantized": quantized,
            "padding_factor": padding,
            "norms": dict(_NORMS),
            "description": description,
            "FINETUNE": copy.deepcopy(_FINETUNE),
        },
    }


PUBLISHED: dict[str, dict[str, Any]] = {
    "MitoNet_v1": _entry(
        "PanopticDeepLabPR (ResNet-50)",
        "mito",
        "record/6861565/files/MitoNet_v1.pth?download=1",
        "record/6861565/files/MitoNet_v1_quantized.pth?download=1",
        16,
        "MitoNet_v1 was trained on the large CEM-MitoLab dataset and is a generalist for mitochondrial "
        "segmentation. The underlying architecture is PanopticDeeplab. This model is fairly large but powerful. "
        f"If GPU memory is a limitation, try using MitoNet_v1_mini instead. {_PREPRINT}",
    ),
    "MitoNet_v1_mini": _entry(
        "PanopticBiFPNPR (ResNet-50)",
        "mito",
        "record/6861565/files/MitoNet_v1_mini.pth?download=1",
        "record/6861565/files/MitoNet_v1_mini_quantized.pth?download=1",
        128,
        "MitoNet_v1_mini was trained on the large CEM-MitoLab dataset and is a generalist for mitochondrial "
        "segmentation. The underlying architecture is PanopticBiFPN, which is very parameter efficient and "
        f"trains and predicts slightly faster than the full MitoNet model. {_PREPRINT}",
    ),
    "DropNet_base_v1": _entry(
        "PanopticDeepLabPR",
        "lipid",
        _DLPR.format(rec=15298854, uid="b0d99498-6c99-4b45-844e-2b4dca58f24a", q=""),
        _DLPR.format(rec=15298854, uid="b0d99498-6c99-4b45-844e-2b4dca58f24a", q="_quantized"),
        512,
        "DropNet was fine-tuned on a curated dataset of ~2,000 images and specializes in segmenting lipid "
        "droplets while ignoring look-alike granules. The underlying architecture is Panoptic DeepLab, allowing "
        "it to separate tightly clustered droplets and handle variable staining patterns.",
    ),
    "NucleoNet_base_v2": _entry(
        "PanopticDeepLabPR",
        "nuclei",
        _DLPR.format(rec=18142651, uid="5f023685-7433-404c-9f3d-692898aff9ab", q=""),
        _DLPR.format(rec=18142651, uid="5f023685-7433-404c-9f3d-692898aff9ab", q="_quantized"),
        512,
        "NucleoNet was trained on a massive heterogeneous dataset of >30,000 images and is a generalist for "
        "nuclear segmentation in EM. The underlying architecture is Panoptic DeepLab, capable of robust "
        "instance segmentation in 2D and 3D across diverse modalities",
    ),
}


def published_names() -> list[str]:
    """Names of the models empanada publishes.

    Returns
    -------
    list of str
        ``["MitoNet_v1", "MitoNet_v1_mini", ...]``.

    Examples
    --------
    >>> "MitoNet_v1_mini" in published_names()
    True
    """
    return list(PUBLISHED)


def published_config(name: str) -> dict[str, Any]:
    """empanada's YAML config of a published model, with absolute URLs.

    Parameters
    ----------
    name : str
        One of :func:`published_names`.

    Returns
    -------
    dict
        The config as empanada-napari ships it (``model``/``model_quantized`` are URLs).

    Examples
    --------
    >>> published_config("MitoNet_v1")["padding_factor"]
    16
    """
    cfg = copy.deepcopy(PUBLISHED[name]["config"])
    base = PUBLISHED_BASE.rstrip("/")
    for key in ("model", "model_quantized"):
        cfg[key] = f"{base}/{cfg[key]}"
    return cfg
