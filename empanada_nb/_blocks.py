"""Blocks of a distributed segmentation: the grid, one block's work on a worker, the merge across faces.

A block is a core (the part of the output it owns) and a box (the core grown by the halo, clipped
to the volume) that it segments in memory. Each block's result is one record file,
``blocks/<z>_<y>_<x>.npz``, written atomically after all its data: the core's labels with the
block's own ids, the statistics of its instances, and the label planes on either side of each core
face (its first/last core plane, and the halo plane just beyond). The record is the done-marker: a
block with a record is never computed again.

Merging follows the block-face stitching of cellpose's ``distributed_segmentation`` (Fleishman,
cellpose 3, ``block_face_adjacency_graph``) and elf's blockwise segmentation (Pape et al., the
multicut lineage): ids are first made unique per block, pairs of ids that belong together across a
face become edges of a graph, and its connected components (``scipy.sparse.csgraph``) are the
global objects. Unlike cellpose, which joins every pair of labels that touch at a face, a pair is
joined only where one block's halo prediction and the neighbour's core agree on the same voxels
(overlap over the smaller area above ``merge_thr``), so two objects that merely touch stay apart.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._atomic import atomic_path
from .tracking import thing_mask

SIDES = ("lo", "hi")


@dataclasses.dataclass(frozen=True)
class Block:
    """One block: grid ``index``, ``core`` and ``box`` as ``((start, stop), ...)`` per axis."""

    index: tuple[int, int, int]
    core: tuple[tuple[int, int], ...]
    box: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return "_".join(map(str, self.index))

    def slices(self, which: str = "core", within: str | None = None) -> tuple[slice, ...]:
        """``which`` box as slices, in volume coordinates or relative to box ``within``."""
        a = getattr(self, which)
        o = [0] * 3 if within is None else [s for s, _ in getattr(self, within)]
        return tuple(slice(s - o[d], e - o[d]) for d, (s, e) in enumerate(a))


def grid(shape: Sequence[int], block: Sequence[int], halo: Sequence[int]) -> list[Block]:
    """The blocks that tile ``shape`` (the last ones along an axis may be smaller)."""
    counts = [-(-s // b) for s, b in zip(shape, block)]
    out = []
    for idx in itertools.product(*(range(c) for c in counts)):
        core = tuple((i * b, min(s, (i + 1) * b)) for i, b, s in zip(idx, block, shape))
        box = tuple((max(0, c0 - h), min(s, c1 + h)) for (c0, c1), h, s in zip(core, halo, shape))
        out.append(Block(tuple(idx), core, box))
    return out


def record_path(work: Path, blk: Block) -> Path:
    return Path(work) / "blocks" / f"{blk.name}.npz"


# --------------------------------------------------------------------------------------------
# one block (runs on a worker)
# --------------------------------------------------------------------------------------------


def block_record(labels: np.ndarray, blk: Block, things: Sequence[int], div: int) -> dict[str, np.ndarray]:
    """What a block keeps of its box's ``labels``: core labels, instance statistics, face planes."""
    core = labels[blk.slices("core", within="box")]
    rec: dict[str, np.ndarray] = {"core": core}
    m = thing_mask(core, things, div)
    pos = np.nonzero(m)
    ids, inv, count = np.unique(core[pos], return_inverse=True, return_counts=True)
    lo = np.full((len(ids), 3), np.iinfo(np.int64).max, np.int64)
    hi = np.full((len(ids), 3), -1, np.int64)
    for d in range(3):
        g = pos[d] + blk.core[d][0]  # volume coordinates, so extents add up across blocks
        np.minimum.at(lo[:, d], inv, g)
        np.maximum.at(hi[:, d], inv, g)
    rec.update(ids=ids.astype(np.int64), count=count.astype(np.int64), lo=lo, hi=hi)
    for d in range(3):
        (c0, c1), (b0, b1) = blk.core[d], blk.box[d]
        for side, edge, beyond, has in (("lo", c0, c0 - 1, b0 < c0), ("hi", c1 - 1, c1, b1 > c1)):
            if not has:
                continue
            rec[f"edge_{d}_{side}"] = _plane(labels, blk, d, edge)
            rec[f"halo_{d}_{side}"] = _plane(labels, blk, d, beyond)
    return rec


def _plane(labels: np.ndarray, blk: Block, d: int, at: int) -> np.ndarray:
    """The plane ``at`` (volume coordinate along ``d``) of the box's labels, over the core's footprint."""
    s = list(blk.slices("core", within="box"))
    s[d] = at - blk.box[d][0]
    return np.ascontiguousarray(labels[tuple(s)])


