import pytest
import torch

import empanada_nb as enb
from empanada_nb.models import Encoder


@pytest.mark.parametrize("arch,size", [("PanopticDeepLab", 64), ("PanopticBiFPN", 128)])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_output_contract(arch, size, num_classes):
    m = enb.build_model(arch, "resnet18", num_classes=num_classes).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 1, size, size + m.padding_factor))
    s = 1 if num_classes == 1 else num_classes + 1
    assert out["sem_logits"].shape == (1, s, size, size + m.padding_factor)
    assert out["ctr_hmp"].shape == (1, 1, size, size + m.padding_factor)
    assert out["offsets"].shape == (1, 2, size, size + m.padding_factor)


def test_pointrend_train_and_eval_outputs():
    m = enb.build_model("PanopticDeepLab", "resnet18", pointrend=True)
    out = m.train()(torch.randn(2, 1, 64, 64))
    assert out["sem_points"].shape == (2, 1, 1024) and out["point_coords"].shape == (2, 1024, 2)
    with torch.no_grad():
        out = m.eval()(torch.randn(1, 1, 64, 64))
    assert out["sem_logits"].shape == (1, 1, 64, 64) and "sem_points" not in out


def test_parameter_counts_match_seeds():
    # MitoNet-like sizes: PanopticDeepLab + PointRend ~55 M; PanopticBiFPN about half, ~3 M trainable with "none"
    pdl = enb.build_model("PanopticDeepLab", "resnet50", pointrend=True)
    bifpn = enb.build_model("PanopticBiFPN", "resnet50", pointrend=True)
    assert 52e6 < enb.count_parameters(pdl) < 58e6
    assert 24e6 < enb.count_parameters(bifpn) < 31e6
    assert 2e6 < enb.set_finetunable(bifpn, "none") < 5e6


@pytest.mark.parametrize("encoder", ["resnet18", "resnet50", "regnet_y_800mf"])
def test_finetunable_layers_change_trainable_count_as_stated(encoder):
    m = enb.build_model("PanopticDeepLab", encoder)
    enc = m.encoder
    total = enb.count_parameters(m)
    n_enc = enb.count_parameters(enc)
    stage = [sum(p.numel() for p in enc.stage(i).parameters()) for i in range(1, 5)]
    stem = sum(p.numel() for mod in enc.stem() for p in mod.parameters())
    decoder = total - n_enc
    assert stem + sum(stage) == n_enc
    assert enb.set_finetunable(m, "none") == decoder
    for k in range(1, 5):
        assert enb.set_finetunable(m, f"stage{k}") == decoder + sum(stage[k - 1 :])
    assert enb.set_finetunable(m, "all") == total
    # the stem trains only with "all", and stage4 really is the last stage
    enb.set_finetunable(m, "stage4")
    assert all(p.requires_grad for p in enc.stage(4).parameters())
    assert not any(p.requires_grad for p in enc.stage(3).parameters())
    assert not any(p.requires_grad for mod in enc.stem() for p in mod.parameters())


def test_set_finetunable_rejects_unknown_option():
    m = enb.build_model("PanopticDeepLab", "resnet18")
    with pytest.raises(ValueError, match="stage1"):
        enb.set_finetunable(m, "layer4")


@pytest.mark.parametrize(
    "arch,size,hint",
    [("PanopticDeepLab", 250, "240 or 256"), ("PanopticBiFPN", 256 + 64, "256 or 384"), ("PanopticBiFPN", 100, "128")],
)
def test_patch_size_error_names_nearest_valid_sizes(arch, size, hint):
    with pytest.raises(ValueError, match=hint):
        enb.check_patch_size(size, arch)
    enb.check_patch_size(256, arch)


def test_unknown_architecture_and_encoder():
    with pytest.raises(ValueError, match="PanopticBiFPN"):
        enb.build_model("UNet")
    with pytest.raises(ValueError, match="resnet50"):
        Encoder("vgg16")


def test_output_stride_16_for_deeplab_basicblock_encoder():
    enc = Encoder("resnet18", output_stride=16)
    feats = enc(torch.randn(1, 1, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4]


def _write_cem(path, encoder="resnet18", rgb=True):
    import torchvision

    body = getattr(torchvision.models, encoder)(weights=None)
    sd = body.state_dict()
    if not rgb:
        sd["conv1.weight"] = sd["conv1.weight"].sum(1, keepdim=True)
    torch.save({"state_dict": {f"module.encoder.{k}": v for k, v in sd.items()}, "norms": [0.58, 0.135]}, path)
    return sd


@pytest.mark.parametrize("rgb", [True, False])
def test_cem_weights_load_from_path_with_norms(tmp_path, rgb):
    sd = _write_cem(tmp_path / "cem.pth.tar", rgb=rgb)
    m = enb.build_model("PanopticDeepLab", "resnet18", pretrained=str(tmp_path / "cem.pth.tar"))
    assert m.norms == {"mean": 0.58, "std": 0.135}
    torch.testing.assert_close(m.encoder.body.layer3[0].conv1.weight, sd["layer3.0.conv1.weight"])
    torch.testing.assert_close(
        m.encoder.body.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True) if rgb else sd["conv1.weight"]
    )


def test_cem_weights_from_url_download_once_into_the_cache(tmp_path, server, online):
    _write_cem(server.www / "cem.pth.tar")
    url = f"{server.url}/cem.pth.tar?download=1"
    m = enb.build_model("PanopticDeepLab", "resnet18", pretrained=url)
    m2 = enb.build_model("PanopticDeepLab", "resnet18", pretrained=url)
    assert m.norms["mean"] == m2.norms["mean"] == 0.58 and server.hits == {"/cem.pth.tar": 1}
    assert (enb.registry_dir() / "cem" / "cem.pth.tar").is_file()


def test_cem_weights_wrong_format_or_encoder(tmp_path):
    torch.save({"weights": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not CEM-format"):
        enb.build_model("PanopticDeepLab", "resnet18", pretrained=str(tmp_path / "bad.pth"))
    _write_cem(tmp_path / "r50.pth", encoder="resnet50")
    with pytest.raises(ValueError, match="do not fit encoder"):
        enb.build_model("PanopticDeepLab", "resnet18", pretrained=str(tmp_path / "r50.pth"))
    with pytest.raises(FileNotFoundError):
        enb.build_model("PanopticDeepLab", "resnet18", pretrained=str(tmp_path / "missing.pth"))
