"""OME-NGFF metadata: read ``multiscales`` (versions 0.1-0.5) and write it (0.4), with zarr alone.

Follows the specification at https://ngff.openmicroscopy.org/0.4/ (``multiscales``, ``axes``,
``coordinateTransformations``, ``image-label``) and /0.5/ (the same under an ``"ome"`` key of a
zarr v3 group). The ``ome-zarr`` package is not needed to read or write it; the tests check that
its reader agrees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

#: the version we write (zarr v2 stores, which every OME-Zarr reader of today opens)
WRITE_VERSION = "0.4"
#: spatial axes of a volume, in our (Z, Y, X) order
SPACE = ("z", "y", "x")
#: unit spellings seen in TIFF/ImageJ metadata -> the UDUNITS-2 names NGFF requires
UNITS = {
    "micron": "micrometer",
    "microns": "micrometer",
    "um": "micrometer",
    "µm": "micrometer",
    "\\u00b5m": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "angstrom": "angstrom",
}


def unit_name(unit: str | None) -> str | None:
    """``unit`` in NGFF's spelling (``"um"`` -> ``"micrometer"``); None for an empty or pixel unit."""
    if not unit or str(unit).strip().lower() in ("", "pixel", "pixels", "none"):
        return None
    u = str(unit).strip()
    return UNITS.get(u.lower(), UNITS.get(u, u))


def ome_attrs(attrs: Mapping) -> dict:
    """A group's OME metadata: NGFF 0.5 nests it under ``"ome"``, earlier versions do not."""
    attrs = dict(attrs)
    ome = attrs.get("ome")
    return dict(ome) if isinstance(ome, Mapping) else attrs


@dataclasses.dataclass
class Multiscale:
    """The first ``multiscales`` entry of a group, resolved.

    ``axes`` are the names of all axes (None when the metadata has none: NGFF 0.1/0.2), ``types``
    their types, ``units`` their units, ``scales`` each dataset's scale per axis (the dataset's
    ``scale`` times the multiscale's own, None where the metadata has no scale).
    """

    paths: list[str]
    axes: list[str] | None
    types: list[str | None]
    units: list[str | None]
    scales: list[list[float] | None]
    version: str | None
    name: str | None


def _scale_of(transforms: Any) -> list[float] | None:
    for t in transforms or []:
        if isinstance(t, Mapping) and t.get("type") == "scale" and "scale" in t:
            return [float(s) for s in t["scale"]]
    return None


def parse_multiscales(attrs: Mapping) -> Multiscale | None:
    """The first ``multiscales`` entry of a group's attributes, or None when there is none."""
    ome = ome_attrs(attrs)
    entries = ome.get("multiscales")
    if not entries or not isinstance(entries, Sequence):
        return None
    ms = entries[0]
    datasets = ms.get("datasets") or []
    paths = [str(d["path"]) for d in datasets if isinstance(d, Mapping) and "path" in d]
    if not paths:
        return None
    axes, types, units = None, [], []
    raw_axes = ms.get("axes")
    if raw_axes:
        # 0.3: a list of names; 0.4+: a list of {"name", "type", "unit"}
        axes = [a["name"] if isinstance(a, Mapping) else str(a) for a in raw_axes]
        types = [a.get("type") if isinstance(a, Mapping) else None for a in raw_axes]
        units = [a.get("unit") if isinstance(a, Mapping) else None for a in raw_axes]
    outer = _scale_of(ms.get("coordinateTransformations"))
    scales = []
    for d in datasets:
        s = _scale_of(d.get("coordinateTransformations"))
        if s is not None and outer is not None and len(outer) == len(s):
            s = [a * b for a, b in zip(s, outer)]
        scales.append(s)
    version = ms.get("version") or ome.get("version")
    return Multiscale(paths, axes, types, units, scales, version, ms.get("name"))


def axes_meta(ndim: int, unit: str | None) -> list[dict]:
    """NGFF 0.4 ``axes`` of a ``(Z, Y, X)`` volume or ``(Y, X)`` image."""
    out = []
    for name in SPACE[-ndim:]:
        a = {"name": name, "type": "space"}
        if unit:
            a["unit"] = unit
        out.append(a)
    return out


def multiscales_meta(
    paths: Sequence[str],
    factors: Sequence[Sequence[float]],
    voxel_size: Sequence[float] | None,
    unit: str | None,
    name: str,
    method: str,
) -> dict:
    """The NGFF 0.4 ``multiscales`` attribute of a pyramid whose level ``i`` is ``factors[i]`` times coarser."""
    ndim = len(factors[0])
    base = [float(v) for v in voxel_size] if voxel_size is not None else [1.0] * ndim
    datasets = [
        {"path": p, "coordinateTransformations": [{"type": "scale", "scale": [b * f for b, f in zip(base, fac)]}]}
        for p, fac in zip(paths, factors)
    ]
    return {
        "multiscales": [
            {
                "version": WRITE_VERSION,
                "name": name,
                "axes": axes_meta(ndim, unit_name(unit)),
                "datasets": datasets,
                "type": method,
                "metadata": {"method": method, "description": "empanada_nb.omezarr"},
            }
        ]
    }
