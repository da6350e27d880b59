"""The widgets' front-end modules assembled into one ES module for anywidget, and the debug flag."""

import shutil
import subprocess

import numpy as np
import pytest

from empanada_nb.widgets import TrainingDashboard, Viewer
from empanada_nb.widgets._esm import STATIC, assemble

NODE = shutil.which("node")


def write(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path / "main.js"


@pytest.mark.parametrize("entry", ["viewer.js", "dashboard.js"])
def test_widget_modules_inline_every_part(entry):
    src = assemble(STATIC / entry)
    assert 'from "./' not in src and 'from "../' not in src  # a blob: URL cannot resolve relative imports
    assert src.count("export default") == 1
    assert "// ---- dom.js" in src  # the DOM helper both widgets share
    if entry == "viewer.js":
        for part in ("codec", "geometry", "cache", "draw", "tools", "panels"):
            assert f"// ---- viewer/{part}.js" in src
    assert Viewer._esm if entry == "viewer.js" else TrainingDashboard._esm  # set at import time


@pytest.mark.skipif(NODE is None, reason="node not installed")
@pytest.mark.parametrize("entry", ["viewer.js", "dashboard.js"])
def test_assembled_module_is_valid_javascript(entry, tmp_path):
    path = tmp_path / "widget.mjs"
    path.write_text(assemble(STATIC / entry))
    run = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_parts_keep_their_own_scope(tmp_path):
    entry = write(
        tmp_path,
        {
            "lib/a.js": "const x = 1;\nexport function a() { return x; }\n",
            "b.js": 'import { a as first } from "./lib/a.js";\nconst x = 20;\nexport const b = () => x + first();\n',
            "main.js": 'import { a } from "./lib/a.js";\nimport { b } from "./b.js";\n'
            "const x = 300;\nexport default { value: a() + b() + x };\n",
        },
    )
    out = tmp_path / "out.mjs"
    out.write_text(assemble(entry))
    run = subprocess.run(
        [NODE, "--input-type=module", "-e", f"import m from {str(out)!r}; console.log(m.value)"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "322"  # each x is its own module's; a.js is inlined once


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {"main.js": 'import { nope } from "./a.js";\nexport default {};\n', "a.js": "export const a = 1;\n"},
            "export",
        ),
        (
            {
                "main.js": 'import { a } from "./a.js";\nexport default {};\n',
                "a.js": 'import { b } from "./main.js";\nexport const a = 1;\n',
            },
            "import cycle",
        ),
        ({"main.js": 'export * from "./a.js";\nexport default {};\n', "a.js": ""}, "unsupported module syntax"),
        ({"main.js": 'import { a } from "./gone.js";\nexport default {};\n'}, "not found"),
        ({"main.js": "export const a = 1;\n"}, "export default"),
    ],
)
def test_unsupported_modules_are_one_line_errors(tmp_path, files, message):
    entry = write(tmp_path, files)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        assemble(entry)
    assert "\n" not in str(err.value)


def test_debug_flag_follows_the_environment(monkeypatch):
    vol = np.zeros((2, 8, 8), np.uint8)
    monkeypatch.delenv("EMPANADA_NB_DEBUG", raising=False)
    assert Viewer(vol).debug is False
    monkeypatch.setenv("EMPANADA_NB_DEBUG", "1")
    assert Viewer(vol).debug is True
    assert Viewer(vol, debug=False).debug is False
    monkeypatch.setenv("EMPANADA_NB_DEBUG", "0")
    assert Viewer(vol).debug is False


def test_package_data_ships_every_front_end_file():
    """A new folder under static/ needs its glob in pyproject.toml, or the wheel lacks it."""
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["empanada_nb"]
    pkg = STATIC.parents[1]
    files = [p.relative_to(pkg).as_posix() for p in STATIC.rglob("*") if p.suffix in (".js", ".css")]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_label_colors_agree_on_many_ids(tmp_path):
    """codec.js labelColor equals Python's label_color on 20,000 ids (the browser test checks a few hundred)."""
    import json

    from empanada_nb.widgets._serialization import label_color

    ids = list(range(20_000)) + [2**32 + 7919 * k for k in range(500)] + [2**52 + k for k in range(500)]
    (tmp_path / "codec.mjs").write_text((STATIC / "viewer" / "codec.js").read_text())  # no imports of its own
    (tmp_path / "ids.json").write_text(json.dumps(ids))
    script = (
        f"import {{ labelColor }} from {str(tmp_path / 'codec.mjs')!r}; import fs from 'fs';"
        f"const ids = JSON.parse(fs.readFileSync({str(tmp_path / 'ids.json')!r}));"
        "const rgb = (c) => [c & 255, (c >>> 8) & 255, (c >>> 16) & 255];"
        "console.log(JSON.stringify(ids.map((i) => rgb(labelColor(i)))));"
    )
    run = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    js = json.loads(run.stdout)
    bad = [(i, label_color(i), c) for i, c in zip(ids, js) if list(label_color(i)) != c]
    assert not bad, f"{len(bad)} of {len(ids)} ids differ (id, python, js): {bad[:5]}"
