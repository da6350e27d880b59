import subprocess
import sys

import pytest

import empanada_nb as enb
from empanada_nb.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    enb.make_synthetic_dataset(root, n_images=4, size=96, seed=2)
    return root


def test_demo_console_script_trains_and_reports(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "empanada_nb", "demo", "--iterations", "3", "--out", str(tmp_path / "d.pth")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loss" in r.stdout and "validation: iou" in r.stdout and "model saved" in r.stdout
    assert (tmp_path / "demo_data" / "train").is_dir() and (tmp_path / "demo_data" / "val").is_dir()
    assert enb.load_model(tmp_path / "d.pth").card.config["iterations"] == 3


def test_train_then_finetune_cli(dataset, tmp_path, capsys):
    args = [
        "train",
        "--arch",
        "PanopticDeepLab",
        "--encoder",
        "resnet18",
        "--train-dir",
        str(dataset),
        "--iterations",
        "2",
        "--patch-size",
        "64",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path / "m.pth"),
    ]
    assert main(args) == 0
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "m.pth"),
                "--train-dir",
                str(dataset),
                "--layers",
                "stage4",
                "--iterations",
                "2",
                "--patch-size",
                "64",
                "--batch-size",
                "2",
                "--out",
                str(tmp_path / "ft.pth"),
            ]
        )
        == 0
    )
    ft = enb.load_model(tmp_path / "ft.pth")
    assert ft.card.finetunable_layers == "stage4" and ft.card.config["iterations"] == 2
    # the same --out again is refused, and the finished model is untouched
    before = (tmp_path / "m.pth").read_bytes()
    assert main(args) == 2
    assert "overwrite" in capsys.readouterr().err
    assert (tmp_path / "m.pth").read_bytes() == before


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["train", "--train-dir", "{ds}", "--patch-size", "100", "--out", "{tmp}/x.pth"], "use 96 or 112"),
        (["train", "--train-dir", "{tmp}/missing", "--out", "{tmp}/x.pth"], "does not exist"),
        (["finetune", "{tmp}/nomodel.pth", "--train-dir", "{ds}", "--out", "{tmp}/x.pth"], "neither a file"),
        (["demo", "--iterations", "0"], "at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, msg, dataset, tmp_path, capsys):
    argv = [a.format(ds=dataset, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


def test_train_cli_takes_several_folders_and_empanada_config(tmp_path):
    from empanada_nb.cli import build_parser
    from empanada_nb.cli._train_args import config_from

    (tmp_path / "custom_training.yaml").write_text(
        "MODEL:\n  arch: PanopticBiFPN\n  aspp_dropout: 0.5\nTRAIN:\n  batch_size: 8\n  finetune_layer: stage4\n"
    )
    argv = ["train", "--train-dir", "A", "--train-dir", "B", "--out", "m.pth"]
    args = build_parser().parse_args(argv + ["--config", str(tmp_path / "custom_training.yaml"), "--batch-size", "4"])
    assert args.train_dir == ["A", "B"]
    with pytest.warns(UserWarning, match="MODEL.aspp_dropout"):
        cfg = config_from(args)
    assert (cfg.architecture, cfg.finetunable_layers, cfg.batch_size) == ("PanopticBiFPN", "stage4", 4)
