"""Export an empanada_nb model as a BioImage Model Zoo package (bioimage.io model spec 0.5).

The package is a zip holding ``rdf.yaml`` (the model description), TorchScript and
pytorch_state_dict weights, a test input (uint8) with the outputs this model gives for it, a
cover image, a README and a conda environment file. Its layout and fields follow the spec that
``bioimageio.spec`` implements (format_version 0.5.x); ``bioimageio.core.test_model`` (or the
``bioimageio test`` CLI) reruns the test input through every weights format and checks the outputs.

bioimage.io tensors are plain arrays, so the network is wrapped by ``TensorOutputs``, which
returns the three outputs of the model contract (``sem_logits``, ``ctr_hmp``, ``offsets``) as a
tuple, declared in that order as three output tensors. The panoptic postprocessing stays outside the
package (``empanada_nb.panoptic_postprocess`` turns the three outputs into instance labels).

``bioimageio.core`` is an optional dependency (``pip install empanada_nb[bioimageio]``); it is only
imported when ``export_bioimageio`` runs.
"""

from __future__ import annotations

import copy
import json
import os
import string
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn as nn
import yaml

from ._atomic import atomic_path
from ._torchscript import OUTPUT_IDS, TensorOutputs, to_torchscript
from .data.io import intensity_range
from .models import build_model

# Conrad & Narayan 2023 (the MitoNet / empanada paper), Cell Systems 14(1):58-71.e5; Panoptic-DeepLab
# (Cheng et al. 2020), PointRend (Kirillov et al. 2020) and EfficientDet's BiFPN (Tan et al. 2020) via
# their arXiv DOIs: DOIs are checked offline (a pattern), URLs would be fetched by the validator.
CITATIONS = {
    "empanada": {
        "text": "Conrad R, Narayan K (2023). Instance segmentation of mitochondria in electron microscopy images "
        "with a generalist deep learning model trained on a diverse dataset. Cell Systems 14(1):58-71.e5",
        "doi": "10.1016/j.cels.2022.12.006",
    },
    "PanopticDeepLab": {
        "text": "Cheng B et al. (2020). Panoptic-DeepLab: A Simple, Strong, and Fast Baseline for Bottom-Up "
        "Panoptic Segmentation. CVPR 2020",
        "doi": "10.48550/arXiv.1911.10194",
    },
    "PanopticBiFPN": {
        "text": "Tan M, Pang R, Le QV (2020). EfficientDet: Scalable and Efficient Object Detection. CVPR 2020",
        "doi": "10.48550/arXiv.1911.09070",
    },
    "PointRend": {
        "text": "Kirillov A et al. (2020). PointRend: Image Segmentation as Rendering. CVPR 2020",
        "doi": "10.48550/arXiv.1912.08193",
    },
}

AuthorLike = Union[str, dict]
_NAME_CHARS = set(string.ascii_letters + string.digits + "_+- ()")  # bioimage.io spec: GenericModelDescrBase.name


