"""BioImage Model Zoo export: bioimage.io's own test accepts the package, offline, and it computes what we do."""

import socket
import zipfile

import numpy as np
import pytest
import torch
import yaml

import empanada_nb
from empanada_nb import build_model, export_bioimageio, load_bioimageio, normalize_image, segment_image
from empanada_nb.data import synthetic_image

pytest.importorskip("bioimageio.core", reason="bioimageio.core not installed: pip install 'empanada_nb[bioimageio]'")

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """Fail any attempt to reach another host, and keep bioimageio's cache in a temporary folder.

    bioimage.io validation fetches URLs it finds (cite urls, GitHub users, remote weights); the
    package must validate and run without any of that. Attempts are recorded so the test can say so.
    """
    mp = pytest.MonkeyPatch()
    attempts = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            attempts.append(host)
            raise OSError(f"test is offline: refused to resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            attempts.append(address[0])
            raise OSError(f"test is offline: refused to connect to {address[0]}")
        return real_connect(self, address)

    mp.setattr(socket, "getaddrinfo", getaddrinfo)
    mp.setattr(socket.socket, "connect", connect)
    from bioimageio.spec._internal._settings import settings

    mp.setattr(settings, "cache_path", tmp_path_factory.mktemp("bioimageio_cache"))
    yield attempts
    mp.undo()


def small_model(num_classes: int, pointrend: bool) -> torch.nn.Module:
    """resnet18 Panoptic-DeepLab whose 1x1 predictors have visible outputs.

    Freshly built heads start at std 0.001 (outputs ~1e-4), which bioimage.io refuses as test
    outputs (they could not show a mismatch); a trained model's are far larger.
    """
    torch.manual_seed(0)
    model = build_model("PanopticDeepLab", "resnet18", num_classes=num_classes, pointrend=pointrend)
    for m in model.modules():
        if (
            isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d))
            and m.out_channels <= 3
            and m.kernel_size in ((1,), (1, 1))
        ):
            torch.nn.init.normal_(m.weight, std=0.5)
    model.norms = {"mean": 0.45, "std": 0.2}
    return model.eval()


@pytest.fixture(scope="module")
def package(tmp_path_factory, offline):
    """One export (two classes, PointRend: the path that needs scripting inside the trace), 64 px test image."""
    model = small_model(num_classes=2, pointrend=True)
    image = synthetic_image(96, n_objects=3, seed=1)[0][10:84, 5:90]  # 74 x 85: centre-cropped to 64 x 80
    path = export_bioimageio(
        model,
        tmp_path_factory.mktemp("bioimageio") / "mito_model",
        name="empanada_nb test model",
        authors=["Ada Lovelace", {"name": "Grace Hopper", "affiliation": "Navy"}],
        test_image=image,
    )
    return model, path


