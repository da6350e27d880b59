"""Numeric precision of inference: what each ``precision`` choice runs, and its fallback.

- ``"fp32"``: float32 everywhere (on CUDA too), on the BatchNorm-folded model; the reference.
- ``"bf16"``: autocast to bfloat16 (weights and activations; accumulation and the outputs in
  float32). On CPUs with native bfloat16 (AMX or AVX512-BF16, e.g. Xeon Sapphire Rapids) oneDNN
  runs its convolutions in channels-last layout at several times fp32's speed; on CUDA it needs
  ``torch.cuda.is_bf16_supported()``.
- ``"fp16"``: CUDA autocast to float16 (what GPU inference ran before ``precision`` existed).
- ``"auto"``: the fastest of these the device runs natively: fp16 on CUDA, bf16 on CPUs with
  native bfloat16, else fp32.

A choice the device cannot run natively warns once (one line) and runs fp32 instead.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch

#: the ``precision`` choices of ``segment_image``, ``segment_stack`` and ``segment_ortho``
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_WARNED: set[str] = set()


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_cpu() -> bool:
    """True where this CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16) and oneDNN uses it.

    oneDNN also *emulates* bfloat16 on plain AVX512 CPUs, slower than fp32, so the flags decide.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (what runs) and the autocast dtype (None: plain fp32)."""

    name: str
    dtype: torch.dtype | None
    device_type: str = "cpu"

    @property
    def channels_last(self) -> bool:
        # NHWC everywhere: oneDNN's bf16 convolutions (AMX) and CUDA's tensor cores want it, and for fp32
        # on the CPU interleaved A/B runs of the folded PanopticDeepLab-R50 (quiet 2-core machine) gave
        # 1.16x at 512^2 and 1.34x at 1024^2 with 2 threads, 1.04x with 1; PanopticBiFPN-R50 1.5-1.8x
        return True

    def autocast(self, device: torch.device):
        """The autocast context of this precision on ``device`` (disabled for fp32)."""
        return torch.autocast(device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """What ``precision`` runs on ``device``, falling back to fp32 (one warning) where unsupported.

    Parameters
    ----------
    precision : str
        One of ``PRECISIONS``: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.
    device : torch.device
        Where the network runs.

    Returns
    -------
    Precision
        The precision that will run (``name`` "fp32", "bf16" or "fp16").

    Raises
    ------
    ValueError
        When ``precision`` is not one of ``PRECISIONS``.

    Examples
    --------
    >>> import torch
    >>> resolve_precision("fp32", torch.device("cpu")).name
    'fp32'
    >>> resolve_precision("auto", torch.device("cpu")).name in ("fp32", "bf16")
    True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cuda = device.type == "cuda"
    bf16_ok = (cuda and torch.cuda.is_bf16_supported()) or (device.type == "cpu" and native_bf16_cpu())
    if precision == "auto":
        precision = "fp16" if cuda else ("bf16" if bf16_ok else "fp32")
    if precision == "bf16" and not bf16_ok:
        _warn_once(f"precision 'bf16' is not native on this {device.type} (no AMX/AVX512-BF16); running fp32")
        precision = "fp32"
    if precision == "fp16" and not cuda:
        _warn_once(f"precision 'fp16' runs on CUDA only, not on {device.type}; running fp32")
        precision = "fp32"
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return Precision(precision, dtype, device.type)