def bioimageio_network(
    architecture: str, encoder: str = "resnet50", num_classes: int = 1, pointrend: bool = False, **kwargs: Any
) -> nn.Module:
    """The architecture callable of an exported package's pytorch_state_dict weights.

    Parameters
    ----------
    architecture, encoder, num_classes, pointrend, **kwargs
        Passed to ``build_model`` (no pretrained weights are fetched).

    Returns
    -------
    nn.Module
        The model wrapped in ``TensorOutputs``, whose ``state_dict`` is the package's weights file.

    Examples
    --------
    >>> from empanada_nb.bioimageio import bioimageio_network
    >>> net = bioimageio_network("PanopticDeepLab", "resnet18", num_classes=2)
    >>> net.model.num_classes, all(k.startswith("model.") for k in net.state_dict())
    (2, True)
    """
    return TensorOutputs(build_model(architecture, encoder, num_classes=num_classes, pointrend=pointrend, **kwargs))


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """The test input as uint8: other dtypes are rescaled from their robust range, as inference does."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    lo, hi = intensity_range(image)
    x = (image.astype(np.float32) - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _test_image(test_image: np.ndarray | None, factor: int) -> np.ndarray:
    """A 2D uint8 image cropped (centred) to a multiple of ``factor``; synthetic EM when none is given."""
    if test_image is None:
        from .data import synthetic_image

        test_image = synthetic_image(max(128, factor), n_objects=4, seed=0)[0]
    image = np.squeeze(np.asarray(test_image))
    if image.ndim != 2:
        raise ValueError(f"test_image must be one 2D image (Y, X), got shape {np.shape(test_image)}; pass one slice")
    h, w = (s // factor * factor for s in image.shape)
    if h == 0 or w == 0:
        raise ValueError(
            f"test_image {image.shape} is smaller than the model's padding factor {factor}; use a larger crop"
        )
    y0, x0 = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return _as_uint8(image[y0 : y0 + h, x0 : x0 + w])


def _authors(authors: Sequence[AuthorLike] | None) -> list[dict]:
    if authors is None:
        return [{"name": "empanada_nb user"}]
    out = []
    for a in [authors] if isinstance(authors, (str, dict)) else authors:
        d = {"name": a} if isinstance(a, str) else dict(a)
        if not d.get("name"):
            raise ValueError(f"author {a!r} has no name; pass a name string or a dict with 'name'")
        out.append(d)
    return out


def _jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that YAML/JSON can hold (str keys, lists, plain scalars)."""
    return json.loads(json.dumps(obj, default=str))


def _channel_names(card: Any) -> list[str]:
    names = {int(k): str(v) for k, v in card.class_names.items()}
    fg = [names.get(c, f"class{c}") for c in range(1, card.num_classes + 1)]
    return fg if card.num_classes == 1 else ["background", *fg]


def _cover(image: np.ndarray, sem: np.ndarray, path: Path) -> None:
    """A 2:1 PNG: the test input beside it with the predicted foreground in magenta."""
    import matplotlib.image

    if sem.shape[0] == 1:
        fg = 1 / (1 + np.exp(-sem[0]))
    else:
        e = np.exp(sem - sem.max(0, keepdims=True))
        fg = 1 - e[0] / e.sum(0)
    gray = image.astype(np.float32) / 255
    left = np.stack([gray] * 3, -1)
    right = left * (1 - 0.5 * fg[..., None]) + 0.5 * fg[..., None] * np.array([1.0, 0.0, 1.0], np.float32)
    rgb = np.concatenate([left, right], 1)
    # upscale small test images so the cover is at least 256 px high, as the model zoo shows it
    rep = max(1, int(np.ceil(256 / rgb.shape[0])))
    rgb = np.repeat(np.repeat(rgb, rep, 0), rep, 1)
    matplotlib.image.imsave(path, np.clip(rgb * 255, 0, 255).astype(np.uint8))


def _readme(card: Any, name: str, description: str, factor: int, kwargs: dict) -> str:
    norms = card.norms
    kinds = ", ".join(
        f"{c}: {card.class_names.get(c, f'class{c}')} ({'thing' if c in card.thing_list else 'stuff'})"
        for c in range(1, card.num_classes + 1)
    )
    from .training.lineage import compact  # the dataset's files as a count: the model's card lists them

    lineage = compact(getattr(card, "lineage", None) or {})
    history = {**(card.history_summary or {}), **({"lineage": lineage} if lineage else {})}
    return f"""# {name}

{description}

Exported by empanada_nb from its own model (architecture {card.architecture}, encoder {card.encoder},
PointRend {"on" if card.pointrend else "off"}). The network follows empanada's MitoNet design
(Conrad & Narayan 2023): bottom-up panoptic segmentation as in Panoptic-DeepLab.

## Inputs
One 2D EM image, axes (batch, channel, y, x), uint8. Preprocessing (declared in rdf.yaml): scale to
[0, 1] (divide by 255), then `(x - {norms["mean"]}) / {norms["std"]}`. Height and width must be multiples of
{factor} (the padding factor): pad the image, then crop the outputs. 16-bit or float images: convert to
8 bit first (empanada_nb rescales their 0.1-99.9 percentile range).

## Outputs
Three tensors at the input's resolution, raw (no activation):
- `sem_logits`: semantic logits, channels {_channel_names(card)}
  ({"sigmoid" if card.num_classes == 1 else "softmax over channels; channel 0 is background"}).
- `ctr_hmp`: instance-centre heatmap (trained against a Gaussian with peak 1).
- `offsets`: (dy, dx) in pixels from each pixel to its instance centre.

Classes: {kinds}. Panoptic ids are `class_id * {card.label_divisor} + instance_id`. To turn the three
outputs into instance labels use empanada_nb's postprocessing (`empanada_nb.panoptic_postprocess`,
following empanada's), or load the package back into empanada_nb with
`empanada_nb.load_bioimageio("this.zip")` and run `empanada_nb.segment_image` (the state dict's
architecture callable is `empanada_nb.bioimageio.bioimageio_network`, kwargs `{kwargs}`).

## Training
{yaml.safe_dump(_jsonable(history), sort_keys=False).strip() if history else "No training history recorded."}

## Validation
The package's test input and outputs were made by empanada_nb at export; `bioimageio test` reruns
them with both weights formats. To validate the model on unseen data, segment annotated images
with `empanada_nb.segment_image` and score them with `empanada_nb.evaluate` (IoU, PQ, F1, AP).
The test image is not a measure of accuracy.

## Limitations
2D only (3D stacks are segmented slice by slice or on orthogonal planes by empanada_nb), EM images
like the training data; the outputs need empanada_nb's postprocessing to become instances.
"""


