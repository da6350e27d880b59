"""The viewer's training-patch tools: picks, context regions and saving patches (a Viewer mixin).

Thin wrappers over :mod:`empanada_nb.patches`, which holds the geometry of picks and regions and
writes the dataset; this mixin keeps them in the Viewer's synced ``picks`` and ``regions`` traits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from .. import patches as P
from ..geometry import check_axis, plane_shape, volume_to_plane


class PicksAndRegions:
    """Mixin of :class:`~empanada_nb.widgets.Viewer` (needs ``source``, ``picks``, ``regions``, ``axis``...)."""

    @t.validate("picks")
    def _valid_picks(self, proposal):
        out = []
        for p in proposal["value"]:
            if not all(k in p for k in ("axis", "z", "y", "x", "size")):
                raise t.TraitError(f"a pick needs the keys axis, z, y, x, size; got {p}")
            index, row, col = volume_to_plane(p["axis"], p["z"], p["y"], p["x"])
            norm = P.make_pick(p["axis"], int(index), row, col, p["size"], self.source.shape)
            extra = {k: v for k, v in p.items() if k not in norm}
            out.append({**norm, **extra})
        return out

    @t.validate("regions")
    def _valid_regions(self, proposal):
        out = []
        for i, r in enumerate(proposal["value"]):
            r = dict(r)
            r.setdefault("name", f"region {i + 1}")
            r.setdefault("axis", "xy")
            r.setdefault("slice", 0)
            r.setdefault("shape", "polygon")
            r.setdefault("all_slices", False)
            check_axis(r["axis"])
            if r["shape"] not in ("rectangle", "polygon"):
                raise t.TraitError(f"region shape must be 'rectangle' or 'polygon', got {r['shape']!r}")
            r["points"] = [[float(a), float(b)] for a, b in r["points"]]
            need = 2 if r["shape"] == "rectangle" else 3
            if len(r["points"]) < need:
                raise t.TraitError(f"a {r['shape']} needs at least {need} points")
            r["slice"] = int(r["slice"])
            out.append(r)
        return out

    # ------------------------------------------------------------------------------------ picks
    def add_pick(self, axis: str, index: int, row: float, col: float, size: int | None = None) -> dict:
        """Add a patch centred at ``(row, col)`` of slice ``index`` along ``axis``; returns the pick."""
        pick = P.make_pick(axis, int(index), row, col, int(size or self.patch_size), self.source.shape)
        self.picks = self.picks + [pick]
        return self.picks[-1]

    def remove_pick(self, i: int) -> None:
        picks = list(self.picks)
        del picks[i]
        self.picks = picks

    def fill_random_picks(self, n: int, size: int | None = None, seed=None) -> list[dict]:
        """Add up to ``n`` random picks inside the context regions, spread evenly across them.

        Without regions the current slice is used as one region.
        """
        regions = list(self.regions)
        if not regions:
            h, w = plane_shape(self.source.shape, self.axis)
            regions = [
                {
                    "name": "slice",
                    "axis": self.axis,
                    "slice": self.slice_index,
                    "shape": "rectangle",
                    "points": [[0, 0], [h, w]],
                }
            ]
        new = P.random_patches(
            regions, self.source.shape, n, int(size or self.patch_size), rng=seed, existing=self.picks
        )
        self.picks = self.picks + new
        return new

    # ---------------------------------------------------------------------------------- regions
    def add_region(
        self,
        points,
        shape: str = "polygon",
        name: str | None = None,
        axis: str | None = None,
        slice: int | None = None,
        all_slices: bool = False,
    ) -> dict:
        """Add a context region drawn on slice ``slice`` along ``axis`` (current view by default)."""
        axis = check_axis(axis or self.axis)
        idx = self.slice_index if slice is None else int(slice)
        if name is None:
            used = {r["name"] for r in self.regions}
            k = len(self.regions) + 1
            while f"region {k}" in used:
                k += 1
            name = f"region {k}"
        pts = [[round(float(a), 2), round(float(b), 2)] for a, b in points]
        region = {
            "name": str(name),
            "axis": axis,
            "slice": idx,
            "shape": shape,
            "points": pts,
            "all_slices": bool(all_slices),
        }
        self.regions = self.regions + [region]
        return self.regions[-1]

    def remove_region(self, key: int | str) -> None:
        regions = list(self.regions)
        if isinstance(key, str):
            key = next(i for i, r in enumerate(regions) if r["name"] == key)
        del regions[key]
        self.regions = regions

    def context_mask(self, name: str | None = None) -> np.ndarray:
        """Boolean mask of the context regions (of the volume's shape, or of the image for 2D data).

        ``name``: only that region. Without regions the mask is all False.
        """
        regions = self.regions if name is None else [r for r in self.regions if r["name"] == name]
        if name is not None and not regions:
            raise KeyError(f"no region named {name!r}")
        return P.regions_mask(regions, self.label_shape)

    def region_masks(self) -> dict[str, np.ndarray]:
        """``{name: mask}`` for each region (masks of the volume's shape)."""
        return {r["name"]: P.region_mask(r, self.label_shape) for r in self.regions}

    def slice_roi(self, axis: str | None = None, index: int | None = None) -> np.ndarray | None:
        """2D mask of the regions on one slice (the current one by default), e.g. for
        ``segment_image(image, model, roi=viewer.slice_roi())``; None without regions."""
        if not self.regions:
            return None
        axis = axis or self.axis
        index = self.slice_index if index is None else int(index)
        return P.slice_roi(self.regions, self.source.shape, axis, index)

    def roi(self) -> np.ndarray | None:
        """The context mask when :attr:`confine_to_regions` is on and regions exist, else None."""
        return self.context_mask() if self.confine_to_regions and self.regions else None

    # --------------------------------------------------------------------------------- patches
    def save_patches(
        self, dataset_dir, name: str | None = None, model=None, layer=None, on_clash: str = "skip"
    ) -> dict[str, Any]:
        """Write the picked patches to ``dataset_dir/<name>/{images,masks}/*.tif`` (+ ``<name>_picks.json``).

        Masks come from ``layer`` (the active layer by default); a patch without labels gets
        ``model``'s prediction (or :attr:`model`'s) when one is given. Appends to an existing dataset;
        existing file names are skipped (``on_clash="skip"``) or refused (``"error"``).
        See :func:`empanada_nb.patches.save_patches`.
        """
        if not self.picks:
            raise ValueError("no picks to save: click with the pick tool or call fill_random_picks()")
        lay = self.layer(layer) if layer is not None else self._active(create=False)
        labels = None
        if lay is not None:
            labels = lay.data if lay.plane is None else None
        name = name or self.dataset_name or "patches"
        return P.save_patches(
            self.source,
            self.picks,
            dataset_dir,
            name,
            labels=labels,
            model=model if model is not None else self.model,
            on_clash=on_clash,
        )
