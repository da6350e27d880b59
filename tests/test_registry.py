"""The persistent model registry: names, files, folders, archives, URLs (a 127.0.0.1 server), bad input."""

import json
import multiprocessing
import os
import socket
import sys
import threading
import types
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

import empanada_nb as enb
from empanada_nb import published, registry


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    """A saved empanada_nb model (the smallest architecture, ~25 MB) with a card worth reading."""
    m = enb.build_model("PanopticBiFPN", "regnet_y_400mf", num_classes=2)
    card = enb.model_io.card_for(m)
    card.class_names, card.thing_list = {1: "mito", 2: "er"}, [1]
    card.history_summary = {"iterations": 7, "final_loss": 0.5}
    card.lineage = {"train_dir": "/data/mito", "parent": "MitoNet_v1_mini"}
    path = tmp_path_factory.mktemp("src") / "small.pth"
    enb.save_model(m, path, card)
    return path


class Tiny(torch.nn.Module):
    """Stands in for empanada's TorchScript models (a real scripted module, 1 parameter)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ts") / "Tiny.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated, but it is what empanada exports with
        torch.jit.save(torch.jit.script(Tiny()), str(path))
    return path


def _empanada_yaml(folder: Path, ts: Path, **drop) -> Path:
    cfg = published.published_config("MitoNet_v1_mini")
    cfg["model"] = ts.name
    cfg.pop("model_quantized")
    for k in drop:
        cfg.pop(k)
    (folder / ts.name).write_bytes(ts.read_bytes())
    path = folder / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _index() -> dict:
    p = registry.registry_dir() / "index.json"
    return json.loads(p.read_text())["models"] if p.exists() else {}


@pytest.fixture
def fake_empanada_loader(monkeypatch):
    """Until empanada_format lands: a stand-in loader that records what it is handed."""
    calls = []

    def load_empanada_model(path):
        cfg = yaml.safe_load(Path(path).read_text())
        assert (Path(path).parent / cfg["model"]).is_file()  # the weights are local, beside the YAML
        calls.append(Path(path))
        m = enb.build_model("PanopticBiFPN", "regnet_y_400mf")
        m.norms = dict(cfg["norms"])
        return m

    mod = types.ModuleType("empanada_nb.empanada_format")
    mod.load_empanada_model = load_empanada_model
    monkeypatch.setitem(sys.modules, "empanada_nb.empanada_format", mod)
    return calls


def test_registry_folder_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMPANADA_NB_MODELS", str(tmp_path / "a"))
    assert registry.registry_dir() == tmp_path / "a"
    monkeypatch.delenv("EMPANADA_NB_MODELS")
    monkeypatch.setenv("EMPANADA_NB_HOME", str(tmp_path / "home"))
    assert registry.registry_dir() == tmp_path / "home" / "models"
    monkeypatch.delenv("EMPANADA_NB_HOME")
    assert registry.registry_dir().parts[-2:] in {("empanada_nb", "models"), ("Cache", "models")}


# spawn, not fork: a child forked after torch started its thread pool can deadlock inside torch
# (seen in CI: load_state_dict hung in the child); spawn also gives the child this test's environment.
CTX = multiprocessing.get_context("spawn")


def _finish(p, timeout: float = 300) -> int | None:
    """Join ``p``; kill it if it hangs, so a stuck child never blocks the session's exit."""
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
    return p.exitcode


def _in_child(fn, *args):
    """Run fn in a fresh process and return its exit code."""
    p = CTX.Process(target=fn, args=args)
    p.start()
    return _finish(p)


def _save_by_name(path):
    enb.save_model(enb.load_model(path), "mito-er")


