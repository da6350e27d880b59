"""Ortho-plane consensus: merge 3D segmentations made along xy, xz and yz into one.

After empanada's ``merge_objects_from_trackers`` / ``merge_semantic_from_trackers``
(empanada-dl 0.1.7, ``consensus.py``): instances of different views that overlap form a graph;
within each connected group, detections with IoU above ``cluster_iou_thr`` form clusters, weakly
linked clusters are merged greedily (most connected first; a cluster smaller than its largest
neighbour is absorbed by it, as empanada's ``merge_clusters``), a cluster is kept when enough
views saw it, and a voxel belongs to a kept cluster when at least ``vote`` views put it there.
Stuff classes take the same voxel vote. Unlike empanada (RLEs of whole objects in memory), both
passes stream z-slabs of the views, so memory follows the slab size and the number of objects.
Difference: a rejected cluster joins only its largest neighbour (empanada copies it into every
neighbour and merges the overlapping results afterwards), so each voxel has one winner.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .cancel import check_cancel
from .progress import Progress, progress_iter
from .tracking import thing_mask

#: empanada's thresholds for a non-trivial link between clusters (consensus.py)
MIN_IOU, MIN_OVERLAP = 1e-2, 100


class _SumTable:
    """Sums of int64 values keyed by int64 rows, accumulated from many small tables."""

    def __init__(self, width: int):
        self.width = width
        self.keys = np.zeros((0, width), np.int64)
        self.vals = np.zeros(0, np.int64)
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, keys: np.ndarray, vals: np.ndarray) -> None:
        if len(vals):
            self._parts.append((keys.reshape(-1, self.width).astype(np.int64), vals.astype(np.int64)))
        if len(self._parts) >= 32:
            self.reduce()

    def reduce(self) -> _SumTable:
        if self._parts:
            keys = np.concatenate([self.keys] + [k for k, _ in self._parts])
            vals = np.concatenate([self.vals] + [v for _, v in self._parts])
            self._parts = []
            self.keys, inv = np.unique(keys, axis=0, return_inverse=True)
            self.vals = np.bincount(inv.ravel(), weights=vals, minlength=len(self.keys)).astype(np.int64)
        return self


def _pair_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (a, b) pairs with counts; one int64 key per pair when ids fit 31 bits (faster than axis=0)."""
    if a.max() < 2**31 and b.max() < 2**31:
        key, cnt = np.unique((a << 31) | b, return_counts=True)
        return np.column_stack([key >> 31, key & (2**31 - 1)]), cnt
    return np.unique(np.stack([a, b], 1), axis=0, return_counts=True)


def _merge_clusters(nodes: dict[int, set], edges: dict[tuple[int, int], float]) -> list[set]:
    """Greedy merge of a small cluster graph (empanada's ``merge_clusters``), one owner per detection."""
    adj: dict[int, set] = {k: set() for k in nodes}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    nodes = {k: set(v) for k, v in nodes.items()}
    while any(adj.values()):
        mc = max(adj, key=lambda k: (len(adj[k]), -k))
        nbrs = sorted(adj[mc], key=lambda k: (-len(nodes[k]), k))
        if len(nodes[nbrs[0]]) > len(nodes[mc]):
            # the most connected cluster is rejected as an instance: its largest neighbour takes it
            nodes[nbrs[0]] |= nodes.pop(mc)
            for k in adj.pop(mc):
                adj[k].discard(mc)
        else:
            # accepted: it absorbs its neighbours; their other links are dropped (as empanada does)
            for k in nbrs:
                nodes[mc] |= nodes.pop(k)
                for j in adj.pop(k):
                    if j in adj:
                        adj[j].discard(k)
            adj[mc] = set()
    return list(nodes.values())


