"""Front-end assets: one ES module string per widget, assembled from the hand-written parts in ``static/``.

anywidget loads ``_esm`` from a string through a ``blob:`` URL, where a relative ``import "./x.js"``
cannot resolve (there is no base URL). The parts under ``static/`` are nevertheless real ES modules
(``import { a, b } from "./x.js"`` and ``export function|class|const``), readable and checkable on
their own; ``assemble`` inlines them into one module at import time, with no build step and no
Node.js, so a ``pip install`` from a git checkout works as it is. Each part keeps its own scope: it
becomes a function whose return value is its exports, and an import becomes a destructuring of that
value (the shape of the module wrappers esbuild and Rollup emit). Only this small subset of module
syntax is accepted; anything else is a one-line error naming the file.

The debug flag (``EMPANADA_NB_DEBUG=1`` in the kernel's environment, or ``debug=True`` on a widget)
makes the browser side register its views on ``window.__enb`` and keep timing statistics; the
browser tests and ``benchmarks/slice_switch.py`` turn it on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import traitlets as t

STATIC = Path(__file__).parent / "static"

# import { a, b as c } from "./x.js";   (names only; may span lines)
_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"(\.{1,2}/[^"]+)"\s*;[ \t]*$', re.M)
# export function f / export async function f / export class C / export const|let x
_EXPORT = re.compile(r"^export\s+((?:async\s+)?function\*?|class|const|let)\s+([A-Za-z_$][\w$]*)", re.M)
_OTHER = re.compile(r"^\s*(import|export)\b(?!\s+default\s)", re.M)
_DEFAULT = re.compile(r"^export\s+default\s", re.M)


def debug_default() -> bool:
    """Whether widgets start with ``debug=True``: ``EMPANADA_NB_DEBUG`` is set to something other than 0/empty.

    Returns
    -------
    bool
        True when the environment variable asks for the browser-side debug hooks.

    Examples
    --------
    >>> isinstance(debug_default(), bool)
    True
    """
    return os.environ.get("EMPANADA_NB_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


class DebugFlag(t.Bool):
    """The widgets' ``debug`` trait: a Bool whose default is ``debug_default`` when a widget is created."""

    default_value = t.Undefined  # no static default: traitlets then calls make_dynamic_default

    def make_dynamic_default(self) -> bool:
        return debug_default()


def _parse(path: Path) -> tuple[list[tuple[list[tuple[str, str]], Path]], list[str], str]:
    src = path.read_text(encoding="utf-8")
    imports = []
    for m in _IMPORT.finditer(src):
        names = []
        for item in m.group(1).split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split()
            if len(parts) == 1:
                names.append((parts[0], parts[0]))
            elif len(parts) == 3 and parts[1] == "as":
                names.append((parts[0], parts[2]))
            else:
                raise ValueError(
                    f"{path.name}: cannot read the import {item!r}; write `{{ name }}` or `{{ name as alias }}`"
                )
        imports.append((names, (path.parent / m.group(2)).resolve()))
    body = _IMPORT.sub("", src)
    exports = [m.group(2) for m in _EXPORT.finditer(body)]
    body = _EXPORT.sub(lambda m: m.group(0)[len("export") :].lstrip(), body)
    other = _OTHER.search(body)
    if other:
        line = body[other.start() :].splitlines()[0].strip()
        raise ValueError(
            f'{path.name}: unsupported module syntax {line!r}; use `import {{ a }} from "./x.js";` and '
            "`export function|class|const name` (see empanada_nb/widgets/_esm.py)"
        )
    return imports, exports, body


def assemble(entry: str | os.PathLike) -> str:
    """One ES module from ``entry`` and the parts it imports (relative paths, recursively).

    Parameters
    ----------
    entry : str or path-like
        The entry module (``static/viewer.js``); its ``export default`` is the widget's.

    Returns
    -------
    str
        Module source with every imported part inlined in dependency order, ready for ``_esm``.

    Examples
    --------
    >>> from empanada_nb.widgets._esm import STATIC, assemble
    >>> src = assemble(STATIC / "viewer.js")
    >>> "export default" in src and 'from "./' not in src
    True
    """
    entry = Path(entry).resolve()
    order: list[Path] = []
    parsed: dict[Path, tuple] = {}
    visiting: list[Path] = []

    def visit(path: Path) -> None:
        if path in parsed:
            return
        if path in visiting:
            cycle = " -> ".join(p.name for p in visiting[visiting.index(path) :] + [path])
            raise ValueError(
                f"import cycle between front-end modules: {cycle}; move the shared part into its own module"
            )
        if not path.is_file():
            where = f" (imported from {visiting[-1].name})" if visiting else ""
            raise FileNotFoundError(f"front-end module {path} not found{where}")
        visiting.append(path)
        info = _parse(path)
        for _, dep in info[0]:
            visit(dep)
        visiting.pop()
        parsed[path] = info
        order.append(path)

    visit(entry)
    var = {p: f"__enb_mod{i}" for i, p in enumerate(order)}
    out = [f"// Assembled by empanada_nb/widgets/_esm.py from {entry.name} and its parts; edit the parts in static/.\n"]
    for path in order:
        imports, exports, body = parsed[path]
        for names, dep in imports:
            missing = [n for n, _ in names if n not in parsed[dep][1]]
            if missing:
                raise ValueError(f"{path.name} imports {', '.join(missing)} from {dep.name}, which does not export it")
        binds = "".join(
            f"const {{ {', '.join(n if n == a else f'{n}: {a}' for n, a in names)} }} = {var[dep]};\n"
            for names, dep in imports
        )
        rel = path.relative_to(STATIC) if path.is_relative_to(STATIC) else path.name
        if path == entry:
            if len(_DEFAULT.findall(body)) != 1:
                raise ValueError(f"{path.name}: the entry module needs exactly one `export default`")
            out.append(f"// ---- {rel}\n{binds}{body}")
        else:
            if _DEFAULT.search(body):
                raise ValueError(f"{path.name}: only the entry module may `export default`")
            ret = f"return {{ {', '.join(exports)} }};"
            out.append(f"// ---- {rel}\nconst {var[path]} = (() => {{\n{binds}{body}\n{ret}\n}})();\n")
    return "\n".join(out)
