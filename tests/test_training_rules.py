"""empanada's config YAML translated onto TrainConfig, several training folders, and the guides' rules."""

import warnings

import pytest
import yaml

import empanada_nb as enb
from empanada_nb.data.io import write_tiff
from empanada_nb.training import ARCHITECTURE_HINTS, LAYER_HINTS, batch_size_warning, train_dirs
from empanada_nb.training.rules import pairs_of

# no CEM weights: they exist for resnet50 only, and tests never download
TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", patch_size=64, batch_size=4, pretrained=None)

# empanada-napari's custom_configs/custom_training_pdl.yaml layout (values of our own), opening with the
# """docstring""" its first custom configs had
EMPANADA_TRAINING = '''"""
Variables set to null are filled in by the GUI.
"""

model_name: null
description: "ER and mitochondria in HeLa"

DATASET:
  class_names: {1: mito, 2: er}
  labels: [1, 2]
  thing_list: [1]
  norms: null

MODEL:
  arch: "PanopticBiFPNPR"
  encoder: "resnet18"
  num_classes: 3
  aspp_dropout: 0.5

TRAIN:
  lr_schedule: "OneCycleLR"
  schedule_params: {max_lr: 0.002, epochs: null, steps_per_epoch: -1, pct_start: 0.25}
  amp: False
  optimizer: "AdamW"
  optimizer_params: {weight_decay: 0.05}
  criterion: "PanopticLoss"
  criterion_params: {ce_weight: 1, mse_weight: 100, l1_weight: 0.02, top_k_percent: 0.2, pr_weight: 1}
  print_freq: 50
  metrics:
    - {metric: "IoU", name: "semantic_iou", labels: null, output_key: "sem_logits", target_key: "sem"}
  batch_size: 8
  workers: 2
  dataset_class: null
  dataset_params: {weight_gamma: 0.5}
  augmentations:
    - {aug: "RandomScale", scale_limit: [-0.5, 1]}
    - {aug: "PadIfNeeded", min_height: 256, min_width: 256, border_mode: 0}
    - {aug: "RandomCrop", height: 128, width: 128}
    - {aug: "HorizontalFlip"}
    - {aug: "GaussNoise"}
  train_dir: null
  additional_train_dirs: [/data/extra1, /data/extra2]
  model_dir: null
  save_freq: null
  encoder_pretraining: null
  finetune_layer: "stage4"

EVAL:
  eval_dir: null
  epochs_per_eval: null
  metrics:
    - {metric: "PQ", name: "pq", labels: null, label_divisor: 1000, output_key: "pan_seg", target_key: "pan_seg"}
  engine: "PanopticDeepLabEngine"
  engine_params: {thing_list: [1], label_divisor: 1000, stuff_area: 64, void_label: 0, nms_threshold: 0.2,
                  nms_kernel: 7, confidence_thr: 0.4}
'''


def test_empanada_training_yaml_translated_and_unmapped_named(tmp_path):
    path = tmp_path / "custom_training.yaml"
    path.write_text(EMPANADA_TRAINING)
    cfg, unmapped = enb.config_from_empanada_yaml(path)
    assert (cfg.architecture, cfg.pointrend, cfg.encoder, cfg.num_classes) == ("PanopticBiFPN", True, "resnet18", 2)
    assert cfg.class_names == {1: "mito", 2: "er"} and cfg.thing_list == [1]
    assert (cfg.lr, cfg.pct_start, cfg.weight_decay, cfg.amp) == (0.002, 0.25, 0.05, False)
    assert (cfg.mse_weight, cfg.l1_weight, cfg.batch_size, cfg.num_workers, cfg.group_gamma) == (100, 0.02, 8, 2, 0.5)
    assert cfg.scale == [0.5, 2.0] and cfg.patch_size == 128 and cfg.flip and not cfg.rotate
    assert cfg.brightness == 0.0 and cfg.finetunable_layers == "stage4"
    assert cfg.additional_train_dirs == ["/data/extra1", "/data/extra2"]
    assert (cfg.seg_thr, cfg.center_thr, cfg.min_distance, cfg.output_label_divisor) == (0.4, 0.2, 7, 1000)
    assert cfg.description == "ER and mitochondria in HeLa"
    assert sorted(unmapped) == sorted(
        [
            "MODEL.aspp_dropout",
            "TRAIN.print_freq",
            "TRAIN.augmentations[4] (GaussNoise)",
            "EVAL.engine_params.stuff_area",
        ]
    )
    # TrainConfig.from_yaml and train(config=path) read the same file, naming the unused keys in one warning
    with pytest.warns(UserWarning, match=r"4 key\(s\) not used.*MODEL.aspp_dropout"):
        assert enb.TrainConfig.from_yaml(path) == cfg


