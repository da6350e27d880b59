"""Time budget (issue 15) and training throughput settings (issue 14): workers, frozen layers."""

import argparse
import time
import warnings

import pytest
import torch

import empanada_nb as enb
from empanada_nb.cli._train_args import add_common, config_from
from empanada_nb.data.dataset import PanopticDataset, find_pairs
from empanada_nb.losses import PanopticLoss
from empanada_nb.training import checkpoint_path, load_checkpoint
from empanada_nb.training.loader import batch_loader, resolve_workers, usable_cpus

TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", patch_size=64, batch_size=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    enb.make_synthetic_dataset(root, n_images=6, size=96, seed=1)
    return root


@pytest.fixture
def one_thread():
    # one torch thread: on an oversubscribed machine two threads make a tiny step take seconds,
    # and this test is about fitting the run to its budget, not about threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_time_budget_fits_iterations_and_completes_the_cycle(dataset, tmp_path, one_thread):
    budget = 0.1  # minutes
    t = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(
            dataset, out=tmp_path / "m.pth", max_minutes=budget, lr=1e-3, val_fraction=0.2, **{**TINY, "batch_size": 2}
        )
    took = time.monotonic() - t
    steps, fits, end = h.events("step"), h.events("budget"), h.events("end")[-1]
    assert fits and fits[0]["iteration"] <= 4  # fixed after the warm-up step and 3 timed steps
    assert end["stopped"] is False and end["iteration"] == steps[-1]["iteration"]
    # the budget, not the provisional 1000 iterations, ended the run (generous bound: CI machines are loaded)
    assert end["iteration"] < 1000 and took < 3 * budget * 60 + 30
    assert 0 < steps[0]["eta"] <= budget * 60  # the ETA is known from the first step
    m = enb.load_model(tmp_path / "m.pth")
    assert m.card.config["max_minutes"] == budget and m.card.history_summary["iterations"] == end["iteration"]
    if end["iteration"] < fits[-1]["iterations"]:
        # the last-resort stop: a step took far longer than the fit expected (a machine overloaded
        # mid-run); the model is still complete and saved, which is what this case can assert
        return
    # the last refit may come after the last step event (ending the run there): its count is the run's
    assert end["iteration"] == fits[-1]["iterations"] <= steps[-1]["iterations"]
    assert h.events("validation")[-1]["iteration"] == end["iteration"]
    # the LR cycle was fitted to the iterations run and completed: its last step ran at the final LR
    sched = load_checkpoint(checkpoint_path(tmp_path / "m.pth"))["scheduler"]
    assert sched["total_steps"] == sched["last_epoch"] == end["iteration"]
    # room to anneal, and no late refit (a refit that shrinks the count in the last steps cuts the anneal
    # short: a known limit of the budget, noted for the next change of training/budget.py)
    if end["iteration"] > fits[0]["iteration"] + 2 and fits[-1]["iteration"] < end["iteration"] - 1:
        assert steps[-2]["lr"] < 0.01 * 1e-3 < 0.5e-3 < max(s["lr"] for s in steps)
    assert m.card.config["iterations"] == end["iteration"]


def test_budget_keeps_time_for_the_threshold_fit():
    from empanada_nb.training.budget import TimeBudget

    b = TimeBudget(1.0, started=0.0)
    b.step(2.0, 1, first=True)
    b.step(1.0, 2, first=False)
    args = (2, None, lambda n: 10**6, 0.0, 0.0)
    assert b.fit(*args, now=0.0) == 2 + 60  # 60 s left at 1 s a step
    assert b.fit(*args, now=0.0, end_s=10.0) == 2 + 50  # 10 s kept for the fit after the last step


def test_budget_validates_and_reaches_the_config_from_the_cli():
    with pytest.raises(ValueError, match="max_minutes"):
        enb.TrainConfig(max_minutes=0)
    with pytest.raises(ValueError, match="num_workers"):
        enb.TrainConfig(num_workers=-1)
    p = argparse.ArgumentParser()
    add_common(p)
    args = p.parse_args(["--train-dir", "d", "--out", "m.pth", "--max-minutes", "2.5", "--num-workers", "0"])
    cfg = config_from(args)
    assert cfg.max_minutes == 2.5 and cfg.num_workers == 0 and cfg.calibrate is True
    assert config_from(p.parse_args(["--train-dir", "d", "--out", "m.pth", "--no-calibrate"])).calibrate is False
    assert config_from(p.parse_args(["--train-dir", "d", "--out", "m.pth"])).num_workers == "auto"
    assert cfg.amp is True
    assert config_from(p.parse_args(["--train-dir", "d", "--out", "m.pth", "--no-amp"])).amp is False


def test_dashboard_form_has_the_time_budget():
    from empanada_nb.widgets import TrainingDashboard

    d = TrainingDashboard(max_minutes=2.5)
    assert d.train_config().max_minutes == 2.5 and "max_minutes" not in d.errors
    d.max_minutes = 0.0
    assert d.train_config().max_minutes is None  # 0: train for the iterations
    d.max_minutes = -1.0
    assert "max_minutes" in d.errors


def test_worker_batches_equal_in_process_batches(dataset):
    ds = PanopticDataset(find_pairs(dataset), patch_size=64, batch_size=3, iterations=4, seed=5)
    here = list(batch_loader(ds, range(1, 4), workers=0))
    there = list(batch_loader(ds, range(1, 4), workers=1))
    assert len(here) == len(there) == 3
    for a, b in zip(here, there):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(here[0]["image"], here[1]["image"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert resolve_workers("auto", torch.device("cpu")) == min(4, usable_cpus() - 1)  # the cores left free
    finally:
        torch.set_num_threads(threads)
    assert resolve_workers(2, torch.device("cpu")) == 2


@pytest.mark.parametrize("layers,first_trained", [("none", None), ("stage4", 4)])
def test_frozen_encoder_records_no_graph_and_gets_no_grad(layers, first_trained, one_thread):
    model = enb.build_model("PanopticDeepLab", "resnet18")
    enb.set_finetunable(model, layers)
    frozen = [p for p in model.encoder.parameters() if not p.requires_grad]
    assert frozen
    model.train()
    feats = model.encoder(torch.randn(2, 1, 32, 32))
    # no autograd graph through the frozen stages: backward stops where training starts
    for i, f in enumerate(feats):
        assert (f.grad_fn is not None) == (first_trained is not None and i >= first_trained), i
    out = model(torch.randn(2, 1, 32, 32))
    tgt = {
        "sem": torch.randint(0, 2, (2, 32, 32)),
        "ctr_hmp": torch.rand(2, 1, 32, 32),
        "offsets": torch.randn(2, 2, 32, 32),
        "thing": torch.rand(2, 32, 32) > 0.5,
    }
    PanopticLoss()(out, tgt)[0].backward()
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
