"""The one list of inference settings: every option of 2D, stack and ortho-plane inference.

``SegmentOptions`` holds one field per setting of ``segment_image``,
``segment_stack`` and ``segment_ortho``. Each field's default is
read from those functions' signatures, and its metadata (label, help, kind, the modes it applies to)
is what the ``InferencePanel`` form and the ``empanada-nb segment`` flags
are built from, so the API, the widget and the CLI cannot drift apart (``tests/test_segment_options.py``
checks that every keyword of the three functions has a field here).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from .geometry import AXES
from .inference import DOWNSAMPLES, segment_image
from .precision import PRECISIONS
from .volume import segment_ortho, segment_stack

MODES = ("2d", "stack", "ortho")
#: the function each mode calls; ortho also passes the stack settings on to segment_stack
FUNCTIONS = {"2d": segment_image, "stack": segment_stack, "ortho": segment_ortho}
_ALL, _3D, _ORTHO = MODES, ("stack", "ortho"), ("ortho",)
#: keywords of the API that are no setting: data, runtime objects and per-call inputs
NOT_SETTINGS = {"model", "image", "volume", "roi", "irange", "progress", "cancel", "return_probs", "cache_mb"}
#: faces: "api" (a keyword of the mode's function), "cli" (a flag), "widget" (a form field)
_FACES = ("api", "cli", "widget")


def _default(name: str, modes) -> Any:
    for mode in modes:
        for fn in (FUNCTIONS[mode], segment_stack) if mode == "ortho" else (FUNCTIONS[mode],):
            p = inspect.signature(fn).parameters.get(name)
            if p is not None and p.default is not inspect.Parameter.empty:
                return p.default
    raise LookupError(f"no default for {name!r} in {modes}")


def _opt(name, kind, label, help, modes=_ALL, group="network", choices=None, faces=_FACES, default=None, **kw):
    """A field whose default comes from the API (``default`` only for settings the API does not have)."""
    value = _default(name, modes) if "api" in faces else default
    if isinstance(value, (list, tuple)):
        value = tuple(value)
    meta = dict(kind=kind, label=label, help=help, modes=tuple(modes), group=group, faces=tuple(faces), **kw)
    if choices is not None:
        meta["choices"] = list(choices)
    return dataclasses.field(default=value, metadata=meta)


@dataclasses.dataclass
class SegmentOptions:
    """Every inference setting, with the API's defaults (see the module docstring).

    Parameters
    ----------
    mode : str
        ``"2d"`` (one image or slice), ``"stack"`` (slices linked in 3D) or ``"ortho"`` (xy, xz and yz
        stacks and their consensus). The other fields are the keywords of the mode's function.

    Examples
    --------
    >>> opts = SegmentOptions(mode="ortho", erode=1, keep_planes=True)
    >>> kw = opts.kwargs()
    >>> kw["erode"], kw["keep_planes"], "axis" in kw
    (1, True, False)
    >>> SegmentOptions(mode="stack", median_slices=2).problems()
    {'median_slices': 'median_slices must be an odd number >= 1, got 2'}
    """

    mode: str = dataclasses.field(
        default="2d",
        metadata=dict(
            kind="choice",
            label="mode",
            help="2d: an image (or each slice) on its own; stack: slices linked in 3D; ortho: consensus of xy, xz, yz",
            modes=_ALL,
            group="run",
            faces=_FACES,
            choices=list(MODES),
        ),
    )
    axis: str = _opt("axis", "choice", "axis", "slicing axis of the stack", ("stack",), "run", AXES)
    # network
    downsample: int = _opt(
        "downsample", "choice", "downsampling", "shrink the input by this factor", choices=DOWNSAMPLES
    )
    tile_size: int | None = _opt("tile_size", "int?", "tile size", "tile side in network pixels (default: automatic)")
    tile_overlap: int = _opt("tile_overlap", "int", "tile overlap", "overlap of tiles in network pixels", min=0)
    batch_size: int = _opt("batch_size", "int", "batch size", "slices or tiles per network call", min=1)
    device: str | None = _opt("device", "text?", "device", "torch device, e.g. cuda:0 (default: the model's)")
    precision: str = _opt(
        "precision",
        "choice",
        "precision",
        "fp32: reference; bf16: fast on CPUs with AMX/AVX512-BF16 and on GPUs; fp16: GPU; auto: fastest native",
        choices=PRECISIONS,
    )
    flips: bool = _opt("flips", "bool", "test-time flips", "average the image as is and flipped 3 ways (4x slower)")
    # postprocessing
    seg_thr: float = _opt("seg_thr", "float", "segmentation threshold", "semantic confidence", group="post")
    center_thr: float = _opt("center_thr", "float", "center threshold", "center heatmap confidence", group="post")
    min_distance: int = _opt("min_distance", "int", "minimum distance", "between object centers (px)", group="post")
    stuff_area: int = _opt("stuff_area", "int", "stuff area", "smallest stuff region kept (px)", group="post", min=0)
    fine_boundaries: bool = _opt(
        "fine_boundaries", "bool", "fine boundaries", "finer boundaries between objects", group="post"
    )
    semantic_only: bool = _opt("semantic_only", "bool", "semantic only", "no instances: one id per class", group="post")
    fill_holes: bool = _opt("fill_holes", "bool", "fill holes", "fill holes in each object (2D)", group="post")
    split_fragments: bool = _opt(
        "split_fragments", "bool", "split fragments", "give disconnected pieces their own ids", group="post"
    )
    min_area: int | None = _opt(
        "min_area", "int?", "min area (px)",
        "drop smaller objects (2D; default: the model's, learned from its training objects; 3D uses min size)",
        ("2d",), "post", min=0,
    )  # fmt: skip
    label_divisor: int | None = _opt(
        "label_divisor", "int?", "label divisor", "max objects per class (default: the model card's)", group="post"
    )
    # 3D: stack inference
    median_slices: int = _opt(
        "median_slices", "int", "median filter (slices)", "odd number of slices to median-filter over", _3D, "3d"
    )
    min_size: int = _opt("min_size", "int", "min size (voxels)", "drop smaller objects", _3D, "3d", min=0)
    min_extent: int = _opt("min_extent", "int", "min extent", "drop objects thinner than this along an axis", _3D, "3d")
    iou_thr: float = _opt("iou_thr", "float", "link IoU", "IoU that links objects between slices", _3D, "3d")
    ioa_thr: float = _opt("ioa_thr", "float", "merge IoA", "IoA that merges split pieces", _3D, "3d")
    # ortho-plane consensus
    vote: int = _opt("vote", "choice", "vote", "views (of 3) that must agree on a voxel", _ORTHO, "ortho", (1, 2, 3))
    keep_single_view: bool = _opt(
        "keep_single_view", "bool", "keep single-view objects", "keep objects only one view found", _ORTHO, "ortho"
    )
    cluster_iou_thr: float = _opt(
        "cluster_iou_thr", "float", "cluster IoU", "IoU that groups objects across views", _ORTHO, "ortho"
    )
    erode: int = _opt("erode", "int", "erode", "erosion iterations of the consensus", _ORTHO, "ortho", min=0)
    dilate: int = _opt("dilate", "int", "dilate", "dilation iterations of the consensus", _ORTHO, "ortho", min=0)
    consensus_fill_holes: bool = _opt(
        "consensus_fill_holes", "bool", "fill holes (consensus)", "fill holes per xy slice", _ORTHO, "ortho"
    )
    keep_planes: bool = _opt(
        "keep_planes",
        "bool",
        "keep xy/xz/yz stacks",
        "also keep the xy, xz and yz stacks (zarr: written beside the output as NAME_xy.zarr, ...)",
        _ORTHO,
        "ortho",
    )
    # where it runs: block-wise on a dask cluster (``segment_distributed``; the CLI's flags)
    cluster: str | None = _opt(
        "cluster",
        "text?",
        "cluster",
        "segment block-wise on a dask cluster: 'local' (a LocalCluster) or a scheduler address",
        _3D,
        "run",
        faces=("cli",),
    )
    workers: int | None = _opt(
        "workers", "int?", "workers", "worker processes of --cluster local", _3D, "run", faces=("cli",), min=1
    )
    block: tuple | None = _opt(
        "block",
        "ints?",
        "block",
        "Z,Y,X core size of a block with --cluster (default: automatic)",
        _3D,
        "run",
        faces=("cli",),
    )
    # output (the CLI has its own positional --out)
    out: str | None = _opt(
        "out",
        "text?",
        "zarr output",
        "write labels to this zarr folder (default: in memory)",
        _3D,
        "output",
        faces=("api", "widget"),
    )
    chunks: tuple | None = _opt(
        "chunks", "ints?", "zarr chunks", "Z,Y,X chunk shape of a zarr output (default: automatic)", _3D, "output"
    )
    overwrite: bool = _opt("overwrite", "bool", "overwrite", "replace an existing output", _3D, "output")
    # where (the widget's viewer)
    confine_to_regions: bool = _opt(
        "confine_to_regions",
        "bool",
        "confine to context regions",
        "segment only inside the viewer's regions",
        group="where",
        faces=("widget",),
        default=False,
    )
    confine_to_visible: bool = _opt(
        "confine_to_visible",
        "bool",
        "confine to visible area",
        "segment only what the viewer shows",
        group="where",
        faces=("widget",),
        default=False,
    )

    # ------------------------------------------------------------------------------ checks
    def problems(self) -> dict[str, str]:
        """``{field: message}`` for every setting that is not valid (empty when all are).

        Returns
        -------
        dict
            One one-line message per bad field.

        Examples
        --------
        >>> SegmentOptions(vote=4).problems()["vote"]
        'vote must be one of 1, 2, 3, got 4'
        """
        errs: dict[str, str] = {}

        def need(name: str, ok: bool, msg: str) -> None:
            if not ok and name not in errs:
                errs[name] = msg

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            v = getattr(self, f.name)
            if choices is not None:
                need(f.name, v in choices, f"{f.name} must be one of {', '.join(map(str, choices))}, got {v!r}")
            kind = f.metadata["kind"]
            if kind in ("int", "float") or (kind == "int?" and v is not None):
                num = (int,) if kind != "float" else (int, float)
                if isinstance(v, bool) or not isinstance(v, num):
                    need(f.name, False, f"{f.name} must be a number, got {v!r}")
                    continue
                if "min" in f.metadata:
                    need(f.name, v >= f.metadata["min"], f"{f.name} must be >= {f.metadata['min']}, got {v}")
            if kind == "bool":
                need(f.name, isinstance(v, bool), f"{f.name} must be true or false, got {v!r}")
        for name in ("seg_thr", "center_thr", "iou_thr", "ioa_thr", "cluster_iou_thr"):
            v = getattr(self, name)
            need(name, isinstance(v, (int, float)) and 0 <= v <= 1, f"{name} must be between 0 and 1, got {v!r}")
        need("min_distance", _int(self.min_distance) and self.min_distance >= 1, "min_distance must be >= 1")
        need(
            "median_slices",
            _int(self.median_slices) and self.median_slices >= 1 and self.median_slices % 2 == 1,
            f"median_slices must be an odd number >= 1, got {self.median_slices}",
        )
        need("min_extent", _int(self.min_extent) and self.min_extent >= 0, "min_extent must be >= 0")
        need("vote", self.vote in (1, 2, 3), f"vote must be 1, 2 or 3 (views out of 3), got {self.vote!r}")
        if self.tile_size is not None:
            need("tile_size", _int(self.tile_size) and self.tile_size >= 16, "tile_size must be at least 16 (or empty)")
        if self.label_divisor is not None:
            need("label_divisor", _int(self.label_divisor) and self.label_divisor >= 2, "label_divisor must be >= 2")
        if self.block is not None:
            ok = len(self.block) == 3 and all(_int(c) and c >= 1 for c in self.block)
            need("block", ok, f"block must be three positive integers Z,Y,X, got {self.block!r}")
        if self.chunks is not None:
            ok = len(self.chunks) == 3 and all(_int(c) and c >= 1 for c in self.chunks)
            need("chunks", ok, f"chunks must be three positive integers Z,Y,X, got {self.chunks!r}")
        if self.out is not None and self.mode in _3D:
            low = str(self.out).lower()
            need("out", not low.endswith((".tif", ".tiff")), "out must be a zarr folder (e.g. labels.zarr), not a TIFF")
        return errs

    def check(self) -> SegmentOptions:
        """Raise ValueError with the first problem (one line); return self when all settings are valid.

        Returns
        -------
        SegmentOptions
            ``self``.

        Examples
        --------
        >>> SegmentOptions(erode=1).check().erode
        1
        """
        errs = self.problems()
        if errs:
            raise ValueError(next(iter(errs.values())))
        return self

    # ---------------------------------------------------------------------------- conversion
    def kwargs(self, mode: str | None = None) -> dict[str, Any]:
        """The keywords of ``mode``'s function (default: ``mode``) from these settings.

        Parameters
        ----------
        mode : str, optional
            ``"2d"``, ``"stack"`` or ``"ortho"``.

        Returns
        -------
        dict
            Pass as ``segment_image(model, image, **kw)`` (likewise ``segment_stack``, ``segment_ortho``).

        Examples
        --------
        >>> "erode" in SegmentOptions().kwargs("ortho"), "erode" in SegmentOptions().kwargs("stack")
        (True, False)
        """
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        names = set(inspect.signature(FUNCTIONS[mode]).parameters)
        if mode == "ortho":
            names |= set(inspect.signature(segment_stack).parameters) - {"axis"}
        kw = {}
        for f in dataclasses.fields(self):
            if f.name in names and "api" in f.metadata["faces"] and mode in f.metadata["modes"]:
                v = getattr(self, f.name)
                kw[f.name] = list(v) if isinstance(v, tuple) else v
        return kw

    def replace(self, **changes) -> SegmentOptions:
        """A copy with ``changes`` (strings from a form or the command line are converted, see ``from_dict``).

        Parameters
        ----------
        **changes
            Settings to change.

        Returns
        -------
        SegmentOptions
            The new settings.

        Examples
        --------
        >>> SegmentOptions().replace(mode="ortho", vote="3").vote
        3
        """
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly settings (tuples become lists).

        Returns
        -------
        dict
            ``{field: value}``.

        Examples
        --------
        >>> SegmentOptions(chunks=(1, 8, 8)).to_dict()["chunks"]
        [1, 8, 8]
        """
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentOptions:
        """Settings from a dict: unknown keys are an error; "" means None for optional fields; numbers
        given as strings (a form, a YAML file) are converted; ``chunks`` may be ``"16,256,256"``.

        Parameters
        ----------
        d : dict
            ``{field: value}``; missing fields keep the API's defaults.

        Returns
        -------
        SegmentOptions
            The settings (not yet checked: see ``problems``).

        Examples
        --------
        >>> SegmentOptions.from_dict({"tile_size": "", "chunks": "4,64,64"}).chunks
        (4, 64, 64)
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"unknown inference setting(s): {', '.join(sorted(unknown))}")
        return cls(**{k: _convert(fields[k].metadata["kind"], v) for k, v in d.items()})

    @classmethod
    def form(cls, face: str = "widget") -> list[dict[str, Any]]:
        """The settings a face shows, in order, as specs for building its form.

        Parameters
        ----------
        face : {"widget", "cli", "api"}
            Whose settings.

        Returns
        -------
        list of dict
            ``name``, ``kind``, ``label``, ``help``, ``modes``, ``group``, ``default`` and, where they
            apply, ``choices`` and ``min``.

        Examples
        --------
        >>> names = [f["name"] for f in SegmentOptions.form()]
        >>> names[0], "erode" in names, "out" in [f["name"] for f in SegmentOptions.form("cli")]
        ('mode', True, False)
        """
        out = []
        for f in dataclasses.fields(cls):
            if face not in f.metadata["faces"]:
                continue
            spec = {k: list(v) if isinstance(v, tuple) else v for k, v in f.metadata.items() if k != "faces"}
            d = f.default
            spec.update(name=f.name, default=list(d) if isinstance(d, tuple) else d)
            out.append(spec)
        return out


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _convert(kind: str, v: Any) -> Any:
    """A form's or a command line's value as the field's type (left as it is when it does not convert,
    so that ``SegmentOptions.problems`` names it)."""
    if kind.endswith("?") and (v is None or (isinstance(v, str) and not v.strip())):
        return None
    try:
        if kind in ("int", "int?") and isinstance(v, (str, float)) and not isinstance(v, bool):
            f = float(v)
            return int(f) if f.is_integer() else v
        if kind == "float" and isinstance(v, str):
            return float(v)
        if kind == "choice" and isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
        if kind == "ints?":
            parts = v.replace("x", ",").split(",") if isinstance(v, str) else list(v)
            return tuple(int(str(p).strip()) for p in parts)
    except (TypeError, ValueError):
        return v
    return v
