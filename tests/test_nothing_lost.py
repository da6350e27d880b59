"""Nothing lost: patch saves killed in a loop, training runs found and resumed from the dashboard, lineage.

The kill loop runs ``save_patches`` in child processes started by a fresh forkserver (no fork of this
process's torch threads) and SIGKILLs it 20 times at random moments; after each kill every file under a
final name reads whole, no image lacks its mask, and every pair written before the kill is byte for
byte what it was. The next save removes the killed writers' temporaries.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from fault_workers import fault_loop

import empanada_nb as enb


def test_patch_save_killed_20_times_leaves_nothing_half_written(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    vol, _ = enb.synthetic_volume((4, 64, 64), n_objects=3, seed=4)
    np.save(data / "vol.npy", vol)
    records = fault_loop("patch_save", signal.SIGKILL, tmp_path / "out", data, kills=20, seed=11)
    assert len(records) == 20 and all(r["exitcode"] == -signal.SIGKILL for r in records)
    assert records[-1]["pairs"] >= records[0]["pairs"] > 0  # patches accumulate across the kills


# ------------------------------------------------------------------------------------ lineage

TINY = dict(encoder="resnet18", patch_size=64, batch_size=2, min_bn_batch=2, pretrained=None)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread; on a busy 2-core machine two threads made them 6x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_lineage_hashes_change_when_a_training_file_changes(tmp_path, one_thread):
    import warnings

    import tifffile
    import yaml

    from empanada_nb.training.lineage import file_sha256

    data = enb.make_synthetic_dataset(tmp_path / "data", n_images=2, size=64, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = enb.train(data, out=tmp_path / "a.pth", iterations=1, **TINY)
    card = yaml.safe_load((tmp_path / "a.yaml").read_text())
    files = card["lineage"]["dataset"]["files"]
    assert [f["role"] for f in files] == ["train image", "train mask"] * 2
    for f in files:
        assert f["sha256"] == file_sha256(f["path"]) and len(f["sha256"]) == 64
    assert card["lineage"]["settings"]["iterations"] == 1 and card["lineage"]["settings"]["encoder"] == "resnet18"
    assert enb.model_info(tmp_path / "a.pth")["lineage"]["dataset"]["sha256"] == card["lineage"]["dataset"]["sha256"]
    # one mask changes: its hash and the dataset's change, the others stay
    mask = next(f["path"] for f in files if f["role"] == "train mask")
    m = tifffile.imread(mask)
    m[:4, :4] = 0
    tifffile.imwrite(mask, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned = enb.finetune(tmp_path / "a.pth", data, out=tmp_path / "b.pth", iterations=1, **TINY)
    card2 = yaml.safe_load((tmp_path / "b.yaml").read_text())
    files2 = card2["lineage"]["dataset"]["files"]
    changed = [a["path"] for a, b in zip(files, files2) if a["sha256"] != b["sha256"]]
    assert changed == [mask] and card2["lineage"]["dataset"]["sha256"] != card["lineage"]["dataset"]["sha256"]
    parent = card2["lineage"]["parent"]
    assert parent["sha256"] == file_sha256(tmp_path / "a.pth") and parent["name"] == str(tmp_path / "a.pth")
    assert parent["weights_sha256"] != enb.training.lineage.weights_sha256(tuned.model)
    assert card2["lineage"]["parent_lineage"]["dataset"] == {**card["lineage"]["dataset"], "files": 4}
    assert first.model is not None


# ------------------------------------------------------------------------------ resume from the dashboard


def test_dashboard_lists_checkpoints_and_resumes_with_the_history(tmp_path, one_thread):
    import warnings

    from empanada_nb.widgets import TrainingDashboard

    data = enb.make_synthetic_dataset(tmp_path / "data", n_images=2, size=64, seed=2)
    out = tmp_path / "runs" / "mito.pth"

    def die_at_2(e):  # the run ends after iteration 2 of 4, as a dead kernel leaves it: a checkpoint at 2
        if e["type"] == "step" and e["iteration"] == 2:
            run.stop()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = enb.train(data, out=out, iterations=4, background=True, callbacks=[die_at_2], **TINY)
        run.wait(600)
    before = [(e["iteration"], e["loss"]) for e in run.events("step")]
    assert [i for i, _ in before] == [1, 2]

    d = TrainingDashboard(out=str(tmp_path / "runs" / "other.pth"))  # a new kernel: only the folder is known
    [c] = d.checkpoints
    assert (c["name"], c["mode"], c["iteration"], c["iterations"], c["finished"]) == ("mito.pth", "train", 2, 4, False)
    assert c["path"] == str(out.with_name("mito.checkpoint.pth")) and c["events"] >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d._on_custom_msg(d, {"type": "resume", "path": c["path"]}, [])  # the browser's Resume button
        assert d.status == "resuming mito.checkpoint.pth", d.status
        d.wait(600)
    steps = [(e["iteration"], e["loss"]) for e in d.history if e["type"] == "step"]
    assert [i for i, _ in steps] == [1, 2, 3, 4] and steps[:2] == before  # the plot has the history up to the restart
    assert d.out == str(out) and not d.running and d.history[-1]["type"] == "end"
    assert d.checkpoints[0]["finished"] and d.checkpoints[0]["iteration"] == 4
    lineage = enb.model_info(out)["lineage"]
    assert lineage["train_dir"] == str(data.resolve()) and lineage["dataset"]["files"] == 4  # a count in the summary