def test_empanada_finetuning_yaml_sections(tmp_path):
    text = (
        "class_names: {1: mito}\nthing_list: [1]\nnorms: {mean: 0.5, std: 0.2}\n"  # a model description file
        "model_name: null\nTRAIN:\n  batch_size: 16\n  finetune_layer: null\n"
        "FINETUNE:\n  criterion: PanopticLoss\n  criterion_params: {ce_weight: 2, pr_weight: 1}\n"
        "  engine_params: {confidence_thr: 0.3, label_divisor: 100}\n"
        "  dataset_class: SingleClassInstanceDataset\n  dataset_params: {weight_gamma: 0.7}\n"
        "EVAL:\n  eval_dir: null\n  epochs_per_eval: 1\n"
    )
    cfg, unmapped = enb.config_from_empanada_yaml(text.encode())
    assert (cfg.ce_weight, cfg.seg_thr, cfg.output_label_divisor, cfg.group_gamma) == (2, 0.3, 100, 0.7)
    assert unmapped == ["norms", "EVAL.epochs_per_eval"] and cfg.class_names == {1: "mito"}
    with pytest.raises(ValueError, match="not valid YAML"):
        enb.config_from_empanada_yaml("TRAIN: [\n")
    with pytest.raises(ValueError, match="outside 1..1"):
        enb.config_from_empanada_yaml("DATASET:\n  thing_list: [3]\n")


def test_guides_rules_warn_before_training(tmp_path):
    enb.make_synthetic_dataset(tmp_path / "a", n_images=2, size=64, seed=1)
    enb.make_synthetic_dataset(tmp_path / "b", n_images=2, size=96, seed=2)
    assert batch_size_warning(16) is None and "16" in batch_size_warning(8) and "BatchNorm" in batch_size_warning(8)
    assert "lighter" in ARCHITECTURE_HINTS["PanopticBiFPN"] and "best" in LAYER_HINTS["stage4"]
    seen = []
    with pytest.warns(UserWarning) as rec:
        h = enb.train(
            [tmp_path / "a"],
            config=enb.TrainConfig(additional_train_dirs=[str(tmp_path / "b")]),
            out=tmp_path / "m.pth",
            iterations=2,
            callbacks=[seen.append],
            **{**TINY, "batch_size": 2, "patch_size": 80},
        )
    msgs = [str(w.message) for w in rec]
    assert any("batch size 2 < 16" in m and "BatchNorm" in m for m in msgs)
    assert any("patch size 80 is larger than the saved patches (smallest side 64" in m for m in msgs)
    assert h.events("end")[-1]["iteration"] == 2
    # both folders are trained on, their subfolders kept apart for the per-group sampling weights
    pairs = pairs_of(train_dirs(tmp_path / "a", enb.TrainConfig(additional_train_dirs=[str(tmp_path / "b")])))
    assert len(pairs) == 4 and len({p.group for p in pairs}) == 4
    assert train_dirs(tmp_path / "a", enb.TrainConfig(additional_train_dirs=[str(tmp_path / "a")])) == [
        str(tmp_path / "a")
    ]


def test_finetune_refuses_classes_the_model_does_not_have(tmp_path):
    enb.make_synthetic_dataset(tmp_path / "ds", n_images=2, size=64)
    base = enb.build_model("PanopticDeepLab", "resnet18")
    with pytest.raises(ValueError, match="train a new model"):
        enb.finetune(base, tmp_path / "ds", out=tmp_path / "f.pth", num_classes=2, iterations=1, **TINY)
    cfg = enb.TrainConfig(num_classes=2, class_names={1: "mito", 2: "er"}, thing_list=[1])
    with pytest.raises(ValueError, match="num_classes=1, not 2.*train a new model"):
        enb.finetune(base, tmp_path / "ds", config=cfg, out=tmp_path / "f.pth")
    with pytest.raises(ValueError, match="class_names"):
        enb.finetune(base, tmp_path / "ds", out=tmp_path / "f.pth", class_names={1: "nucleus"})
    assert not list(tmp_path.glob("f*"))


def test_multiclass_training_with_description_and_label_divisor(tmp_path):
    import numpy as np

    from empanada_nb.data import synthetic_image

    for i in range(2):
        img, lab = synthetic_image(64, n_objects=4, seed=i)
        ids = np.unique(lab[lab > 0])
        pan = np.zeros(lab.shape, np.uint32)
        for j, k in enumerate(ids):  # odd objects are class 1 instances, even ones the stuff class 2
            pan[lab == k] = 1000 + k if j % 2 == 0 else 2000
        write_tiff(tmp_path / "ds" / "g" / "images" / f"i{i}.tif", img)
        write_tiff(tmp_path / "ds" / "g" / "masks" / f"i{i}.tif", pan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(
            tmp_path / "ds",
            out=tmp_path / "mc.pth",
            iterations=2,
            num_classes=2,
            class_names={1: "mito", 2: "er"},
            thing_list=[1],
            label_divisor=1000,
            description="two classes",
            **{**TINY, "batch_size": 2},
        )
    card = yaml.safe_load((tmp_path / "mc.yaml").read_text())
    assert card["class_names"] == {1: "mito", 2: "er"} and card["thing_list"] == [1]
    assert card["description"] == "two classes" and h.model.num_classes == 2
