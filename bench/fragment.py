"""Where a benchmark's result goes: one Markdown fragment under bench/results/, stitched by run_all.py."""
from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_fragment(path: str | Path, text: str) -> Path:
    """Write `text` to `path` (a fragment name is taken as bench/results/<name>), creating the folder."""
    path = Path(path)
    if not path.is_absolute() and path.parent == Path("."):
        path = RESULTS / path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return path
