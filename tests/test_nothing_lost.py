"""Nothing lost: patch saves killed in a loop, training runs found and resumed from the dashboard, lineage.

The kill loop runs ``save_patches`` in child processes started by a fresh forkserver (no fork of this
process's torch threads) and SIGKILLs it 20 times at random moments; after each kill every file under a
final name reads whole, no image lacks its mask, and every pair written before the kill is byte for
byte what it was. The next save removes the killed writers' temporaries.
"""

from __future__ import annotations

import signal

import numpy as np
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
