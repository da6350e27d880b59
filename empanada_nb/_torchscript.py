"""TorchScript of an empanada_nb model with tensor outputs, checked against the eager model.

bioimage.io (and any TorchScript consumer) needs tensors, not the model contract's dict, so
``TensorOutputs`` returns ``(sem_logits, ctr_hmp, offsets)``. The models' code is not scriptable
(dict outputs, tuple annotations), so ``to_torchscript`` traces it, scripting PointRend's
refinement, whose number of points depends on the input size (tracing would freeze it).
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.pointrend import PointRendSemSegHead, point_sample, uncertainty

OUTPUT_IDS = ("sem_logits", "ctr_hmp", "offsets")
"""Output tensor ids of an exported package, in the order ``TensorOutputs`` returns them."""


class TensorOutputs(nn.Module):
    """Wrap an empanada_nb model so that it returns ``(sem_logits, ctr_hmp, offsets)`` instead of a dict.

    Parameters
    ----------
    model : nn.Module
        A model following the empanada_nb model contract (see ``docs/dev/architecture.md``).

    Examples
    --------
    >>> import torch
    >>> import empanada_nb as enb
    >>> from empanada_nb._torchscript import TensorOutputs
    >>> net = TensorOutputs(enb.build_model("PanopticDeepLab", "resnet18")).eval()
    >>> with torch.no_grad():
    ...     sem, ctr, off = net(torch.zeros(1, 1, 64, 64))
    >>> tuple(off.shape)
    (1, 2, 64, 64)
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out["sem_logits"], out["ctr_hmp"], out["offsets"]


class _ScriptedPointRend(nn.Module):
    """PointRend inference (the eval branch of ``PointRendSemSegHead.forward``) in TorchScript.

    Tracing bakes ``min(h * w, num_points)`` in as the size it was traced at, so the refinement is
    scripted and the rest of the network traced around it (``torch.jit.trace`` keeps the control
    flow of scripted submodules).
    """

    def __init__(self, head: PointRendSemSegHead):
        super().__init__()
        self.fc = head.fc
        self.predictor = head.predictor
        self.steps = int(head.subdivision_steps)
        self.num_points = int(head.subdivision_num_points)

    def point_head(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        x = torch.cat([fine, coarse], 1)
        for fc in self.fc:
            x = torch.cat([F.relu(fc(x)), coarse], 1)
        return self.predictor(x)

    def forward(self, coarse: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        logits = coarse
        for _ in range(self.steps):
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            n, c, h, w = logits.shape
            unc = uncertainty(logits).view(n, h * w)
            p = min(h * w, self.num_points)
            idx = torch.topk(unc, p, dim=1)[1]
            coords = torch.stack(
                [((idx % w).float() + 0.5) / w, (torch.div(idx, w, rounding_mode="floor").float() + 0.5) / h], -1
            )
            pl = self.point_head(point_sample(features, coords), point_sample(coarse, coords))
            logits = logits.reshape(n, c, h * w).scatter(2, idx.unsqueeze(1).expand(-1, c, -1), pl).view(n, c, h, w)
        return logits


class _PointRendAsDict(nn.Module):
    """Stands in for ``model.semantic_pr`` while tracing: the scripted refinement, the head's output dict."""

    def __init__(self, head: PointRendSemSegHead):
        super().__init__()
        self.refine = torch.jit.script(_ScriptedPointRend(head))

    def forward(self, coarse: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"sem_seg_logits": self.refine(coarse, features)}


def to_torchscript(net: TensorOutputs, example: torch.Tensor, check_size: int) -> torch.jit.ScriptModule:
    """TorchScript of ``net`` (eval mode), checked against eager outputs at two input sizes.

    Scripts it when the model code allows; otherwise traces it at ``example``, with PointRend's
    refinement scripted, and checks an input grown by ``check_size`` pixels so a shape frozen by the
    tracer cannot go unnoticed.

    Parameters
    ----------
    net : TensorOutputs
        The wrapped model, in eval mode, on the CPU.
    example : torch.Tensor
        A (1, 1, H, W) normalized input with H, W divisible by the padding factor.
    check_size : int
        Pixels added to H and W for the second check (the padding factor).

    Returns
    -------
    torch.jit.ScriptModule

    Raises
    ------
    RuntimeError
        If the TorchScript module's outputs differ from the eager ones.

    Examples
    --------
    >>> import torch
    >>> import empanada_nb as enb
    >>> from empanada_nb._torchscript import TensorOutputs, to_torchscript
    >>> net = TensorOutputs(enb.build_model("PanopticDeepLab", "resnet18")).eval()
    >>> ts = to_torchscript(net, torch.zeros(1, 1, 64, 64), 16)
    >>> [tuple(t.shape) for t in ts(torch.zeros(1, 1, 32, 48))]
    [(1, 1, 32, 48), (1, 1, 32, 48), (1, 2, 32, 48)]
    """
    try:
        ts = torch.jit.script(net)
    except Exception:  # the model code is not scriptable (dict outputs, tuple annotations): trace it
        traced = copy.deepcopy(net)
        head = getattr(traced.model, "semantic_pr", None)
        if isinstance(head, PointRendSemSegHead):
            traced.model.semantic_pr = _PointRendAsDict(head)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            ts = torch.jit.trace(traced, example, check_trace=False)
    bigger = F.pad(example, (0, check_size, 0, check_size), mode="replicate")
    with torch.no_grad():
        for x in (example, bigger):
            for name, a, b in zip(OUTPUT_IDS, net(x), ts(x)):
                if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-4):
                    raise RuntimeError(
                        f"TorchScript export differs from the model on {name} at input {tuple(x.shape)}; "
                        "the model's forward cannot be scripted or traced faithfully"
                    )
    return ts
