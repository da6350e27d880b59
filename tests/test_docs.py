"""The documentation site builds with ``mkdocs build --strict`` (warnings are errors)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _missing(*modules):
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(
    bool(_missing("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")),
    reason="docs toolchain not installed: pip install mkdocs-material 'mkdocstrings[python]'",
)
def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
            "--config-file",
            str(ROOT / "mkdocs.yml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}"
    site = tmp_path / "site"
    for page in ("index.html", "api/index.html", "cli/index.html", "faq/index.html", "concepts/index.html"):
        assert (site / page).is_file(), page
    # the API page was generated from docstrings, not left as ':::' directives
    api = (site / "api" / "index.html").read_text()
    assert ":::" not in api and "segment_image" in api


def test_cli_reference_lists_every_subcommand():
    from empanada_nb.cli import COMMANDS

    text = (ROOT / "docs" / "cli.md").read_text()
    for cmd in COMMANDS:
        assert f"$ empanada-nb {cmd} --help" in text, f"docs/cli.md lacks the help of {cmd}"