def cluster_instances(
    areas: list[tuple[np.ndarray, np.ndarray]],
    pairs: _SumTable,
    *,
    n_views: int,
    min_views: int,
    cluster_iou_thr: float,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Group instances of the views into consensus objects.

    ``areas[v]`` = (ids, voxel counts) of view v; ``pairs`` rows (view_a, id_a, view_b, id_b) with
    intersection counts. Returns per view the sorted ids and their cluster index (0: none), and
    per cluster (index - 1) the number of views that saw it.
    """
    offs = np.cumsum([0] + [len(a[0]) for a in areas])
    n = int(offs[-1])
    view_of = np.repeat(np.arange(n_views), [len(a[0]) for a in areas])
    area = np.concatenate([a[1] for a in areas]) if n else np.zeros(0, np.int64)
    owner = np.zeros(n, np.int64)
    seen: list[int] = []
    if n and len(pairs.vals):
        k = pairs.keys
        ia, ib = _node_index(areas, offs, k[:, 0], k[:, 1]), _node_index(areas, offs, k[:, 2], k[:, 3])
        inter = pairs.vals.astype(np.float64)
        iou = inter / (area[ia] + area[ib] - inter)
        _, comp = connected_components(coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(n, n)), directed=False)
        strong = iou > cluster_iou_thr
        _, sub = connected_components(
            coo_matrix((np.ones(int(strong.sum())), (ia[strong], ib[strong])), shape=(n, n)), directed=False
        )
        order = np.argsort(comp[ia], kind="stable")
        edge_groups = np.split(order, np.flatnonzero(np.diff(comp[ia][order])) + 1)
        for eg in edge_groups:  # a loop over groups of overlapping objects, not voxels
            if eg.size == 0:
                continue
            members = np.unique(np.concatenate([ia[eg], ib[eg]]))
            if len(np.unique(view_of[members])) < min_views:
                continue
            nodes = {int(s): set(members[sub[members] == s].tolist()) for s in np.unique(sub[members])}
            # average IoU / overlap between clusters over all their detection pairs
            tot_iou: dict[tuple[int, int], float] = {}
            tot_ov: dict[tuple[int, int], float] = {}
            for e in eg:
                sa, sb = int(sub[ia[e]]), int(sub[ib[e]])
                if sa == sb:
                    continue
                key = (min(sa, sb), max(sa, sb))
                tot_iou[key] = tot_iou.get(key, 0.0) + iou[e]
                tot_ov[key] = tot_ov.get(key, 0.0) + inter[e]
            links = {}
            for key in tot_iou:
                m = len(nodes[key[0]]) * len(nodes[key[1]])
                if tot_iou[key] / m > MIN_IOU or tot_ov[key] / m > MIN_OVERLAP:
                    links[key] = tot_iou[key] / m
            for cl in _merge_clusters(nodes, links):
                cl = np.fromiter(cl, np.int64)
                nv = len(np.unique(view_of[cl]))
                if nv >= min_views:
                    seen.append(nv)
                    owner[cl] = len(seen)
    if min_views <= 1:  # instances that overlap nothing are their own clusters
        alone = np.flatnonzero(owner == 0)
        owner[alone] = len(seen) + 1 + np.arange(len(alone))
        seen.extend([1] * len(alone))
    per_view = [owner[offs[v] : offs[v + 1]] for v in range(n_views)]
    return [a[0] for a in areas], per_view, np.asarray(seen, np.int64)


def _node_index(areas, offs: np.ndarray, view: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Global node index of (view, id) pairs."""
    out = np.zeros(len(view), np.int64)
    for v in range(len(areas)):  # a loop over views
        sel = view == v
        out[sel] = offs[v] + np.searchsorted(areas[v][0], ids[sel])
    return out


def _lookup(labels: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values[k] where labels == ids[k]; 0 elsewhere (``ids`` sorted)."""
    if ids.size == 0:
        return np.zeros(labels.shape, np.int64)
    idx = np.clip(np.searchsorted(ids, labels), 0, len(ids) - 1)
    return np.where(ids[idx] == labels, values[idx], 0)


def vote_slab(
    slabs: Sequence[np.ndarray],
    ids: list[np.ndarray],
    owners: list[np.ndarray],
    cluster_ids: np.ndarray,
    cluster_thr: np.ndarray,
    stuff_ids: Sequence[int],
    vote: int,
) -> np.ndarray:
    """Consensus labels of one slab of every view (vectorized over voxels)."""
    c = np.stack([_lookup(s, i, o) for s, i, o in zip(slabs, ids, owners)])  # cluster index per view
    votes = sum((c == c[j]) for j in range(len(c))) * (c > 0)  # views agreeing with each view's cluster
    best = votes.argmax(axis=0)
    win = np.take_along_axis(c, best[None], 0)[0]
    nvote = np.take_along_axis(votes, best[None], 0)[0]
    ok = (win > 0) & (nvote >= cluster_thr[win])
    out = np.where(ok, cluster_ids[win], 0)
    for s in stuff_ids:  # stuff classes: plain voxel vote, things win ties
        cnt = sum((x == s).astype(np.int8) for x in slabs)
        out[(out == 0) & (cnt >= vote)] = s
    return out


def _morph(labels: np.ndarray, erode: int, dilate: int, fill_holes: bool) -> np.ndarray:
    """Erode (voxels whose face neighbours all share their id survive), dilate into background, fill 2D holes."""
    fp = ndimage.generate_binary_structure(3, 1)
    for _ in range(erode):
        keep = (ndimage.minimum_filter(labels, footprint=fp, mode="nearest") == labels) & (
            ndimage.maximum_filter(labels, footprint=fp, mode="nearest") == labels
        )
        labels = np.where(keep, labels, 0)
    for _ in range(dilate):
        labels = np.where(labels == 0, ndimage.maximum_filter(labels, footprint=fp, mode="nearest"), labels)
    if fill_holes:
        from .postprocess import fill_instance_holes

        labels = np.stack([fill_instance_holes(s) for s in labels])
    return labels


def ortho_consensus(
    views: Sequence,
    out,
    *,
    thing_list: Sequence[int],
    stuff_list: Sequence[int],
    label_divisor: int,
    vote: int = 2,
    keep_single_view: bool = False,
    cluster_iou_thr: float = 0.75,
    erode: int = 0,
    dilate: int = 0,
    fill_holes: bool = False,
    slab: int = 16,
    progress: Progress = True,
    cancel: threading.Event | None = None,
):
    """Write the consensus of ``views`` (same-shape 3D label arrays, panoptic ids) into ``out``.

    ``progress``: True (tqdm), False or a callable receiving progress events (``progress``).
    """

    n = len(views)
    if not 1 <= vote <= n:
        raise ValueError(f"vote must be between 1 and {n} (the number of views), got {vote}")
    div, Z = int(label_divisor), int(views[0].shape[0])
    min_views = 1 if keep_single_view else n // 2 + 1
    if vote < min_views:
        cluster_iou_thr = 0.0  # empanada: maximal merging when the vote is not a majority

    def check():
        check_cancel(cancel)

    # pass 1: instance areas and pairwise intersections between views
    area_t = [_SumTable(1) for _ in range(n)]
    pairs = _SumTable(4)
    for z0 in progress_iter(range(0, Z, slab), -(-Z // slab), "consensus: overlaps", progress):
        check()
        s = [np.asarray(v[z0 : z0 + slab]).astype(np.int64) for v in views]
        m = [thing_mask(x, thing_list, div) for x in s]
        for v in range(n):
            u, cnt = np.unique(s[v][m[v]], return_counts=True)
            area_t[v].add(u[:, None], cnt)
            for w in range(v + 1, n):
                both = m[v] & m[w] & (s[v] // div == s[w] // div)
                if both.any():
                    ab, cnt = _pair_counts(s[v][both], s[w][both])
                    pairs.add(np.column_stack([np.full(len(ab), v), ab[:, 0], np.full(len(ab), w), ab[:, 1]]), cnt)
    areas = [(t.reduce().keys[:, 0], t.vals) for t in area_t]
    ids, owners, seen = cluster_instances(
        areas, pairs.reduce(), n_views=n, min_views=min_views, cluster_iou_thr=cluster_iou_thr
    )
    # consensus ids: class * label_divisor + running number per class
    cls = np.zeros(len(seen) + 1, np.int64)
    for i, o in zip(ids, owners):
        cls[o[o > 0]] = i[o > 0] // div
    cluster_ids = np.zeros(len(seen) + 1, np.int64)
    for c in np.unique(cls[1:]):
        sel = np.flatnonzero(cls == c)
        sel = sel[sel > 0]
        if len(sel) >= div:
            raise ValueError(f"{len(sel)} consensus instances of class {c} do not fit label_divisor {div}")
        cluster_ids[sel] = c * div + 1 + np.arange(len(sel))
    # with keep_single_view, a cluster seen by fewer views than the vote needs only the views it has
    cluster_thr = np.concatenate([[1], np.minimum(vote, seen) if keep_single_view else np.full(len(seen), vote)])
    stuff_ids = [int(c) * div for c in stuff_list]
    # pass 2: voxel vote, optional morphology with a halo so slab borders are exact
    halo = erode + dilate
    for z0 in progress_iter(range(0, Z, slab), -(-Z // slab), "consensus: vote", progress):
        check()
        a0, a1 = max(0, z0 - halo), min(Z, z0 + slab + halo)
        s = [np.asarray(v[a0:a1]).astype(np.int64) for v in views]
        lab = vote_slab(s, ids, owners, cluster_ids, cluster_thr, stuff_ids, vote)
        if halo or fill_holes:
            lab = _morph(lab, erode, dilate, fill_holes)
        out[z0 : min(Z, z0 + slab)] = lab[z0 - a0 : z0 - a0 + min(slab, Z - z0)].astype(out.dtype)
    return out