def save_record(path: Path, rec: dict[str, np.ndarray]) -> None:
    """Write a record atomically: it appears complete or not at all (it is the block's done-marker)."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **rec)


def fault_hooks(work: Path, blk: Block) -> None:
    """Fault injection for the tests (``EMPANADA_NB_DIST_HOOKS``, a folder): log each computed
    block to ``computed.log``; the first worker to claim ``kill_once`` dies at once (``os._exit``)."""
    hooks = os.environ.get("EMPANADA_NB_DIST_HOOKS")
    if not hooks:
        return
    with open(Path(hooks) / "computed.log", "a") as f:
        f.write(blk.name + "\n")
    try:
        os.rename(Path(hooks) / "kill_once", Path(hooks) / "killed")
    except OSError:
        return
    os._exit(1)


# --------------------------------------------------------------------------------------------
# merge (runs on the driver, reading only the small parts of the records)
# --------------------------------------------------------------------------------------------


def face_pairs(
    a_plane: np.ndarray, b_plane: np.ndarray, things: Sequence[int], div: int, thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(a, b)`` of thing ids of two predictions of the same plane that are one object:
    same class, overlap / smaller area > ``thr`` (each area counted in its own plane)."""
    ma, mb = thing_mask(a_plane, things, div), thing_mask(b_plane, things, div)
    both = ma & mb & (a_plane // div == b_plane // div)
    if not both.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ua, na = np.unique(a_plane[ma], return_counts=True)
    ub, nb = np.unique(b_plane[mb], return_counts=True)
    pairs, n = np.unique(np.stack([a_plane[both], b_plane[both]]).astype(np.int64), axis=1, return_counts=True)
    area = np.minimum(na[np.searchsorted(ua, pairs[0])], nb[np.searchsorted(ub, pairs[1])])
    keep = n / area > thr
    return pairs[0][keep], pairs[1][keep]


def _small_parts(path: Path) -> dict[str, np.ndarray]:
    """A record without its core labels (closed again: a run may have many thousands of blocks)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "core"}


def merge(
    blocks: list[Block],
    work: Path,
    things: Sequence[int],
    div: int,
    *,
    merge_thr: float,
    min_size: int,
    min_extent: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{block name: (local ids, final ids)}``: objects joined across faces, filtered by size and
    extent (as ``segment_stack``'s 3D filter, over whole objects), numbered ``class * div + 1, 2, ...``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    recs = {b.index: _small_parts(record_path(work, b)) for b in blocks}
    offset, base = {}, 0
    for b in blocks:
        offset[b.index] = base
        base += len(recs[b.index]["ids"])
    ids = np.concatenate([recs[b.index]["ids"] for b in blocks] + [np.zeros(0, np.int64)])
    count = np.concatenate([recs[b.index]["count"] for b in blocks] + [np.zeros(0, np.int64)])
    lo = np.concatenate([recs[b.index]["lo"] for b in blocks] + [np.zeros((0, 3), np.int64)])
    hi = np.concatenate([recs[b.index]["hi"] for b in blocks] + [np.zeros((0, 3), np.int64)])

    def glob(idx, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        own = recs[idx]["ids"]
        j = np.clip(np.searchsorted(own, local), 0, max(0, len(own) - 1))
        ok = (own[j] == local) if len(own) else np.zeros(len(local), bool)  # halo-only objects have no id
        return offset[idx] + j, ok

    rows, cols = [], []
    for b in blocks:
        for d in range(3):
            nb = list(b.index)
            nb[d] += 1
            nb = tuple(nb)
            if nb not in recs or f"halo_{d}_hi" not in recs[b.index]:
                continue
            ra, rb = recs[b.index], recs[nb]
            # both directions: a's halo against b's first core plane, b's halo against a's last
            for pa, pb, sa, sb in (
                (ra[f"halo_{d}_hi"], rb[f"edge_{d}_lo"], b.index, nb),
                (rb[f"halo_{d}_lo"], ra[f"edge_{d}_hi"], nb, b.index),
            ):
                x, y = face_pairs(pa, pb, things, div, merge_thr)
                gx, okx = glob(sa, x)
                gy, oky = glob(sb, y)
                rows.append(gx[okx & oky])
                cols.append(gy[okx & oky])
    n = len(ids)
    if n == 0:
        return {b.name: (np.zeros(0, np.int64), np.zeros(0, np.int64)) for b in blocks}
    r = np.concatenate(rows + [np.zeros(0, np.int64)])
    c = np.concatenate(cols + [np.zeros(0, np.int64)])
    _, comp = connected_components(coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)), directed=False)
    k = comp.max() + 1
    tot = np.bincount(comp, weights=count, minlength=k).astype(np.int64)
    glo = np.full((k, 3), np.iinfo(np.int64).max, np.int64)
    ghi = np.full((k, 3), -1, np.int64)
    np.minimum.at(glo, comp, lo)
    np.maximum.at(ghi, comp, hi)
    keep = (tot >= min_size) & ((ghi - glo + 1).min(axis=1) >= min_extent)
    cls = np.zeros(k, np.int64)
    cls[comp] = ids // div
    final = np.zeros(k, np.int64)
    for cl in np.unique(cls[keep]):  # components in block order, so numbering is deterministic
        sel = np.flatnonzero(keep & (cls == cl))
        if len(sel) >= div:
            raise ValueError(f"{len(sel)} instances of class {cl} do not fit label_divisor {div}; pass a larger one")
        final[sel] = cl * div + 1 + np.arange(len(sel))
    out = {}
    for b in blocks:
        own = recs[b.index]["ids"]
        out[b.name] = (own, final[comp[offset[b.index] + np.arange(len(own))]])
    return out
