"""3D: lazy volumes, slice linking, stack and ortho inference, zarr output, bounded memory, cancel."""

import threading
import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr
from test_inference import ConeModel, cone_volume

from empanada_nb.consensus import _morph, _SumTable, cluster_instances, ortho_consensus
from empanada_nb.tracking import filter_stack, link_stack
from empanada_nb.volume import Cancelled, segment_ortho, segment_stack, write_volume_tiff

DIV = 1000


def _ball(shape, c, r):
    g = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum((gi - ci) ** 2 for gi, ci in zip(g, c)) < r**2


# ---------------------------------------------------------------- linking (no model)


def _y_shape():
    """Two discs that approach and merge at slice 8 (a 'Y'), plus a box elsewhere."""
    v = np.zeros((12, 40, 40), np.int64)
    yy, xx = np.mgrid[:40, :40]
    for z in range(12):
        if z < 8:
            v[z][(yy - 20) ** 2 + (xx - 10 - z // 2) ** 2 < 25] = 1001
            v[z][(yy - 20) ** 2 + (xx - 30 + z // 2) ** 2 < 25] = 1002
        else:
            v[z][(yy - 20) ** 2 + (xx - 20) ** 2 < 60] = 1001
    v[:, 2:6, 2:6] = 1003
    return v


def test_backward_pass_fixes_late_merges():
    v = _y_shape()
    fwd = link_stack(v, [1], DIV, backward=False)
    both = link_stack(v, [1], DIV)
    arms = fwd[7][20, 13], fwd[7][20, 27]
    assert arms[0] != arms[1]  # forward only: the arms keep two ids
    assert len(np.unique(both[both > 0])) == 2  # the Y is one object, the box another
    assert both[0][20, 10] == both[0][20, 30] == both[11][20, 20]
    assert both[0][3, 3] != both[0][20, 10]


def test_linking_follows_moving_objects_and_splits_at_gaps():
    v = np.zeros((9, 30, 30), np.int64)
    for z in range(9):
        if z != 4:  # a gap slice
            v[z, 5:15, 2 + z : 12 + z] = 1000 + 1 + (z % 3)  # per-slice ids change on purpose
    out = link_stack(v, [1], DIV)
    assert len(np.unique(out[:4][out[:4] > 0])) == 1
    assert len(np.unique(out[5:][out[5:] > 0])) == 1
    assert out[0].max() != out[8].max()


def test_no_linking_across_classes_and_stuff_kept():
    v = np.zeros((4, 20, 20), np.int64)
    v[:2, 5:10, 5:10] = 1001
    v[2:, 5:10, 5:10] = 2001
    v[:, 15:, 15:] = 3000  # stuff
    out = link_stack(v, [1, 2], DIV)
    assert out[0, 6, 6] // DIV == 1 and out[3, 6, 6] // DIV == 2
    assert (out[:, 16, 16] == 3000).all()


def test_filter_removes_small_and_flat_objects_and_renumbers():
    v = np.zeros((6, 30, 30), np.int64)
    v[:, 2:12, 2:12] = 1005  # 600 voxels, extent 6
    v[:, 20:22, 20:22] = 1007  # 24 voxels
    v[2, 14:28, 2:16] = 1009  # 196 voxels but one slice thick
    out = filter_stack(v, [1], DIV, min_size=100, min_extent=2)
    assert set(np.unique(out)) == {0, 1001}
    assert (out[:, 5, 5] == 1001).all()


def test_write_volume_tiff_roundtrip(tmp_path):
    vol = np.random.default_rng(0).integers(0, 5000, (5, 16, 16)).astype(np.int32)
    write_volume_tiff(zarr.array(vol), tmp_path / "o.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o.tif"), vol)
    assert [p.name for p in tmp_path.iterdir()] == ["o.tif"]


# ---------------------------------------------------------------- stack inference

BALLS = [(8, 18, 18), (11, 30, 46), (15, 54, 26)]
R = 7


@pytest.fixture(scope="module")
def balls():
    return cone_volume((24, 72, 64), BALLS, R)


@pytest.fixture(scope="module")
def views(balls):
    model = ConeModel(radius=R)
    return [
        segment_stack(model, balls, axis=a, irange=(0, 1), min_size=50, min_extent=3, progress=False)
        for a in ("xy", "xz", "yz")
    ]


def test_segment_stack_links_balls_in_every_axis(balls, views):
    for axis, out in zip(("xy", "xz", "yz"), views):
        assert out.shape == balls.shape and out.dtype == np.int32
        ids = np.unique(out[out > 0])
        assert list(ids) == [1001, 1002, 1003], axis  # one id per ball, renumbered
        for c in BALLS:
            inner = _ball(balls.shape, c, R - 3)
            assert len(np.unique(out[inner])) == 1 and out[inner].min() > 0, axis


def test_segment_stack_median_and_zarr_output(balls, views, tmp_path):
    model = ConeModel(radius=R)
    ref = views[0]
    out = segment_stack(
        model,
        balls,
        irange=(0, 1),
        min_size=50,
        min_extent=3,
        median_slices=3,
        progress=False,
        out=tmp_path / "seg.zarr",
        chunks=(4, 32, 32),
    )
    assert isinstance(out, zarr.Array) and out.chunks == (4, 32, 32)
    got = out[:]
    assert len(np.unique(got[got > 0])) == 3
    # the median of 3 slices trims the caps of the balls a little, never adds voxels
    assert ((got > 0) <= (ref > 0)).all() and (got > 0).sum() > 0.9 * (ref > 0).sum()
    with pytest.raises(FileExistsError, match="overwrite"):
        segment_stack(model, balls, out=tmp_path / "seg.zarr", progress=False)
    with pytest.raises(ValueError, match="odd"):
        segment_stack(model, balls, median_slices=2, progress=False)


def test_cancel_leaves_no_output(balls, tmp_path):
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        segment_stack(ConeModel(radius=R), balls, out=tmp_path / "c.zarr", cancel=ev, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_volumes_are_refused():
    m = ConeModel(radius=R)
    with pytest.raises(ValueError, match="3D"):
        segment_stack(m, np.zeros((10, 10)), progress=False)
    with pytest.raises(ValueError, match="empty"):
        segment_stack(m, np.zeros((0, 10, 10)), progress=False)
    with pytest.raises(ValueError, match="axis"):
        segment_stack(m, np.zeros((2, 10, 10)), axis="zz", progress=False)


def _peak_numpy_bytes(n_slices, tmp_path):
    """Peak traced allocations of a zarr -> zarr stack run (numpy buffers are traced; torch's are not)."""
    vol = np.tile(cone_volume((96, 96), [(30, 30), (66, 66)], 15)[None], (n_slices, 1, 1))
    src = zarr.open_array(
        str(tmp_path / f"in{n_slices}.zarr"), mode="w", shape=vol.shape, dtype=vol.dtype, chunks=(1, 96, 96)
    )
    src[:] = vol
    del vol
    model = ConeModel(radius=15)
    tracemalloc.start()
    try:
        out = segment_stack(
            model,
            src,
            irange=(0, 1),
            min_size=0,
            min_extent=0,
            batch_size=2,
            progress=False,
            out=tmp_path / f"out{n_slices}.zarr",
            chunks=(4, 96, 96),
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(np.unique(out[n_slices // 2])) == 3  # two cylinders and background
    return peak


def test_memory_bounded_by_working_set_not_volume(tmp_path):
    small, large = _peak_numpy_bytes(12, tmp_path), _peak_numpy_bytes(48, tmp_path)
    slice_maps = 4 * 96 * 96 * 4  # S + 3 float32 maps per slice
    volume_maps = 48 * slice_maps
    # the working set: a batch of maps, the median window, a 4-slice slab and int64 copies of it
    assert large < 40 * slice_maps < volume_maps
    assert large < 1.25 * small + 2 * slice_maps


# ---------------------------------------------------------------- ortho consensus


def test_cluster_instances_votes_and_single_views():
    # view 0: ids 1001, 1002; view 1: 1001 (overlaps 1001 of view 0); view 2: 1003 alone
    areas = [
        (np.array([1001, 1002]), np.array([100, 50])),
        (np.array([1001]), np.array([100])),
        (np.array([1003]), np.array([40])),
    ]
    pairs = _SumTable(4)
    pairs.add(np.array([[0, 1001, 1, 1001]]), np.array([90]))
    ids, owners, seen = cluster_instances(areas, pairs.reduce(), n_views=3, min_views=2, cluster_iou_thr=0.75)
    assert owners[0].tolist() == [1, 0] and owners[1].tolist() == [1] and owners[2].tolist() == [0]
    assert seen.tolist() == [2]
    _, owners, seen = cluster_instances(areas, pairs, n_views=3, min_views=1, cluster_iou_thr=0.75)
    assert (owners[0] > 0).all() and (owners[2] > 0).all() and sorted(seen.tolist()) == [1, 1, 2]


def test_segment_ortho_consensus(balls, views, tmp_path):
    model = ConeModel(radius=R)
    out = segment_ortho(model, balls, irange=(0, 1), min_size=50, min_extent=3, progress=False)
    assert out.shape == balls.shape
    assert list(np.unique(out[out > 0])) == [1001, 1002, 1003]
    for c in BALLS:
        inner = _ball(balls.shape, c, R - 3)
        assert len(np.unique(out[inner])) == 1 and out[inner].min() > 0
    # a voxel is foreground when at least 2 of the 3 views say so
    votes = sum((v > 0).astype(int) for v in views)
    np.testing.assert_array_equal(out > 0, votes >= 2)


def test_consensus_vote_and_morphology(views, tmp_path):
    kw = dict(thing_list=[1], stuff_list=[], label_divisor=DIV, progress=False, slab=4)
    inter = ortho_consensus(views, np.zeros(views[0].shape, np.int32), vote=3, **kw)
    np.testing.assert_array_equal(inter > 0, (views[0] > 0) & (views[1] > 0) & (views[2] > 0))
    major = ortho_consensus(views, np.zeros(views[0].shape, np.int32), **kw)
    # erosion with a halo across 4-slice slabs equals erosion of the whole volume at once
    z = zarr.open_array(str(tmp_path / "e.zarr"), mode="w", shape=major.shape, dtype=np.int32, chunks=(4, 72, 64))
    eroded = ortho_consensus(views, z, erode=1, **kw)[:]
    np.testing.assert_array_equal(eroded, _morph(major, 1, 0, False))
    assert list(np.unique(eroded[eroded > 0])) == [1001, 1002, 1003]
    assert (eroded > 0).sum() < (major > 0).sum() and ((eroded > 0) <= (major > 0)).all()


def test_segment_ortho_zarr_output_leaves_only_the_store(balls, tmp_path):
    small = balls[:, :40, :]
    z = segment_ortho(
        ConeModel(radius=R), small, irange=(0, 1), min_size=50, progress=False, dilate=1, out=tmp_path / "o.zarr"
    )
    assert isinstance(z, zarr.Array) and len(np.unique(z[:])) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]  # temporary views removed


def test_segment_stack_into_given_numpy_array(balls, views):
    sub = balls[:, :40]
    buf = np.zeros(sub.shape, np.int64)
    got = segment_stack(ConeModel(radius=R), sub, irange=(0, 1), min_size=50, min_extent=3, out=buf, progress=False)
    assert got is buf and set(np.unique(buf)) == {0, 1001, 1002}
    with pytest.raises(ValueError, match="integer type"):
        segment_stack(ConeModel(radius=R), sub, out=np.zeros(sub.shape, np.uint8), progress=False)


def test_segment_ortho_keeps_planes_and_reports_progress(balls, tmp_path):
    small = balls[:, :40, :]
    kw = dict(irange=(0, 1), min_size=50, min_extent=3)
    events = []
    out, planes = segment_ortho(
        ConeModel(radius=R), small, keep_planes=True, out=tmp_path / "o.zarr", progress=events.append, **kw
    )
    # zarr: the planes are written beside the output
    names = ["o.zarr", "o_xy.zarr", "o_xz.zarr", "o_yz.zarr"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert set(planes) == {"xy", "xz", "yz"}
    planes = {a: p[:] for a, p in planes.items()}
    for a, p in planes.items():
        assert p.shape == small.shape and list(np.unique(p[p > 0])) == [1001, 1002], a
    votes = sum((p > 0).astype(int) for p in planes.values())
    np.testing.assert_array_equal(out[:] > 0, votes >= 2)  # the kept planes are what the consensus voted on
    stages = [e["stage"] for e in events if e["done"] == e["total"]]
    assert stages[:3] == ["xy: infer", "xy: link", "xy: filter"] and stages[-1] == "consensus: vote"
    # the planes follow the overwrite rule too (checked before any work)
    (tmp_path / "p_xy.zarr").mkdir()  # the user's folder
    with pytest.raises(FileExistsError, match="p_xy.zarr exists"):
        segment_ortho(ConeModel(radius=R), small, keep_planes=True, out=tmp_path / "p.zarr", progress=False, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names + ["p_xy.zarr"])
    # ...and with overwrite=True our own output and planes are replaced (the user's folder never is)
    again, _ = segment_ortho(
        ConeModel(radius=R), small, keep_planes=True, out=tmp_path / "o.zarr", progress=False, overwrite=True, **kw
    )
    np.testing.assert_array_equal(again[:], out[:])
    with pytest.raises(FileExistsError, match="did not write"):
        segment_ortho(
            ConeModel(radius=R), small, keep_planes=True, out=tmp_path / "p.zarr", progress=False, overwrite=True, **kw
        )
