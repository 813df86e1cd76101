"""Write one script's section of ``docs/results.md``.

Each example that reports results owns a block between
``<!-- key:begin -->`` and ``<!-- key:end -->``; rerunning a script replaces
its own block and leaves the others as they are.
"""

from __future__ import annotations

from pathlib import Path

HEADER = """# Results

Measured by the scripts in `examples/`; each section below is rewritten by the
script named in it (`python examples/<script>.py`).
"""


def write_section(path, key: str, body: str) -> Path:
    """Replace (or append) the block ``key`` of the Markdown file ``path``."""
    path = Path(path)
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
