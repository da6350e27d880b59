"""An eval-only copy of a model for inference: BatchNorm folded into the convolution before it.

In eval mode a BatchNorm is a per-channel affine map, so it folds into the preceding convolution's
weight and bias (Ioffe & Szegedy 2015; ``torch.nn.utils.fusion.fuse_conv_bn_eval``), the same
fusion empanada's ``fuse_model()`` applies before it exports (empanada ``models/quantization``).
The copy is what the inference engine runs; the user's model is never changed, so it can still
be trained, saved or exported with its BatchNorm layers.
"""

from __future__ import annotations

import copy
import re
import threading
import weakref

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fuse_for_inference", "fold_batchnorm", "is_eager"]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
# one fused copy per model, dropped with the model; rebuilt when its weights change
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _last_conv(m: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, name) of the convolution that produces ``m``'s output, when ``m`` is one or ends
    with one (``SeparableConv2d`` ends with its pointwise conv)."""
    if isinstance(m, nn.Sequential) and len(m) and isinstance(m[-1], _CONVS):
        return m, str(len(m) - 1)
    return None


def _fold(parent: nn.Module, conv_name: str, bn_owner: nn.Module, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name), getattr(bn_owner, bn_name)
    if not isinstance(conv, _CONVS) or type(bn) is not nn.BatchNorm2d or not bn.track_running_stats:
        return False
    if bn.running_mean is None or conv.out_channels != bn.num_features:
        return False
    fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
    setattr(parent, conv_name, fused)
    setattr(bn_owner, bn_name, nn.Identity())
    return True


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the convolution before it, in place; returns how many.

    Two layouts are recognised: a ``Sequential`` where a BatchNorm follows a convolution (or a
    ``Sequential`` ending in one, as ``SeparableConv2d``), and a module with children ``convK`` and
    ``bnK`` (torchvision's ResNet stem and blocks). Folded BatchNorms become ``nn.Identity``.

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place; use ``fuse_for_inference`` to keep the original.

    Returns
    -------
    int
        The number of BatchNorm layers folded.

    Examples
    --------
    >>> import torch.nn as nn
    >>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    >>> fold_batchnorm(m), type(m[1]).__name__
    (1, 'Identity')
    """
    n = 0
    for m in list(model.modules()):
        if isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if type(m[i + 1]) is not nn.BatchNorm2d:
                    continue
                if isinstance(m[i], _CONVS):
                    n += _fold(m, str(i), m, str(i + 1))
                elif (inner := _last_conv(m[i])) is not None:
                    n += _fold(inner[0], inner[1], m, str(i + 1))
        names = dict(m.named_children())
        for name in names:
            k = re.fullmatch(r"bn(\d*)", name)
            if k and f"conv{k.group(1)}" in names:
                n += _fold(m, f"conv{k.group(1)}", m, name)
    return n


def is_eager(model: nn.Module) -> bool:
    """True for a plain eager module (no TorchScript or quantized parts), which can be fused and cast."""
    return isinstance(model, nn.Module) and not any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())


def _version(model: nn.Module) -> tuple:
    # in-place updates (optimizer steps, load_state_dict, .to()) change a tensor's version or storage
    return tuple((t.data_ptr(), t._version, t.device.type) for t in model.state_dict().values())


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-only copy of ``model`` with BatchNorm folded into its convolutions, cached per model.

    The copy gives the model's eval-mode outputs to float32 rounding (about 1e-6 relative) with one
    pass over the weights fewer per BatchNorm. It is built once per model and reused until the
    model's weights or buffers change (training, ``load_state_dict``, moving it to another device);
    it holds its own weights, so it doubles the model's memory while the model lives. Models without
    BatchNorm and models that cannot be copied (TorchScript, quantized) are returned unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        A model from ``build_model``, ``load_model`` or ``train``; never modified.

    Returns
    -------
    torch.nn.Module
        The fused copy, in eval mode, without gradients (or ``model`` itself, unchanged, see above).

    Examples
    --------
    >>> import torch
    >>> import empanada_nb as enb
    >>> model = enb.build_model("PanopticDeepLab", "resnet18").eval()
    >>> fused = enb.fuse_for_inference(model)
    >>> fused is enb.fuse_for_inference(model)
    True
    >>> x = torch.randn(1, 1, 64, 64)
    >>> with torch.no_grad():
    ...     torch.allclose(model(x)["offsets"], fused(x)["offsets"], atol=1e-5)
    True
    """
    if not is_eager(model) or not any(type(m) is nn.BatchNorm2d for m in model.modules()):
        return model
    version = _version(model)
    # inference_mode(False): the copy's weights must be normal tensors even when called under inference_mode
    with _LOCK, torch.inference_mode(False):
        hit = _CACHE.get(model)
        if hit is not None and hit[0] == version:
            return hit[1]
        try:
            fused = copy.deepcopy(model)
        except Exception:  # modules that cannot be copied run as they are
            return model
        fused.eval()
        fold_batchnorm(fused)
        for p in fused.parameters():
            p.requires_grad_(False)
        _CACHE[model] = (version, fused)
        return fused
