"""segment_distributed on a real LocalCluster (2 worker processes, 1 thread each) and a real EM crop.

The model is a resnet18 Panoptic-DeepLab with random weights whose semantic and center heads are
shifted so that it finds objects in the real image (noise-like ones; a trained model is not needed:
the tests compare the distributed result with the single-process one, which holds for any weights).
Slice linking runs with one-to-one IoU links (``iou_thr=0.5``, ``ioa_thr=1``), the setting in which
a stack's linking is local, so block-wise and whole-stack results must be the same objects.
"""

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

import empanada_nb as enb
from empanada_nb.cancel import Cancelled
from empanada_nb.data.io import normalize_image
from empanada_nb.distributed import WORK, segment_distributed

SHARED_DATA = Path(os.environ.get("EMPANADA_NB_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
KW = dict(iou_thr=0.5, ioa_thr=1.0, min_size=20, min_extent=2)
BLOCK = (4, 96, 96)  # 3 blocks along z on the 12 x 96 x 96 crop
SMALL = (2, 96, 96)  # 6 blocks: a run stopped after the first leaves some undone


def _model(vol: np.ndarray) -> torch.nn.Module:
    torch.manual_seed(0)
    m = enb.build_model("PanopticDeepLab", "resnet18").eval()
    x = torch.from_numpy(normalize_image(vol[:2], m.norms, (0, 255))[:, None].astype("float32"))
    # the heads' tiny init gives no foreground and no centers: widen them and put the thresholds
    # at fixed quantiles (20 % foreground, centers at the top 0.5 %)
    for head, key, q, lift in ((m.semantic_head, "sem_logits", 0.8, 0.0), (m.ins_center, "ctr_hmp", 0.995, 0.3)):
        torch.nn.init.normal_(head.head[1].weight, std=0.05)
        with torch.no_grad():
            y = m(x)[key].flatten()[::7]
            head.head[1].bias.add_(lift - float(torch.quantile(y, q)))
    return m


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found; set EMPANADA_NB_DATA")
    root = tmp_path_factory.mktemp("dist")
    vol = tifffile.imread(SHARED_DATA / "lucchipp_train_image.tif", key=range(40, 52))[:, 200:296, 300:396]
    src = root / "crop.zarr"
    z = zarr.open_array(str(src), mode="w", shape=vol.shape, dtype=vol.dtype, chunks=(4, 96, 96))
    z[:] = vol
    model = _model(vol)
    ref = enb.segment_stack(model, vol, progress=False, **KW)
    return root, src, model, ref


@pytest.fixture(scope="module")
def client(case):
    from distributed import Client, LocalCluster

    hooks = case[0] / "hooks"
    hooks.mkdir()
    old = os.environ.get("EMPANADA_NB_DIST_HOOKS")
    os.environ["EMPANADA_NB_DIST_HOOKS"] = str(hooks)  # the worker processes inherit it
    try:
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
            Client(cluster) as c,
        ):
            c.hooks = hooks
            yield c
    finally:
        if old is None:
            os.environ.pop("EMPANADA_NB_DIST_HOOKS", None)
        else:
            os.environ["EMPANADA_NB_DIST_HOOKS"] = old


def _computed(client) -> list[str]:
    log = client.hooks / "computed.log"
    return log.read_text().split() if log.exists() else []


def _same_objects(a: np.ndarray, b: np.ndarray) -> None:
    """Same background and a bijection between ids with identical masks (ids may differ)."""
    assert a.shape == b.shape
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]).astype(np.int64), axis=1)
    assert ((pairs[0] == 0) == (pairs[1] == 0)).all(), "background differs"
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1], "ids are not one to one"


def _run(case, client, out, **kw):
    _, src, model, _ = case
    return segment_distributed(model, src, out, client, **{**KW, "block": BLOCK, "progress": False, **kw})