def test_save_by_name_in_one_process_loads_in_another(small_model_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _in_child(_save_by_name, small_model_file) == 0
    assert not (tmp_path / "mito-er.pth").exists()  # a bare name goes to the registry, not the working folder
    m = enb.load_model("mito-er")  # this process never saw the save: it comes from disk
    assert m.num_classes == 2 and m.card.class_names[2] == "er"
    assert "mito-er" in enb.list_models() and "MitoNet_v1_mini" in enb.list_models()


def _register_many(tag, src, barrier):
    barrier.wait()
    for i in range(6):
        enb.register_model(f"{tag}{i}", src)


def test_two_processes_register_at_once_and_lose_nothing(tmp_path):
    src = tmp_path / "card-only.pth"  # a valid model file without weights: registering reads only the card
    torch.save({"format": enb.model_io.FORMAT, "card": enb.ModelCard().to_dict(), "state_dict": {}}, src)
    barrier = CTX.Barrier(2)
    procs = [CTX.Process(target=_register_many, args=(t, src, barrier)) for t in "ab"]
    for p in procs:
        p.start()
    assert [_finish(p) for p in procs] == [0, 0]
    assert set(_index()) == {f"{t}{i}" for t in "ab" for i in range(6)}
    assert len(list((registry.registry_dir() / "entries").iterdir())) == 12  # one folder per entry, no strays


def test_register_file_folder_info_export_import_remove(small_model_file, tmp_path):
    enb.register_model("m-file", small_model_file, description="two-class test model")
    enb.register_model("m-folder", small_model_file.parent)
    info = enb.model_info("m-file")
    assert info["description"] == "two-class test model"
    assert info["classes"] == {1: {"name": "mito", "kind": "thing"}, 2: {"name": "er", "kind": "stuff"}}
    assert info["architecture"].startswith("PanopticBiFPN") and info["padding_factor"] == 128
    assert info["history"]["iterations"] == 7 and info["lineage"]["parent"] == "MitoNet_v1_mini"
    arc = enb.export_registered_model("m-file", tmp_path / "out")
    assert arc.name == "out.empanada" and sorted(zipfile.ZipFile(arc).namelist()) == ["out.pth", "out.yaml"]
    assert enb.import_model(arc) == "out"
    assert enb.load_model("out").card.class_names == {1: "mito", 2: "er"}
    enb.remove_model("m-folder")
    assert "m-folder" not in enb.list_models() and small_model_file.is_file()  # the user's file stays


def test_empanada_yaml_and_napari_archive(torchscript_file, tmp_path, fake_empanada_loader):
    src = tmp_path / "src"
    src.mkdir()
    y = _empanada_yaml(src, torchscript_file)
    enb.register_model("ts", y)
    info = enb.model_info("ts")
    assert info["architecture"] == "Tiny" and info["padding_factor"] == 128 and info["norms"]["mean"] == 0.57571
    arc = enb.export_registered_model("ts", tmp_path / "Shared.empanada")
    # empanada-napari's Import Model reads STEM.yaml and STEM.pth from the archive
    z = zipfile.ZipFile(arc)
    assert sorted(z.namelist()) == ["Shared.pth", "Shared.yaml"]
    assert yaml.safe_load(z.read("Shared.yaml"))["model"] == "Shared.pth"
    enb.import_model(arc, "back")
    m = enb.load_model("back")
    assert m.norms["mean"] == 0.57571 and fake_empanada_loader[-1].name == "model.yaml"


def test_url_downloads_once_with_checksum(server, online, small_model_file):
    (server.www / "m.pth").write_bytes(small_model_file.read_bytes())
    url = f"{server.url}/m.pth?download=1"
    with pytest.raises(ValueError, match="checksum mismatch"):
        enb.register_model("bad-sum", url, sha256="0" * 64)
    assert _index() == {} and not list(registry.registry_dir().rglob("m.pth"))  # discarded, nothing half-written
    good = registry.file_sha256(small_model_file)
    enb.register_model("web", url, sha256=good)
    assert enb.load_model(url).num_classes == 2  # the same URL again: from the cache
    assert server.hits["/m.pth"] == 2  # once for the bad checksum, once for good
    assert enb.model_info("web")["source"] == url


def test_empanada_yaml_url_brings_its_weights(server, online, torchscript_file, fake_empanada_loader, tmp_path):
    (server.www / "cfg").mkdir()
    _empanada_yaml(server.www / "cfg", torchscript_file)  # model: Tiny.pth, relative to the YAML's URL
    url = f"{server.url}/cfg/mine.yaml"
    m = enb.load_model(url)
    assert m.norms["mean"] == 0.57571 and server.hits == {"/cfg/mine.yaml": 1, "/cfg/Tiny.pth": 1}
    enb.load_model(url)
    assert server.hits == {"/cfg/mine.yaml": 1, "/cfg/Tiny.pth": 1}  # cached
    enb.register_model("from-url", url)
    assert enb.model_info("from-url")["architecture"] == "Tiny"
    bad = _empanada_yaml(tmp_path, torchscript_file, norms=1)
    with pytest.raises(ValueError, match="lacks norms"):
        enb.load_model(bad)


def test_published_name_downloads_to_cache_and_loads(
    server, online, monkeypatch, torchscript_file, fake_empanada_loader
):
    monkeypatch.setattr(published, "PUBLISHED_BASE", server.url)
    rel = published.PUBLISHED["MitoNet_v1_mini"]["config"]["model"].split("?")[0]
    (server.www / rel).parent.mkdir(parents=True)
    (server.www / rel).write_bytes(torchscript_file.read_bytes())
    m = enb.load_model("MitoNet_v1_mini")
    m2 = enb.load_model("MitoNet_v1_mini")
    assert server.hits == {"/" + rel: 1}  # downloaded once, then from the cache
    assert m.norms == m2.norms == {"mean": 0.57571, "std": 0.12765}
    cached = registry.registry_dir() / "published" / "MitoNet_v1_mini"
    assert {p.name for p in cached.iterdir()} == {"MitoNet_v1_mini.pth", "MitoNet_v1_mini.yaml"}
    assert enb.model_info("MitoNet_v1_mini")["cached"]


def test_offline_and_unreachable_errors_name_the_cache(server, monkeypatch):
    with pytest.raises(ConnectionError, match=r"EMPANADA_NB_OFFLINE.*cache folder is .*published.MitoNet_v1"):
        enb.load_model("MitoNet_v1")
    monkeypatch.delenv("EMPANADA_NB_OFFLINE")
    port = server.url.rsplit(":", 1)[1]
    server_gone = f"http://127.0.0.1:{int(port) + 1 if int(port) < 65535 else 1}/m.pth"
    with pytest.raises(ConnectionError, match="cannot download .*cache folder is"):
        enb.register_model("gone", server_gone)
    with pytest.raises(ConnectionError, match="HTTP 404"):
        enb.register_model("missing", f"{server.url}/nothing.pth")
    assert _index() == {}


def test_download_cut_short_is_discarded(online):
    """A server that promises 100000 bytes and sends 10: the download fails and nothing is cached."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/short.pth"
    with pytest.raises(ConnectionError, match="(broke off|truncated).*retry") as e:
        enb.register_model("short", url)
    srv.close()
    assert "\n" not in str(e.value) and _index() == {}
    assert not list(registry.registry_dir().rglob("short.pth"))


def test_bad_input_one_line_errors_leave_registry_unchanged(small_model_file, torchscript_file, tmp_path):
    enb.register_model("keep", small_model_file)
    before = _index()
    (tmp_path / "random.pth").write_bytes(os.urandom(5000))
    (tmp_path / "cut.pth").write_bytes(small_model_file.read_bytes()[:100_000])
    y = _empanada_yaml(tmp_path, torchscript_file, norms=1, padding_factor=1)
    bad = [
        ("keep", small_model_file, FileExistsError, "already registered"),
        ("r", tmp_path / "random.pth", ValueError, "truncated or not a model"),
        ("c", tmp_path / "cut.pth", ValueError, "damaged .truncated or incomplete, 100000 bytes"),
        ("y", y, ValueError, "lacks padding_factor, norms"),
        ("t", torchscript_file, ValueError, "register its .yaml"),
        ("bad name", small_model_file, ValueError, "not usable"),
        ("MitoNet_v1", small_model_file, ValueError, "published empanada model name"),
        ("n", tmp_path / "nothing.pth", FileNotFoundError, "no such file"),
    ]
    for name, src, exc, msg in bad:
        with pytest.raises(exc, match=msg) as e:
            enb.register_model(name, src)
        assert "\n" not in str(e.value)
    assert _index() == before
    with pytest.raises(FileNotFoundError, match="did you mean MitoNet_v1_mini") as e:
        enb.load_model("mitonet_v1_mini")
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="did you mean keep"):
        enb.model_info("kep")


def test_legacy_name_pth_in_working_folder_still_loads(small_model_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.pth").write_bytes(small_model_file.read_bytes())
    assert enb.load_model("old").num_classes == 2
