import time
import warnings

import numpy as np
import pytest
import tifffile
import torch
import yaml

import empanada_nb as enb
from empanada_nb.training import checkpoint_path, load_checkpoint, make_optimizer
from empanada_nb.training.checks import warn_unannotated

TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", patch_size=64, batch_size=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    enb.make_synthetic_dataset(root, n_images=6, size=96, seed=1)
    return root


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def test_loss_falls_and_model_is_saved_with_card(dataset, tmp_path):
    h = _quiet(enb.train, dataset, out=tmp_path / "m.pth", iterations=30, **TINY)
    steps = h.events("step")
    assert len(steps) == 30 and set(steps[0]["terms"]) == {"ce", "mse", "l1"}
    assert np.mean([s["loss"] for s in steps[-5:]]) < 0.6 * np.mean([s["loss"] for s in steps[:5]])
    assert all(s["images_per_s"] > 0 and s["lr"] > 0 for s in steps)
    assert h.events("end")[-1]["stopped"] is False
    card = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert card["architecture"] == "PanopticDeepLab" and card["encoder"] == "resnet18"
    assert card["config"]["iterations"] == 30 and card["padding_factor"] == 16
    assert card["history_summary"]["iterations"] == 30
    m = enb.load_model(tmp_path / "m.pth")
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x)["sem_logits"], h.model.eval()(x)["sem_logits"])
    # it trained channels_last (the CPU default too) and the user gets plain NCHW weights back
    assert card["config"]["channels_last"] is True
    assert all(p.is_contiguous() for p in h.model.parameters())


def test_steps_run_bfloat16_where_the_cpu_has_it_and_float32_when_amp_is_off(dataset, tmp_path):
    from empanada_nb.precision import native_bf16_cpu

    convs: list[torch.dtype] = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and module.training and torch.is_grad_enabled():
            convs.append(output.dtype)  # the training steps' convolutions, not validation's

    ran = {}
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        for amp in (True, False):
            convs.clear()
            h = _quiet(enb.train, dataset, out=tmp_path / f"{amp}.pth", iterations=3, amp=amp, **TINY)
            ran[amp] = (set(convs), yaml.safe_load((tmp_path / f"{amp}.yaml").read_text()), h)
    finally:
        handle.remove()
    native = native_bf16_cpu()
    assert ran[True][0] == {torch.bfloat16 if native else torch.float32}
    assert ran[True][1]["lineage"]["step_precision"] == ("bf16" if native else "fp32")
    assert ran[False][0] == {torch.float32} and ran[False][1]["lineage"]["step_precision"] == "fp32"
    # the weights stay float32 (autocast casts per operation) and the loss is a finite number
    for amp in (True, False):
        assert all(p.dtype == torch.float32 for p in ran[amp][2].model.parameters())
        assert all(np.isfinite(s["loss"]) for s in ran[amp][2].events("step"))


def test_one_cycle_lr_and_no_decay_on_biases_and_norms(dataset, tmp_path):
    h = _quiet(enb.train, dataset, out=tmp_path / "m.pth", iterations=10, lr=1e-3, **TINY)
    lrs = [s["lr"] for s in h.events("step")]
    assert max(lrs) <= 1e-3 + 1e-9 and lrs[0] < max(lrs) and lrs[-1] < max(lrs) / 10
    opt = make_optimizer(enb.build_model("PanopticDeepLab", "resnet18"), enb.TrainConfig())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])


def test_background_run_stops_after_current_step_and_saves(dataset, tmp_path):
    seen = []
    h = _quiet(
        enb.train, dataset, out=tmp_path / "bg.pth", iterations=500, background=True, callbacks=[seen.append], **TINY
    )
    while not any(e["type"] == "step" for e in seen):
        assert not h.done, "run ended early"
        time.sleep(0.05)
    h.stop()
    h.wait(timeout=120)
    end = h.events("end")[-1]
    assert end["stopped"] is True and end["iteration"] < 500
    assert (tmp_path / "bg.pth").exists() and checkpoint_path(tmp_path / "bg.pth").exists()
    assert h.history == seen
    assert enb.load_model(tmp_path / "bg.pth").card.history_summary["iterations"] == end["iteration"]


