"""``empanada-nb models``: the registry from the command line (in-process main(), one-line errors exit 2)."""

import torch

import empanada_nb as enb
from empanada_nb.cli import main


def _model_file(tmp_path):
    # a valid empanada_nb model file without weights: the registry reads only its card
    card = enb.ModelCard(class_names={1: "mito", 2: "er"}, num_classes=2, thing_list=[1], min_area=371)
    card.calibration = {"threshold": 0.35, "iou_at_0.5": 0.79, "iou": 0.825, "images": 8, "source": "training images"}
    card.calibration["applied"] = True
    path = tmp_path / "m.pth"
    torch.save({"format": enb.model_io.FORMAT, "card": card.to_dict(), "state_dict": {}}, path)
    return path


def test_models_register_list_info_export_import_remove(tmp_path, capsys):
    src = _model_file(tmp_path)
    assert main(["models", "register", "cli-m", str(src), "--description", "from the CLI"]) == 0
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "cli-m" in out and "registered" in out and "MitoNet_v1_mini" in out and "published" in out
    assert main(["models", "info", "cli-m"]) == 0
    out = capsys.readouterr().out
    assert "1: mito (thing), 2: er (stuff)" in out and "from the CLI" in out
    assert "371 px" in out and "threshold 0.35 folded into the bias (foreground IoU 0.790 at 0.5, 0.825 at 0.35" in out
    assert main(["models", "info", "MitoNet_v1", "--json"]) == 0
    assert '"padding_factor": 16' in capsys.readouterr().out
    assert main(["models", "export", "cli-m", str(tmp_path / "x.empanada")]) == 0
    assert main(["models", "import", str(tmp_path / "x.empanada"), "--name", "cli-back"]) == 0
    assert main(["models", "remove", "cli-m"]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "cli-back" in out and "cli-m " not in out


def test_models_errors_are_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"not a model")
    cases = [
        (["models", "info", "MitoNet_v1_mni"], "did you mean MitoNet_v1_mini"),
        (["models", "register", "j", str(tmp_path / "junk.pth")], "truncated or not a model"),
        (["models", "remove", "nothing-here"], "no model 'nothing-here'"),
        (["models", "export", "MitoNet_v1", str(tmp_path / "o.empanada")], "EMPANADA_NB_OFFLINE is set"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("empanada-nb models: error:") and msg in err and "\n" not in err
