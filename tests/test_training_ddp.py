"""Training under torchrun: two CPU processes (gloo) run the same loop under DistributedDataParallel.

Rank 0 alone reports, writes the model, checkpoints and the events log; both ranks end holding the
saved weights; a resumed run (through the CLI, as a SLURM job would launch it) continues from the
checkpoint. One torchrun launch each, resnet18 on 64-pixel patches, one thread per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import empanada_nb as enb

SCRIPT = """
import json, os, sys
from pathlib import Path
import torch
import empanada_nb as enb

torch.set_num_threads(1)
data, out = sys.argv[1], Path(sys.argv[2])
h = enb.train(
    data, out=out, encoder="resnet18", pretrained=None, iterations=3, patch_size=64, batch_size=4,
    min_bn_batch=2, checkpoint_interval=2, val_fraction=0, callbacks=[lambda e: None],
)
rank = int(os.environ["RANK"])
torch.save(h.model.state_dict(), out.parent / f"rank{rank}.pt")
steps = [e["iteration"] for e in h.events("step")]
(out.parent / f"rank{rank}.json").write_text(json.dumps({"callbacks": len(h._callbacks), "steps": steps}))
if rank == 0:  # what the first run saved (the resumed run replaces it)
    torch.save(enb.load_model(out).state_dict(), out.parent / "saved.pt")
# resume through the CLI, as `torchrun -m empanada_nb train ... --resume` in a SLURM job would
from empanada_nb.cli import main
sys.exit(main(["train", "--train-dir", data, "--out", str(out), "--iterations", "4", "--resume"]))
"""


def torchrun(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(Path(enb.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    data = enb.make_synthetic_dataset(tmp / "data", n_images=4, size=64, seed=3)
    (tmp / "train.py").write_text(SCRIPT)
    r = torchrun(str(tmp / "train.py"), str(data), str(tmp / "out" / "mito.pth"), cwd=tmp)
    return tmp, data, r


def test_rank0_alone_reports_and_writes(run):
    tmp, _, r = run
    out = tmp / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "mito.checkpoint.pth", "mito.events.jsonl", "mito.pth", "mito.yaml",
        "rank0.json", "rank0.pt", "rank1.json", "rank1.pt", "saved.pt",
    ]  # fmt: skip
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == [1, 2, 3]  # both ranks ran every iteration
    assert r0["callbacks"] == 2 and r1["callbacks"] == 0  # the user's callback and the events log: rank 0 only
    events = [json.loads(line) for line in (out / "mito.events.jsonl").read_text().splitlines()]
    assert events[0]["format"].startswith("empanada_nb-events/")
    assert [e["iteration"] for e in events if e["type"] == "step"] == [1, 2, 3, 4]  # once each: one writer
    assert events[-1]["type"] == "end" and [e["type"] for e in events].count("end") == 1  # the resumed run's log
    assert [e["type"] for e in enb.follow_events(out / "mito.events.jsonl")][-1] == "end"


def test_all_ranks_hold_the_saved_weights(run):
    tmp, _, _ = run
    saved = torch.load(tmp / "out" / "saved.pt")
    fresh = enb.build_model("PanopticDeepLab", "resnet18").state_dict()
    ranks = [torch.load(tmp / "out" / f"rank{r}.pt") for r in (0, 1)]
    for k, v in saved.items():
        assert torch.equal(ranks[0][k], v) and torch.equal(ranks[1][k], v), k
    assert any(not torch.equal(saved[k], fresh[k]) for k in saved if saved[k].is_floating_point())  # it trained


def test_cli_resume_under_torchrun(run):
    tmp, _, r = run
    assert r.stdout.count("model saved to") == 1  # rank 0 alone prints the CLI's summary
    card = enb.load_model(tmp / "out" / "mito.pth").card
    assert card.config["iterations"] == 4 and card.history_summary["iterations"] == 4
    assert torch.load(tmp / "out" / "mito.checkpoint.pth", weights_only=False)["iteration"] == 4