def test_keyboard_interrupt_saves_and_resume_continues_exactly(dataset, tmp_path):
    cfg = dict(iterations=6, checkpoint_interval=2, **TINY)
    full = _quiet(enb.train, dataset, out=tmp_path / "full.pth", **cfg)

    def interrupt(e):
        if e["type"] == "step" and e["iteration"] == 3:
            raise KeyboardInterrupt

    part = _quiet(enb.train, dataset, out=tmp_path / "part.pth", callbacks=[interrupt], **cfg)
    assert part.events("end")[-1] == {**part.events("end")[-1], "stopped": True, "iteration": 3}
    assert load_checkpoint(checkpoint_path(tmp_path / "part.pth"))["iteration"] == 3
    resumed = _quiet(enb.train, dataset, out=tmp_path / "part.pth", resume=True, **cfg)
    assert [s["iteration"] for s in resumed.events("step")] == [1, 2, 3, 4, 5, 6]
    a = full.model.state_dict()
    b = resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_finetune_none_trains_decoder_only_and_freezes_bn(dataset, tmp_path):
    base = enb.build_model("PanopticDeepLab", "resnet18")
    enc_before = {k: v.clone() for k, v in base.encoder.state_dict().items()}
    dec_before = base.ins_center.head[1].weight.clone()
    with pytest.warns(UserWarning) as rec:
        h = enb.finetune(
            base, dataset, layers="none", out=tmp_path / "ft.pth", iterations=4, patch_size=64, batch_size=2
        )
    msgs = " ".join(str(w.message) for w in rec)
    assert "BatchNorm" in msgs and "with replacement" not in msgs
    for k, v in h.model.encoder.state_dict().items():
        torch.testing.assert_close(v, enc_before[k], msg=k)  # weights and BN statistics untouched
    assert not torch.equal(h.model.ins_center.head[1].weight, dec_before)
    assert enb.load_model(tmp_path / "ft.pth").card.finetunable_layers == "none"


def test_finetune_stage4_changes_only_stage4(dataset, tmp_path):
    base = enb.build_model("PanopticDeepLab", "resnet18")
    l3 = {k: v.clone() for k, v in base.encoder.stage(3).state_dict().items()}
    l4w = base.encoder.stage(4)[0].conv1.weight.clone()
    h = _quiet(
        enb.finetune, base, dataset, layers="stage4", out=tmp_path / "ft.pth", iterations=3, patch_size=64, batch_size=8
    )
    for k, v in h.model.encoder.stage(3).state_dict().items():
        torch.testing.assert_close(v, l3[k])
    assert not torch.equal(h.model.encoder.stage(4)[0].conv1.weight, l4w)


def test_small_dataset_sampled_with_replacement_warning(tmp_path):
    enb.make_synthetic_dataset(tmp_path / "ds", n_images=2, size=64)
    with pytest.warns(UserWarning, match="with replacement"):
        h = enb.train(tmp_path / "ds", out=tmp_path / "m.pth", iterations=2, **{**TINY, "batch_size": 8})
    assert h.events("end")[-1]["iteration"] == 2


def test_unannotated_masks_among_filled_ones_warn(tmp_path):
    # an all-zero mask among filled ones: probably an image nobody annotated (3 VNC slices in ../shared)
    enb.make_synthetic_dataset(tmp_path / "ds", n_images=4, size=96, seed=2)
    masks = sorted((tmp_path / "ds").rglob("masks/*.tif"))
    tifffile.imwrite(masks[1], np.zeros_like(tifffile.imread(masks[1])))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enb.train(tmp_path / "ds", out=tmp_path / "m.pth", iterations=1, **TINY)
    hits = [str(w.message) for w in caught if "hold no object" in str(w.message)]
    assert len(hits) == 1 and masks[1].name in hits[0] and hits[0].startswith("1 of 4 training masks")