def test_distributed_equals_single_process(case, client):
    root, _, _, ref = case
    (client.hooks / "computed.log").unlink(missing_ok=True)
    out = root / "a.zarr"
    labels = _run(case, client, out)
    _same_objects(ref, labels[:])
    # the case is not trivial: objects cross the block faces (z = 4, 8), so the merge joined them
    spans = [np.ptp(np.nonzero(ref == i)[0]) for i in np.unique(ref[ref > 0])]
    assert len(spans) > 5 and sum(s >= 4 for s in spans) > 3
    assert sorted(_computed(client)) == ["0_0_0", "1_0_0", "2_0_0"]
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["empanada_nb"]["complete"] is True and not (out / WORK).exists()
    # OME-Zarr labels: NGFF multiscales + image-label, read back by the opener with every level
    assert "image-label" in group.attrs and group.attrs["multiscales"][0]["datasets"][0]["path"] == "0"
    pyr = enb.open_pyramid(out)
    np.testing.assert_array_equal(np.asarray(pyr.levels[0][:]), labels[:])
    with pytest.raises(FileExistsError, match="exists"):
        _run(case, client, out)


def test_a_killed_worker_does_not_stop_the_run(case, client):
    root, _, _, ref = case
    (client.hooks / "kill_once").touch()  # the first block computed after this kills its worker
    labels = _run(case, client, root / "b.zarr")
    assert (client.hooks / "killed").exists() and not (client.hooks / "kill_once").exists()
    _same_objects(ref, labels[:])


def test_restart_recomputes_only_missing_blocks(case, client):
    root, _, _, ref = case
    out = root / "c.zarr"
    stop = threading.Event()

    def stop_after_one(event):
        if event["stage"] == "blocks" and event["done"] >= 1:
            stop.set()

    (client.hooks / "computed.log").unlink(missing_ok=True)
    with pytest.raises(Cancelled):
        _run(case, client, out, block=SMALL, progress=stop_after_one, cancel=stop)
    # blocks already running when the run stopped finish and keep their records: wait for them
    deadline = time.monotonic() + 120
    while any(client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = {p.stem for p in (out / WORK / "blocks").glob("*.npz")}
    every = {f"{i}_0_0" for i in range(6)}
    assert 1 <= len(done) < 6 and set(_computed(client)) == done
    with pytest.raises(ValueError, match="unfinished run with other settings"):
        _run(case, client, out, block=SMALL, halo=(3, 0, 0))
    (client.hooks / "computed.log").unlink()
    labels = _run(case, client, out, block=SMALL)
    assert sorted(_computed(client)) == sorted(every - done)
    _same_objects(ref, labels[:])


def test_cli_segment_on_a_scheduler_address(case, client, capsys):
    import empanada_nb.cli as cli

    root, src, model, ref = case
    enb.save_model(model, root / "m.pth")
    out = root / "cli.zarr"
    argv = ["segment", root / "m.pth", src, "--out", out, "--cluster", client.scheduler.address, "--quiet"]
    argv += ["--block", "4,96,96", "--iou-thr", "0.5", "--ioa-thr", "1", "--min-size", "20", "--min-extent", "2"]
    assert cli.main([str(a) for a in argv]) == 0
    assert "wrote" in capsys.readouterr().out
    _same_objects(ref, zarr.open_group(str(out), mode="r")["0"][:])
    with pytest.raises(SystemExit):  # argparse: --workers must be an integer
        cli.main(["segment", str(root / "m.pth"), str(src), "--out", str(out), "--cluster", "local", "--workers", "x"])


def test_ortho_blocks_split_in_the_plane_are_merged(case, client):
    root, _, model, _ = case
    vol = np.asarray(zarr.open_array(str(case[1]), mode="r")[:4, :32, :48])
    kw = dict(min_size=0, min_extent=0, iou_thr=0.5, ioa_thr=1.0)
    ref = enb.segment_ortho(model, vol, progress=False, **kw)
    # two blocks split along x; the default halo (128) reaches over the whole crop, so each block
    # sees what the whole-volume run sees and the objects cut at x = 24 must be joined again
    labels = segment_distributed(
        model, vol, root / "ortho.zarr", client, mode="ortho", block=(4, 32, 24), progress=False, **kw
    )
    _same_objects(ref, labels[:])
    crossing = [i for i in np.unique(ref[ref > 0]) if (ref[..., 23] == i).any() and (ref[..., 24] == i).any()]
    assert crossing
