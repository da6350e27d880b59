"""Autosave of the Viewer's label edits, picks and regions, and restoring them in a new Viewer.

Real TIFF files in tmp_path; a "kernel restart" is a second Viewer on the same file after the first
one's autosave was written (the kill of a real kernel is tests/browser/test_browser_autosave.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from empanada_nb import autosave as A
from empanada_nb.data.io import write_tiff
from empanada_nb.widgets import Viewer


@pytest.fixture
def vol_file(tmp_path):
    vol = (np.arange(6 * 48 * 48) % 251).astype(np.uint8).reshape(6, 48, 48)
    path = tmp_path / "cell.tif"
    write_tiff(path, vol)
    return path


def session_files(v):
    return sorted(p.relative_to(v.autosave_path).as_posix() for p in v.autosave_path.rglob("*" + A.SLICE_SUFFIX))


def test_edits_picks_regions_restore_in_a_new_viewer(vol_file):
    v = Viewer(vol_file, patch_size=16)
    v.paint([[10, 10], [10, 30]], size=3, label=4, index=2)
    v.paint([[3, 5], [3, 40]], size=1, label=9, axis="xz", index=20)  # one row on every z
    v.new_layer("cells")
    v.paint([[20, 20]], size=5, label=2, index=5, layer="cells")
    v.add_pick("xy", 2, 24, 24)
    v.add_region([[0, 0], [20, 20]], shape="rectangle", slice=2)
    v.flush_autosave()
    assert v.autosave_path.parent.name.startswith("cell.tif-")
    before = {l.name: l.data.copy() for l in v.label_layers}

    w = Viewer(vol_file, patch_size=16)
    assert w.autosave_offer.startswith("unsaved work on this image: 2 label layers")
    msg = w.restore_autosave()
    assert msg.startswith("restored 2 label layers (") and "1 pick, 1 region from" in msg
    assert {l.name: l.data for l in w.label_layers}.keys() == before.keys()
    for l in w.label_layers:
        assert np.array_equal(l.data, before[l.name]), l.name
    assert w.picks == v.picks and w.regions == v.regions
    assert w.autosave_offer == "" and w.message == msg
    # the old session went; the restored state is the new Viewer's own session
    assert [s["path"] for s in A.list_autosaves(vol_file)] == [w.autosave_path]


def test_only_changed_slices_are_rewritten(vol_file):
    v = Viewer(vol_file, labels=np.zeros((6, 48, 48), np.uint32))
    v.paint([[10, 10]], size=3, label=1, index=1)
    v.flush_autosave()
    first = v.autosave_path / "layers" / f"layer{v.label_layers[0].uid}" / "z000001.npy.z"
    ino = first.stat().st_ino
    v.paint([[10, 10]], size=3, label=1, index=4)
    v.flush_autosave()
    assert first.stat().st_ino == ino  # slice 1 was not written again (atomic writes make new inodes)
    assert [f.rsplit("/", 1)[1] for f in session_files(v)] == ["z000001.npy.z", "z000004.npy.z"]
    v.undo()
    v.flush_autosave()  # slice 4 is empty again: its file goes, the listing says so
    assert [f.rsplit("/", 1)[1] for f in session_files(v)] == ["z000001.npy.z"]
    assert json.loads((v.autosave_path / "session.json").read_text())["layers"][0]["slices"] == [1]


def test_given_labels_are_kept_whole_and_replaced_layers_saved_again(vol_file):
    lab = np.zeros((6, 48, 48), np.uint16)
    lab[0, :5, :5] = 3
    lab[5, 40:, 40:] = 8
    v = Viewer(vol_file, labels={"mito": lab})
    v.paint([[20, 20]], size=3, label=5, index=3)
    v.flush_autosave()
    w = Viewer(vol_file)  # opened without the labels: the session has all of them
    w.restore_autosave()
    assert w.layer("mito").data.dtype == np.uint16 and np.array_equal(w.layer("mito").data, lab)
    w.set_labels("mito", np.zeros((6, 48, 48), np.uint16))  # replaced whole, outside the edit path
    w.flush_autosave()
    assert session_files(w) == []


def test_debounced_save_happens_without_flush(vol_file):
    v = Viewer(vol_file)
    v.add_pick("xy", 3, 20, 20, size=16)
    meta = v.autosave_path / "session.json"
    t0 = time.time()
    while not meta.exists() and time.time() - t0 < 30:
        time.sleep(0.1)
    assert json.loads(meta.read_text())["picks"] == v.picks


def test_a_different_file_of_the_same_name_offers_nothing(vol_file, tmp_path):
    v = Viewer(vol_file)
    v.add_pick("xy", 3, 20, 20, size=16)
    v.flush_autosave()
    other = (np.arange(6 * 48 * 48) % 13).astype(np.uint8).reshape(6, 48, 48)
    vol_file.unlink()
    write_tiff(vol_file, other)  # same name, other content
    w = Viewer(vol_file)
    assert w.autosave_offer == "" and w.picks == []
    with pytest.raises(ValueError, match="no autosaved session"):
        w.restore_autosave()


def test_discard_keeps_what_the_user_saved(vol_file, tmp_path):
    v = Viewer(vol_file, labels=np.zeros((6, 48, 48), np.uint32), patch_size=16)
    v.paint([[20, 20]], size=5, label=2, index=3)
    v.add_pick("xy", 3, 20, 20)
    saved = v.save_patches(tmp_path / "ds", name="mine")
    v.flush_autosave()
    w = Viewer(vol_file)
    assert w.discard_autosave() == 1
    assert w.autosave_offer == "" and A.list_autosaves(vol_file) == []
    assert (Path(saved["dir"]) / "images" / saved["written"][0]).is_file() and vol_file.is_file()
    with pytest.raises(ValueError, match="not an autosave session"):
        A.clear_autosave(tmp_path / "ds")


def test_location_beside_the_file_or_in_the_cache(vol_file, monkeypatch, tmp_path):
    monkeypatch.delenv(A.ENV_AUTOSAVE)
    monkeypatch.setenv("EMPANADA_NB_HOME", str(tmp_path / "home"))
    assert A.autosave_dir(vol_file).parent == vol_file.parent / A.BESIDE
    monkeypatch.setattr(A, "_writable_beside", lambda p: False)  # someone else's file, or a read-only folder
    where = A.autosave_dir(vol_file)
    assert where.parent == tmp_path / "home" / "autosave" and where.name.startswith("cell.tif-")
    v = Viewer(vol_file)
    v.add_pick("xy", 3, 20, 20, size=16)
    assert v.flush_autosave().parent == where and not (vol_file.parent / A.BESIDE).exists()


def test_arrays_autosave_when_asked_and_close_writes_pending(tmp_path):
    image = np.zeros((2, 32, 32), np.uint8)
    assert Viewer(image).autosave_path is None  # arrays: off unless asked
    v = Viewer(image, autosave=True)
    v.paint([[4, 4]], size=3, label=1, index=0)
    v.close()  # before the debounce: close writes it
    assert json.loads((v.autosave_path / "session.json").read_text())["layers"][0]["slices"] == [0]
    assert v.autosave_path.parent.name == f"array-{A.fingerprint(image)[:16]}"


def test_a_folder_of_our_outputs_stays_ours_with_an_autosave_beside_a_file(tmp_path, monkeypatch):
    from empanada_nb._atomic import is_ours

    monkeypatch.delenv(A.ENV_AUTOSAVE)
    out = tmp_path / "results"
    out.mkdir()
    write_tiff(out / "seg.tif", np.zeros((2, 16, 16), np.uint32))
    assert is_ours(out)
    v = Viewer(out / "seg.tif")
    v.add_pick("xy", 1, 8, 8, size=8)
    assert v.flush_autosave().parent.parent == out / A.BESIDE
    assert is_ours(out)
