"""mkdocs hook: drop links to screenshots under docs/images/ that do not exist (yet).

Screenshots are produced separately (by the widget tests); the docs build, strict, with or without them.
"""
import re
from pathlib import Path

_IMG = re.compile(r"!\[[^\]]*\]\((images/[^)\s]+)\)\n?")


def on_page_markdown(markdown, page, config, files):
    docs = Path(config["docs_dir"])
    src = (docs / page.file.src_path).parent

    def keep(m):
        return m.group(0) if (src / m.group(1)).is_file() else ""

    return _IMG.sub(keep, markdown)
