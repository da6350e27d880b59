"""The viewer's training-patch tools: picks, context regions and saving patches (a Viewer mixin).

Thin wrappers over ``empanada_nb.patches``, which holds the geometry of picks and regions and
writes the dataset; this mixin keeps them in the Viewer's synced ``picks`` and ``regions`` traits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from .. import patches as P
from ..geometry import check_axis, plane_shape, volume_to_plane


class PicksAndRegions:
    """Mixin of ``Viewer``: picks, context regions and saving patches.

    Needs the Viewer's ``source``, ``picks``, ``regions``, ``axis``, ``slice_index`` and
    ``patch_size``; its public methods are documented as the Viewer's.

    Examples
    --------
    >>> import numpy as np
    >>> from empanada_nb import Viewer
    >>> from empanada_nb.widgets._picking import PicksAndRegions
    >>> isinstance(Viewer(np.zeros((2, 32, 32), np.uint8)), PicksAndRegions)
    True
    """

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
        """Add a training patch centred at ``(row, col)`` of slice ``index`` along ``axis``.

        The patch is moved inside the image where it would stick out.

        Parameters
        ----------
        axis : str
            ``"xy"``, ``"xz"`` or ``"yz"``.
        index : int
            The slice along ``axis``.
        row : float
            Row of the centre on the slice.
        col : float
            Column of the centre on the slice.
        size : int, optional
            Side of the square patch (``patch_size`` by default).

        Returns
        -------
        dict
            The pick as stored in ``picks``: ``{"axis", "z", "y", "x", "size"}`` (the centre in volume
            coordinates).

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> v.add_pick("xy", 1, 16, 16, size=16)
        {'axis': 'xy', 'z': 1, 'y': 16, 'x': 16, 'size': 16}
        >>> v.add_pick("xy", 1, 0, 0, size=16)  # moved inside the image
        {'axis': 'xy', 'z': 1, 'y': 8, 'x': 8, 'size': 16}
        """
        pick = P.make_pick(axis, int(index), row, col, int(size or self.patch_size), self.source.shape)
        self.picks = self.picks + [pick]
        return self.picks[-1]

    def remove_pick(self, i: int) -> None:
        """Remove the pick at position ``i`` of ``picks``.

        Parameters
        ----------
        i : int
            Its index in ``picks`` (negative counts from the end).

        Returns
        -------
        None

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> _ = v.add_pick("xy", 0, 16, 16, size=16)
        >>> v.remove_pick(0)
        >>> v.picks
        []
        """
        picks = list(self.picks)
        del picks[i]
        self.picks = picks

    def fill_random_picks(self, n: int, size: int | None = None, seed=None) -> list[dict]:
        """Add up to ``n`` random picks inside the context regions, spread evenly across them.

        Without regions the current slice is used as one region. Picks that would overlap existing
        ones too much are left out, so fewer than ``n`` may be added.

        Parameters
        ----------
        n : int
            Number of picks wanted.
        size : int, optional
            Side of the patches (``patch_size`` by default).
        seed : int or numpy.random.Generator, optional
            Seed for reproducible picks.

        Returns
        -------
        list of dict
            The picks added (also appended to ``picks``).

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 64, 64), np.uint8))
        >>> new = v.fill_random_picks(2, size=16, seed=0)
        >>> len(new), v.picks == new, {p["z"] for p in new}
        (2, True, {1})
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
        """Add a context region drawn on slice ``slice`` along ``axis`` (the current view by default).

        Parameters
        ----------
        points : sequence of (float, float)
            ``[row, col]`` vertices of a polygon, or two opposite corners of a rectangle.
        shape : str
            ``"polygon"`` or ``"rectangle"``.
        name : str, optional
            Region name (``"region <k>"`` by default).
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        slice : int, optional
            The slice along ``axis`` (the current one by default).
        all_slices : bool
            Apply the region to every slice along ``axis``, not only to ``slice``.

        Returns
        -------
        dict
            The region as stored in ``regions``.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> v.add_region([[0, 0], [16, 16]], shape="rectangle", slice=1)
        {'name': 'region 1', 'axis': 'xy', 'slice': 1, 'shape': 'rectangle',
         'points': [[0.0, 0.0], [16.0, 16.0]], 'all_slices': False}
        """
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
        """Remove a context region by position in ``regions`` or by name.

        Parameters
        ----------
        key : int or str
            Its index in ``regions``, or its name.

        Returns
        -------
        None

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> _ = v.add_region([[0, 0], [16, 16]], shape="rectangle", name="cell")
        >>> v.remove_region("cell")
        >>> v.regions
        []
        """
        regions = list(self.regions)
        if isinstance(key, str):
            key = next(i for i, r in enumerate(regions) if r["name"] == key)
        del regions[key]
        self.regions = regions

    def context_mask(self, name: str | None = None) -> np.ndarray:
        """Boolean mask of the context regions, of ``label_shape``.

        Parameters
        ----------
        name : str, optional
            Only that region (all regions by default).

        Returns
        -------
        numpy.ndarray
            Boolean mask of the volume's shape (of the image's for 2D data); all False without regions.

        Raises
        ------
        KeyError
            When no region is called ``name``.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> _ = v.add_region([[0, 0], [16, 16]], shape="rectangle", slice=1)
        >>> mask = v.context_mask()
        >>> mask.shape, int(mask[1].sum()), int(mask[0].sum())
        ((2, 32, 32), 256, 0)
        """
        regions = self.regions if name is None else [r for r in self.regions if r["name"] == name]
        if name is not None and not regions:
            raise KeyError(f"no region named {name!r}")
        return P.regions_mask(regions, self.label_shape)

    def region_masks(self) -> dict[str, np.ndarray]:
        """One mask per context region.

        Returns
        -------
        dict of str to numpy.ndarray
            ``{name: mask}``, boolean masks of ``label_shape``.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> _ = v.add_region([[0, 0], [16, 16]], shape="rectangle", name="cell", all_slices=True)
        >>> {name: int(mask.sum()) for name, mask in v.region_masks().items()}
        {'cell': 512}
        """
        return {r["name"]: P.region_mask(r, self.label_shape) for r in self.regions}

    def slice_roi(self, axis: str | None = None, index: int | None = None) -> np.ndarray | None:
        """2D mask of the context regions on one slice, e.g. for ``segment_image(..., roi=viewer.slice_roi())``.

        Parameters
        ----------
        axis : str, optional
            ``"xy"``, ``"xz"`` or ``"yz"`` (the viewed axis by default).
        index : int, optional
            The slice along ``axis`` (the current one by default).

        Returns
        -------
        numpy.ndarray or None
            Boolean mask of the slice's shape; None without regions.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> v.slice_roi() is None
        True
        >>> _ = v.add_region([[0, 0], [16, 16]], shape="rectangle", slice=1)
        >>> int(v.slice_roi("xy", 1).sum()), int(v.slice_roi("xy", 0).sum())
        (256, 0)
        """
        if not self.regions:
            return None
        axis = axis or self.axis
        index = self.slice_index if index is None else int(index)
        return P.slice_roi(self.regions, self.source.shape, axis, index)

    def roi(self) -> np.ndarray | None:
        """The context mask when ``confine_to_regions`` is on and regions exist, else None.

        Returns
        -------
        numpy.ndarray or None
            ``context_mask()``, or None when inference and metrics are not confined to regions.

        Examples
        --------
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> _ = v.add_region([[0, 0], [16, 16]], shape="rectangle", slice=1)
        >>> v.roi() is None
        True
        >>> v.confine_to_regions = True
        >>> v.roi().shape
        (2, 32, 32)
        """
        return self.context_mask() if self.confine_to_regions and self.regions else None

    # ----------------------------------------------------------------------------- points files
    def save_points(self, path, overwrite: bool = False):
        """Write the picks' centres to a CSV points file (see ``empanada_nb.patches.save_points``).

        Coordinates are those of the level shown (``level`` of a multiscale image).

        Parameters
        ----------
        path : str or os.PathLike
            The ``.csv`` file.
        overwrite : bool
            Replace an existing file.

        Returns
        -------
        pathlib.Path
            The written file.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8))
        >>> _ = v.add_pick("xy", 1, 16, 16, size=16)
        >>> v.save_points(Path(tempfile.mkdtemp()) / "p.csv").read_text().splitlines()[1]
        'xy,1,16,16,16'
        """
        if not self.picks:
            raise ValueError("no picks to save: click with the pick tool first")
        out = P.save_points(self.picks, path, overwrite=overwrite)
        self.message = f"saved {len(self.picks)} pick centre(s) to {out}"
        return out

    def load_points(self, path, full_resolution: bool = False, size: int | None = None) -> list[dict]:
        """Add picks from a points file (``empanada_nb.patches.load_points``; napari's points CSV too).

        Parameters
        ----------
        path : str or os.PathLike
            The CSV file.
        full_resolution : bool
            The file's coordinates are on level 0 of the multiscale image: scale them to the level shown.
        size : int, optional
            Patch size where the file has none (``patch_size`` by default).

        Returns
        -------
        list of dict
            The added picks.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from empanada_nb import Viewer
        >>> f = Path(tempfile.mkdtemp()) / "napari.csv"
        >>> _ = f.write_text("index,axis-0,axis-1,axis-2\\n0,1,40,20\\n")
        >>> v = Viewer([np.zeros((2, 64, 64), np.uint8), np.zeros((2, 32, 32), np.uint8)], level=1, patch_size=8)
        >>> v.load_points(f, full_resolution=True)
        [{'axis': 'xy', 'z': 1, 'y': 20, 'x': 10, 'size': 8}]
        """
        scale = self.pyramid_scale if full_resolution else 1.0
        new = P.load_points(path, self.source.shape, int(size or self.patch_size), scale=scale)
        self.picks = self.picks + new
        self.message = f"added {len(new)} pick(s) from {path}"
        return new

    # ----------------------------------------------------------------------------------- tiles
    def create_tiles(self, out_dir, tile_size: int = 512, overlap: int = 64, layer=None, overwrite: bool = False):
        """Cut the image (a volume's shown xy slice) and a layer's labels into overlapping tiles for labelling.

        See ``empanada_nb.tiles.create_tiles``.

        Parameters
        ----------
        out_dir : str or os.PathLike
            The tiles folder (``im/``, ``msk/``, ``metadata.tif``).
        tile_size : int
            Tile side in pixels.
        overlap : int
            Pixels shared by neighbouring tiles.
        layer : str or int, optional
            The labels cut into ``msk/`` (the active layer by default; none without layers).
        overwrite : bool
            Write into a folder that already has tiles.

        Returns
        -------
        dict
            The tiles' metadata (``original_image_shape``, ``tile_size``, ``overlap``, ``tiles``, ...).

        Examples
        --------
        >>> import tempfile
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((100, 100), np.uint8), labels=np.zeros((100, 100), np.uint32))
        >>> len(v.create_tiles(tempfile.mkdtemp(), tile_size=64, overlap=16)["tiles"])
        4
        """
        from .. import tiles as T

        if self.source.ndim == 3 and self.axis != "xy":
            raise ValueError("create tiles cuts an xy slice: switch the view to xy")
        image = self.source.plane("xy", self.slice_index)
        lay = self.layer(layer) if layer is not None else self._active(create=False)
        labels = lay.plane_view("xy", self.slice_index if self.source.ndim == 3 else 0) if lay is not None else None
        meta = T.create_tiles(image, out_dir, tile_size, overlap, labels=labels, overwrite=overwrite)
        self.message = f"wrote {len(meta['tiles'])} tile(s) of {tile_size} px (overlap {overlap}) to {meta['dir']}"
        return meta

    def merge_tiles(self, tile_dir, name: str = "merged tiles", label_divisor: int | None = None):
        """Stitch a tiles folder's label tiles into a label layer ``name`` (a slice layer for a volume).

        See ``empanada_nb.tiles.merge_tiles``. Replacing an existing layer's data drops its undo history,
        as ``set_labels`` does.

        Parameters
        ----------
        tile_dir : str or os.PathLike
            The tiles folder, its ``msk/`` edited.
        name : str
            The label layer to add or replace.
        label_divisor : int, optional
            Keep classes when relabelling (the viewer's ``label_divisor`` by default).

        Returns
        -------
        LabelLayer
            The layer holding the stitched labels.

        Examples
        --------
        >>> import tempfile
        >>> from empanada_nb import Viewer
        >>> lab = np.zeros((100, 100), np.uint32); lab[40:60, 10:90] = 7
        >>> v = Viewer(np.zeros((100, 100), np.uint8), labels=lab)
        >>> d = tempfile.mkdtemp(); _ = v.create_tiles(d, tile_size=64, overlap=16)
        >>> np.unique(v.merge_tiles(d).data).tolist()
        [0, 1]
        """
        from .. import tiles as T

        merged = T.merge_tiles(tile_dir, label_divisor=label_divisor or self.label_divisor or None)
        want = tuple(self.label_shape[-2:])
        if merged.shape != want:
            raise ValueError(f"merged tiles have shape {merged.shape}, the image's slices {want}")
        plane = ("xy", self.slice_index) if self.source.ndim == 3 else None
        layer = self.set_labels(name, merged, plane=plane)
        self.message = f"merged {len(np.unique(merged)) - 1} object(s) from {tile_dir} into layer {layer.name!r}"
        return layer

    # --------------------------------------------------------------------------------- patches
    def save_patches(
        self, dataset_dir, name: str | None = None, model=None, layer=None, on_clash: str = "skip"
    ) -> dict[str, Any]:
        """Write the picked patches to ``dataset_dir/<name>/{images,masks}/*.tif`` (+ ``<name>_picks.json``).

        Masks come from ``layer`` (the active layer by default); a patch without labels gets
        ``model``'s prediction (or the viewer's ``model``'s) when one is given. With ``flipbook`` (a
        depth) on a volume, each pick's flipbook is written to ``<name>/flipbooks`` too
        (``empanada_nb.patches.save_flipbooks``; listed under ``"flipbooks"`` in the result). Appends
        to an existing dataset. See ``empanada_nb.patches.save_patches``.

        Parameters
        ----------
        dataset_dir : str or os.PathLike
            The dataset folder (the one ``train`` reads).
        name : str, optional
            Subfolder and file-name prefix (``dataset_name`` by default).
        model : torch.nn.Module, optional
            Model that labels patches without labels.
        layer : str or int, optional
            The label layer the masks come from (the active layer by default).
        on_clash : str
            Existing file names are skipped (``"skip"``) or refused (``"error"``).

        Returns
        -------
        dict
            ``{"dir": the folder written, "written": [file names], "skipped": [file names]}``, and
            ``"flipbooks"`` (file names) with ``flipbook``.

        Raises
        ------
        ValueError
            Without picks.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> from empanada_nb import Viewer
        >>> v = Viewer(np.zeros((2, 32, 32), np.uint8), labels=np.ones((2, 32, 32), np.uint32))
        >>> _ = v.add_pick("xy", 1, 16, 16, size=16)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     v.save_patches(tmp, name="mito")["written"]
        ['mito_xy_z0001_y0016_x0016_s16.tif']
        """
        if not self.picks:
            raise ValueError("no picks to save: click with the pick tool or call fill_random_picks()")
        lay = self.layer(layer) if layer is not None else self._active(create=False)
        labels = None
        if lay is not None:
            labels = lay.data if lay.plane is None else None
        name = name or self.dataset_name or "patches"
        res = P.save_patches(
            self.source,
            self.picks,
            dataset_dir,
            name,
            labels=labels,
            model=model if model is not None else self.model,
            on_clash=on_clash,
        )
        if self.flipbook and self.source.ndim == 3:
            # the annotation context of each patch, next to its training pair (empanada-napari's flipbooks)
            fb = P.save_flipbooks(self.source, self.picks, dataset_dir, name, depth=self.flipbook, on_clash=on_clash)
            res["flipbooks"] = fb["written"]
        return res
