"""The documentation site builds with ``mkdocs build --strict`` (warnings are errors)."""

import importlib.util
import inspect
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
    # numpydoc sections were parsed (docstring_style: numpy), not shown as plain text
    for section in ("Parameters:", "Returns:", "Raises:", "Examples:"):
        assert f'doc-section-title">{section}' in api, section


def test_cli_reference_lists_every_subcommand():
    from empanada_nb.cli import COMMANDS

    text = (ROOT / "docs" / "cli.md").read_text()
    for cmd in COMMANDS:
        assert f"$ empanada-nb {cmd} --help" in text, f"docs/cli.md lacks the help of {cmd}"


def _own_members(cls):
    """Public members of ``cls`` and of the classes it inherits from inside empanada_nb (mixins).

    Classes from other packages (anywidget, traitlets, ipywidgets) are skipped: their API is theirs.
    The first class in the MRO that defines a name wins, as in attribute lookup.
    """
    seen = set()
    for klass in inspect.getmro(cls):
        if klass.__module__.split(".")[0] != "empanada_nb":
            continue
        for mname, member in vars(klass).items():
            if mname.startswith("_") or mname in seen:
                continue
            seen.add(mname)
            yield mname, member


def _public_api():
    import empanada_nb

    for name in sorted(dir(empanada_nb)):
        obj = getattr(empanada_nb, name)
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if inspect.isfunction(obj):
            yield name, obj, "function"
        elif inspect.isclass(obj):
            yield name, obj, "class"
            for mname, member in _own_members(obj):
                if isinstance(member, property):
                    yield f"{name}.{mname}", member.fget, "property"
                elif isinstance(member, (classmethod, staticmethod)):
                    yield f"{name}.{mname}", member.__func__, "method"
                elif inspect.isfunction(member):
                    yield f"{name}.{mname}", member, "method"


def test_public_api_walk_includes_widget_mixins():
    """The check covers the Viewer's methods that live in its mixins (picks, regions), not only viewer.py's."""
    names = {name for name, _, _ in _public_api()}
    assert {"Viewer", "Viewer.set_slice", "Viewer.add_pick", "Viewer.save_patches"} <= names
    assert {"TrainingDashboard.start", "TrainingDashboard.history"} <= names
    assert not any(n.startswith("Viewer.") and n.split(".")[1] in ("observe", "send", "on_msg") for n in names)


def _has_section(doc: str, title: str) -> bool:
    lines = [line.strip() for line in doc.splitlines()]
    return any(a == title and b == "-" * len(title) for a, b in zip(lines, lines[1:]))


def test_public_api_has_numpydoc_sections():
    """Parameters (when it takes any), Returns (functions and methods) and Examples on every public name."""
    missing = []
    for name, obj, kind in _public_api():
        doc = inspect.getdoc(obj) or ""
        params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        need = []
        if params and kind != "property":
            need.append("Parameters")
        if kind in ("function", "method", "property"):
            need.append("Returns")
        if kind != "property":
            need.append("Examples")
        missing += [f"{name}: {title}" for title in need if not _has_section(doc, title)]
    assert not missing, "docstring sections missing:\n  " + "\n  ".join(missing)
