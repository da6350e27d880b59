"""CEM weights on by default (empanada's training guide), the offline fallback, and class checks."""

import warnings

import numpy as np
import pytest

import empanada_nb as enb
from empanada_nb import _download
from empanada_nb.data.io import write_tiff
from empanada_nb.models import cem
from empanada_nb.training.loop import _initial_model

SMALL = dict(architecture="PanopticDeepLab", patch_size=64, batch_size=2, iterations=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return enb.make_synthetic_dataset(tmp_path_factory.mktemp("ds"), n_images=2, size=96, seed=3)


def test_resolve_pretrained_follows_the_guide():
    assert enb.TrainConfig().pretrained == "auto"
    assert cem.resolve_pretrained("auto", "resnet50") == cem.CEM_DEFAULT
    assert cem.resolve_pretrained("auto", "regnet_y_400mf") is None
    assert cem.resolve_pretrained(None, "resnet50") is None and cem.resolve_pretrained("none", "resnet50") is None
    with pytest.raises(ValueError, match="resnet18 cannot take them"):
        cem.resolve_pretrained(cem.CEM_DEFAULT, "resnet18")


def _initial(**cfg):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        model, source, cfg = _initial_model(enb.TrainConfig(**cfg))
    return model, source, cfg, [str(x.message) for x in w if "pretrained" in str(x.message)]


def test_resnet50_offline_goes_on_from_random_init_with_one_warning(monkeypatch, online):
    # a real network attempt that fails at once: nothing listens on port 1 of this machine
    monkeypatch.setitem(cem.CEM_URLS, cem.CEM_DEFAULT, "http://127.0.0.1:1/cem.pth.tar")
    model, source, cfg, msgs = _initial(encoder="resnet50", finetunable_layers="none")
    assert source is None and cfg.finetunable_layers == "all" and len(msgs) == 1
    assert "could not be fetched" in msgs[0] and "random init" in msgs[0] and "all layers train" in msgs[0]
    assert "cache folder is" in msgs[0]  # says where to put the file by hand
    monkeypatch.setitem(cem.CEM_URLS, cem.CEM_DEFAULT, "http://127.0.0.1:1/typo.pth.tar")
    with pytest.raises(ConnectionError):  # weights asked for by name are not silently skipped
        _initial(encoder="resnet50", pretrained=cem.CEM_DEFAULT)


def test_small_encoder_says_so_without_trying_a_download(monkeypatch, online):
    def no_download(*a, **k):
        raise AssertionError("no download may be tried for an encoder CEM has no weights for")

    monkeypatch.setattr(_download, "fetch", no_download)
    _, source, _, msgs = _initial(encoder="resnet18")
    assert source is None and msgs == [
        "encoder resnet18 cannot take CEM pretrained weights (CEM publishes ResNet-50 weights only): "
        "training starts from random init, with norms computed from the training images"
    ]
    with pytest.raises(ValueError, match="resnet18 cannot take them"):
        _initial(encoder="resnet18", pretrained=cem.CEM_DEFAULT)
    assert _initial(encoder="resnet18", pretrained=None)[3] == []  # an explicit random init is not warned about


def test_without_pretrained_weights_norms_come_from_the_training_images(dataset, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enb.train(dataset, out=tmp_path / "m.pth", encoder="resnet18", **SMALL)
    m = enb.load_model(tmp_path / "m.pth")
    ds = enb.data.dataset.PanopticDataset(enb.find_pairs(dataset), patch_size=64, batch_size=1, iterations=1)
    assert m.norms == pytest.approx(ds.norms()) and m.norms["mean"] != 0.5
    assert m.card.lineage["pretrained"] is None and m.card.lineage["norms_from"] == "training images"
    assert m.card.lineage["train_images"] == 2 and m.card.lineage["train_dir"] == str(dataset.resolve())


def _panoptic_dataset(root, classes):
    """Masks as class * 1000 + instance, one class per image."""
    for i, c in enumerate(classes):
        img, lab = enb.synthetic_image(96, n_objects=3, seed=i)
        write_tiff(root / "g" / "images" / f"i{i}.tif", img)
        write_tiff(root / "g" / "masks" / f"i{i}.tif", np.where(lab > 0, c * 1000 + lab, 0).astype(np.int32))
    return root


def test_class_mismatches_are_one_line_errors(dataset, tmp_path):
    tiny = dict(SMALL, encoder="resnet18", pretrained=None)
    with pytest.raises(ValueError, match="instance masks .* class \\[2\\]") as e:
        enb.train(dataset, out=tmp_path / "a.pth", num_classes=2, **tiny)
    assert "\n" not in str(e.value)
    two = _panoptic_dataset(tmp_path / "two", [1, 2])
    with pytest.raises(ValueError, match="never hold class \\[3\\]"):
        enb.train(two, out=tmp_path / "b.pth", num_classes=3, label_divisor=1000, **tiny)
    model = enb.build_model("PanopticDeepLab", "resnet18", num_classes=1)
    with pytest.raises(ValueError, match="finetuning cannot add classes: train a new model with num_classes=2") as e:
        enb.finetune(model, two, out=tmp_path / "c.pth", label_divisor=1000, iterations=1, batch_size=2, patch_size=64)
    assert "\n" not in str(e.value)