_ENVIRONMENT = """name: empanada_nb
channels:
  - pytorch
  - conda-forge
dependencies:
  - python>=3.9
  - pytorch>=1.13
  - torchvision>=0.14
  - pip
  - pip:
      - empanada_nb
"""


def export_bioimageio(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[AuthorLike] | None = None,
    test_image: np.ndarray | None = None,
    license: str = "CC-BY-4.0",
    tags: Sequence[str] = (),
) -> Path:
    """Write ``model`` as a BioImage Model Zoo package (a zip that ``bioimageio test`` accepts).

    The zip holds ``rdf.yaml`` (bioimage.io model spec 0.5), TorchScript and pytorch_state_dict
    weights, the test input (uint8) and its three outputs as ``.npy``, a 2:1 cover PNG, a README,
    a conda environment file, and the empanada_nb model card under ``config.empanada_nb``.
    It is written atomically; the model's weights and train/eval mode are not changed.

    Parameters
    ----------
    model : nn.Module
        An empanada_nb model (from ``build_model``, ``load_model``, training or finetuning).
    path : str or os.PathLike
        The zip to write (``.zip`` is appended when missing).
    name : str, optional
        Package name (5-128 letters, digits, spaces, ``_+-()``); default from the architecture.
    description : str, optional
        One paragraph; default from the model card.
    authors : sequence of str or dict, optional
        Names, or dicts with ``name`` and optionally ``affiliation``, ``email``, ``orcid``.
    test_image : np.ndarray, optional
        A 2D image, centre-cropped to a multiple of the padding factor; non-uint8 images are rescaled
        to uint8 from their robust range. Default: a synthetic EM-like image.
    license : str
        SPDX license id of the weights.
    tags : sequence of str
        Extra tags beside the default ones.

    Returns
    -------
    Path
        The zip written.

    Raises
    ------
    ValueError
        A bad name, author or test image, or a model whose outputs are ~0 on the test image (untrained:
        bioimage.io cannot test such outputs), each in one line; nothing is written then.
    ImportError
        When bioimageio.core is not installed.

    Examples
    --------
    Export a trained model (a fresh, untrained model is refused: its outputs are ~0):

    >>> import empanada_nb as enb
    >>> model = enb.load_model("my_model.pth")  # doctest: +SKIP
    >>> enb.export_bioimageio(model, "my_model.zip", authors=["Ada Lovelace"])  # doctest: +SKIP
    PosixPath('my_model.zip')

    Then check it with bioimage.io's own test: ``bioimageio test my_model.zip``.
    """
    try:
        from bioimageio.spec import InvalidDescr, ValidationContext, build_description, save_bioimageio_package
    except ImportError:
        raise ImportError("export_bioimageio needs bioimageio.core: pip install 'empanada_nb[bioimageio]'") from None
    from .model_io import card_for

    name = name or f"empanada_nb {card_for(model).architecture} {card_for(model).encoder}"
    if not (5 <= len(name) <= 128 and set(name) <= _NAME_CHARS):
        raise ValueError(
            f"name {name!r} is not a bioimage.io name: use 5-128 letters, digits, spaces or _+-() characters"
        )
    author_list = _authors(authors)
    path = Path(path)
    if path.suffix != ".zip":
        path = path.with_name(path.name + ".zip")
    card = copy.deepcopy(card_for(model))
    card.norms = dict(getattr(model, "norms", card.norms))
    factor = int(getattr(model, "padding_factor", card.padding_factor))
    image = _test_image(test_image, factor)
    kwargs = {
        "architecture": card.architecture,
        "encoder": card.encoder,
        "num_classes": int(card.num_classes),
        "pointrend": bool(card.pointrend),
        **dict(getattr(card, "model_kwargs", None) or {}),
    }
    net = TensorOutputs(copy.deepcopy(model).cpu().float()).eval()
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    try:
        bioimageio_network(**kwargs).load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(
            f"the model cannot be rebuilt from its card ({kwargs}): {str(e).splitlines()[0]}; "
            "export a model built by build_model/load_model"
        ) from None

    mean, std = float(card.norms["mean"]), float(card.norms["std"])
    # the same arithmetic as the declared preprocessing (scale_linear, fixed_zero_mean_unit_variance)
    x = image.astype(np.float32) * np.float32(1 / 255)
    x = (x - np.float32(mean)) / np.float32(std)
    xt = torch.from_numpy(x[None, None].copy())
    with torch.no_grad():
        outputs = [t.numpy() for t in net(xt)]
    for oid, arr in zip(OUTPUT_IDS, outputs):
        if np.abs(arr).max() < 1e-4:  # bioimage.io refuses such test outputs: they cannot show a mismatch
            raise ValueError(
                f"the model's {oid} is ~0 (|x| < 1e-4) everywhere on the test image, as in an untrained model; "
                "train it first or pass a test_image it responds to"
            )
    scripted = to_torchscript(net, xt, factor)

    classes = ", ".join(str(v) for v in _channel_names(card) if v != "background")
    description = (
        description
        or getattr(card, "description", "")
        or (
            f"Panoptic segmentation of {classes} in 2D electron microscopy ({card.architecture}, {card.encoder} "
            f"encoder{', PointRend' if card.pointrend else ''}), trained with empanada_nb."
        )
    )
    cites = [CITATIONS["empanada"], CITATIONS["PanopticDeepLab"]]
    if card.architecture == "PanopticBiFPN":
        cites.append(CITATIONS["PanopticBiFPN"])
    if card.pointrend:
        cites.append(CITATIONS["PointRend"])
    space = {"min": factor, "step": factor}
    out_size = {"tensor_id": "input"}
    channels = {"sem_logits": _channel_names(card), "ctr_hmp": ["center"], "offsets": ["dy", "dx"]}
    meanings = {
        "sem_logits": "semantic logits (sigmoid for one class, else softmax with channel 0 background)",
        "ctr_hmp": "instance centre heatmap",
        "offsets": "(dy, dx) offsets in pixels to the instance centre",
    }
    rdf = {
        "format_version": "0.5.12",
        "type": "model",
        "name": name,
        "description": description,
        "authors": author_list,
        "cite": cites,
        "license": license,
        "tags": sorted(
            {"electron-microscopy", "panoptic-segmentation", "instance-segmentation", "2d", "pytorch", "empanada"}
            | {str(t) for t in tags}
        ),
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "inputs": [
            {
                "id": "input",
                "description": "2D EM image, uint8",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["em"]},
                    {"type": "space", "id": "y", "size": space},
                    {"type": "space", "id": "x", "size": space},
                ],
                "test_tensor": {"source": "test_input.npy"},
                "data": {"type": "uint8", "range": [0, 255]},
                "preprocessing": [
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                    {"id": "scale_linear", "kwargs": {"gain": 1 / 255, "offset": 0.0}},
                    {"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": mean, "std": std}},
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                ],
            }
        ],
        "outputs": [
            {
                "id": oid,
                "description": meanings[oid],
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": channels[oid]},
                    {"type": "space", "id": "y", "size": {**out_size, "axis_id": "y"}},
                    {"type": "space", "id": "x", "size": {**out_size, "axis_id": "x"}},
                ],
                "test_tensor": {"source": f"test_{oid}.npy"},
                "data": {"type": "float32"},
            }
            for oid in OUTPUT_IDS
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt",
                "architecture": {
                    "callable": "bioimageio_network",
                    "import_from": "empanada_nb.bioimageio",
                    "kwargs": kwargs,
                },
                "pytorch_version": torch.__version__.split("+")[0],
                "dependencies": {"source": "environment.yaml"},
            },
            "torchscript": {
                "source": "weights_torchscript.pt",
                "pytorch_version": torch.__version__.split("+")[0],
                "parent": "pytorch_state_dict",
            },
        },
        "config": {
            "bioimageio": {"architecture_type": card.architecture, "task": "panoptic segmentation"},
            "empanada_nb": {
                "card": _jsonable(card.to_dict()),
                "padding_factor": factor,
                "outputs": list(OUTPUT_IDS),
            },
        },
    }

    with tempfile.TemporaryDirectory(prefix="empanada_nb_bioimageio_") as tmp:
        root = Path(tmp)
        np.save(root / "test_input.npy", image[None, None])
        for oid, arr in zip(OUTPUT_IDS, outputs):
            np.save(root / f"test_{oid}.npy", arr)
        torch.save(state, root / "weights.pt")
        torch.jit.save(scripted, str(root / "weights_torchscript.pt"))
        _cover(image, outputs[0][0], root / "cover.png")
        (root / "README.md").write_text(_readme(card, name, description, factor, kwargs))
        (root / "environment.yaml").write_text(_ENVIRONMENT)
        (root / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
        with ValidationContext(root=root, perform_io_checks=True, log_warnings=False):
            descr = build_description(rdf)
        if isinstance(descr, InvalidDescr):  # say which field is wrong
            errors = descr.validation_summary.errors
            first = f"{'.'.join(map(str, errors[0].loc))}: {errors[0].msg}" if errors else "unknown error"
            raise ValueError(f"the bioimage.io description is invalid: {first}")
        with atomic_path(path, suffix=".zip") as tmp_zip:
            # stored, not deflated: float weights barely compress, and inflating them dominated `bioimageio test`
            save_bioimageio_package(descr, output_path=tmp_zip, compression=zipfile.ZIP_STORED)
    return path


def load_bioimageio(path: str | os.PathLike) -> nn.Module:
    """Load a package written by ``export_bioimageio`` back as an empanada_nb model (eval mode).

    Uses the pytorch_state_dict weights and the model card kept under ``config.empanada_nb``, so
    the model has its norms, classes and card and runs through ``segment_image`` and friends.

    Parameters
    ----------
    path : str or os.PathLike
        The package zip.

    Returns
    -------
    nn.Module
        The model (dict outputs, as ``build_model`` makes it).

    Raises
    ------
    ValueError
        When ``path`` is not a package written by ``export_bioimageio``.

    Examples
    --------
    >>> import empanada_nb as enb
    >>> model = enb.load_bioimageio("my_model.zip")  # doctest: +SKIP
    >>> labels = enb.segment_image(model, image)  # doctest: +SKIP
    """
    from .model_io import ModelCard

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            rdf = yaml.safe_load(z.read("rdf.yaml"))
            weights = rdf["weights"]["pytorch_state_dict"]
            card = rdf["config"]["empanada_nb"]["card"]
            state = torch.load(z.open(weights["source"]), map_location="cpu", weights_only=True)
    except (OSError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{path}: not a bioimage.io package written by empanada_nb ({e.__class__.__name__}: {e}); "
            "export one with export_bioimageio"
        ) from None
    net = bioimageio_network(**weights["architecture"]["kwargs"])
    net.load_state_dict(state)
    model = net.model
    model.card = ModelCard.from_dict(card)
    model.norms = dict(model.card.norms)
    model.finetunable_layers = model.card.finetunable_layers
    return model.eval()