def test_package_passes_bioimageio_test_offline(package, offline):
    from bioimageio.core import test_model

    model, path = package
    assert path.name == "mito_model.zip" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["mito_model.zip"]  # no temporaries left
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        cover = z.read("cover.png")
    expected = {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "test_input.npy", "cover.png", "README.md"}
    assert expected | {f"test_{o}.npy" for o in ("sem_logits", "ctr_hmp", "offsets")} <= names
    assert cover[:8] == b"\x89PNG\r\n\x1a\n"
    assert rdf["format_version"].startswith("0.5.") and rdf["type"] == "model"
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["import_from"] == "empanada_nb.bioimageio"
    dois = {c["doi"] for c in rdf["cite"]}
    assert {"10.1016/j.cels.2022.12.006", "10.48550/arXiv.1911.10194", "10.48550/arXiv.1912.08193"} <= dois
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Grace Hopper"]
    (ipt,) = rdf["inputs"]
    assert [a["size"] for a in ipt["axes"][2:]] == [{"min": 16, "step": 16}] * 2
    assert ipt["data"]["type"] == "uint8"
    pre = {p["id"]: p.get("kwargs") for p in ipt["preprocessing"]}
    assert pre["scale_linear"]["gain"] == pytest.approx(1 / 255)
    assert pre["fixed_zero_mean_unit_variance"] == {"mean": 0.45, "std": 0.2}
    assert [o["id"] for o in rdf["outputs"]] == ["sem_logits", "ctr_hmp", "offsets"]
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["background", "class1", "class2"]

    summary = test_model(path)
    failed = [f"{d.name}: {[e.msg for e in d.errors]}" for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    tested = " ".join(d.name for d in summary.details)
    assert "(torchscript)" in tested and "(pytorch_state_dict)" in tested  # both weights reproduced the outputs
    assert "size parameter n: 2" in tested  # and ran at other sizes (min + 2 steps) and batch sizes
    assert offline == [], f"bioimage.io tried to reach {offline}"


def test_package_outputs_equal_empanada_forward(package, offline):
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    model, path = package
    with zipfile.ZipFile(path) as z:
        test_input = np.load(z.open("test_input.npy"))
        stored = {o: np.load(z.open(f"test_{o}.npy")) for o in ("sem_logits", "ctr_hmp", "offsets")}
    assert test_input.shape == (1, 1, 64, 80) and test_input.dtype == np.uint8

    def forward(image):
        x = torch.from_numpy(normalize_image(image, model.norms, (0, 255))[None, None])
        with torch.no_grad():
            return {k: v.numpy() for k, v in model(x).items()}

    ours = forward(test_input[0, 0])
    for k, v in stored.items():
        np.testing.assert_allclose(v, ours[k], rtol=1e-5, atol=1e-5, err_msg=k)

    # a new image at another size, through bioimage.io's own pipeline (its preprocessing) per weights format
    other = synthetic_image(48, n_objects=2, seed=7)[0][:, :32]
    ours = forward(other)
    descr = load_model_description(path)
    for wf in ("torchscript", "pytorch_state_dict"):
        # predict() loads and unloads the pipeline itself (a `with` around it would unload twice and hang)
        sample = predict(model=create_prediction_pipeline(descr, weight_format=wf), inputs=other[None, None])
        for k in stored:
            got = sample.members[k].data.values
            assert got.shape == ours[k].shape, (wf, k)
            np.testing.assert_allclose(got, ours[k], rtol=1e-4, atol=1e-4, err_msg=f"{wf} {k}")
    assert offline == []


def test_export_bad_input_one_line_errors_and_nothing_written(tmp_path):
    model = small_model(num_classes=1, pointrend=False)
    with pytest.raises(ValueError, match="2D image"):
        export_bioimageio(model, tmp_path / "a.zip", test_image=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="smaller than the model's padding factor 16"):
        export_bioimageio(model, tmp_path / "a.zip", test_image=np.zeros((8, 64), np.uint8))
    with pytest.raises(ValueError, match="name"):  # bioimage.io names: 5+ characters
        export_bioimageio(model, tmp_path / "a.zip", name="abc", test_image=synthetic_image(64)[0])
    torch.manual_seed(0)
    untrained = build_model("PanopticDeepLab", "resnet18").eval()
    with pytest.raises(ValueError, match="untrained"):
        export_bioimageio(untrained, tmp_path / "a.zip", test_image=synthetic_image(64)[0])
    assert list(tmp_path.iterdir()) == []


def test_package_loads_back_into_empanada_nb(package, tmp_path):
    model, path = package
    back = load_bioimageio(path)
    assert back.norms == {"mean": 0.45, "std": 0.2} and back.card.num_classes == 2 and back.card.pointrend
    image = synthetic_image(64, n_objects=2, seed=3)[0]
    (la, pa), (lb, pb) = (segment_image(m, image, return_probs=True) for m in (model, back))
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_allclose(pa, pb, atol=1e-6)
    assert pa.shape == (3, 64, 64) and pa.std() > 0.01  # the probabilities are not a constant
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a bioimage.io package written by empanada_nb"):
        load_bioimageio(tmp_path / "junk.zip")


def test_export_is_public():
    assert empanada_nb.export_bioimageio is export_bioimageio
    assert empanada_nb.load_bioimageio is load_bioimageio