def test_unannotated_rule_spares_sparse_and_all_empty_data():
    full, sparse, empty = np.zeros((3, 100, 100), np.int64)
    full[:30, :30] = 1  # 9 % foreground
    sparse[:5, :5] = 1  # 0.25 %: organelles this rare make an empty image plausible
    names = [f"{i}.tif" for i in range(7)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these may warn
        assert warn_unannotated([sparse, sparse, empty], names) == []
        assert warn_unannotated([empty, empty], names) == []
        assert warn_unannotated([full, full], names) == []
        # sparse labels: background drawn on purpose beside unlabelled pixels is a negative example
        drawn = np.full((100, 100), -1, np.int64)
        drawn[:50] = 0
        assert warn_unannotated([full, full, drawn], names) == []
    shown = r"6 of 7 training masks hold no object \(1.tif, 2.tif, 3.tif, 4.tif, 5.tif, ...\)"
    with pytest.warns(UserWarning, match=shown):
        assert warn_unannotated([full] + [empty] * 6, names) == [1, 2, 3, 4, 5, 6]


def test_bad_arguments_fail_before_training(dataset, tmp_path):
    with pytest.raises(ValueError, match="48 or 64"):
        enb.train(dataset, out=tmp_path / "m.pth", iterations=2, **{**TINY, "patch_size": 50})
    with pytest.raises(ValueError, match="128"):
        enb.train(dataset, out=tmp_path / "m.pth", iterations=2, **{**TINY, "architecture": "PanopticBiFPN"})
    with pytest.raises(TypeError, match="patchsize"):
        enb.train(dataset, out=tmp_path / "m.pth", patchsize=64)
    with pytest.raises(ValueError, match="val_interval"):
        enb.TrainConfig(val_interval=0)
    (tmp_path / "exists.pth").write_bytes(b"finished run")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        enb.train(dataset, out=tmp_path / "exists.pth", iterations=2, **TINY)
    assert (tmp_path / "exists.pth").read_bytes() == b"finished run"
    assert not list(tmp_path.glob("m*"))


def test_intervals_never_zero_and_config_yaml_roundtrip(tmp_path):
    cfg = enb.TrainConfig(iterations=3)
    assert cfg.val_every == 1 and cfg.checkpoint_every == 1
    cfg = enb.TrainConfig(iterations=50, patch_size=128, class_names={1: "mito"}, scale=[0.5, 2.0])
    cfg.to_yaml(tmp_path / "c.yaml")
    assert enb.TrainConfig.from_yaml(tmp_path / "c.yaml") == cfg
    with pytest.raises(ValueError, match="unknown"):
        enb.TrainConfig.from_yaml("iterations: 5\nlearning_rate: 0.1\n")


def test_load_model_rejects_other_formats(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an empanada_nb model"):
        enb.load_model(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(ValueError, match="not a model file"):
        enb.load_model(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="registered"):
        enb.load_model("MitoNet_v9")


def test_registered_name_resolves_to_file(tmp_path):
    m = enb.build_model("PanopticBiFPN", "resnet18", num_classes=2)
    enb.save_model(m, tmp_path / "bifpn.pth")
    enb.register_model("my-bifpn", str(tmp_path / "bifpn.pth"))
    m2 = enb.load_model("my-bifpn")
    assert m2.architecture == "PanopticBiFPN" and m2.num_classes == 2 and m2.card.padding_factor == 128


def test_validation_events_report_iou_pq_f1(dataset, tmp_path):
    h = _quiet(enb.train, dataset, out=tmp_path / "m.pth", iterations=4, val_fraction=0.34, val_interval=2, **TINY)
    vals = h.events("validation")
    # on schedule at 2 and 4; a fitted foreground threshold adds one more at the end, marked calibrated
    assert [v["iteration"] for v in vals if not v.get("calibrated")] == [2, 4]
    assert all(v["iteration"] == 4 for v in vals if v.get("calibrated"))
    assert len(vals) == 2 + bool(h.events("calibration") and h.events("calibration")[0]["applied"])
    for v in vals:
        assert {"iou", "pq", "f1"} <= set(v) and all(0.0 <= v[k] <= 1.0 for k in ("iou", "pq", "f1"))
    assert "iou" in enb.load_model(tmp_path / "m.pth").card.history_summary
