"""The files the pipeline ships with, found wherever it is installed: the run presets
(`configs/<name>.json`), the KoELECTRA vocab, the NSMC corpus sample and sentiment rows (`data/`).

One copy of each file: `configs/` and `data/` at the repository root (where the README's
`--hparams configs/small.json` finds them); this package reaches them through two symlinks,
and setup.py ships them as its package data, so a plain `pip install .` (not only an editable
install) finds them from any directory through `importlib.resources`.
"""
from __future__ import annotations

from importlib import resources


def path(*parts: str) -> str:
    """The file system path of a bundled file, e.g. `path("data", "vocab", "koelectra_v1_vocab.txt")`."""
    found = resources.files(__name__)
    for part in parts:
        found = found / part
    return str(found)


def preset_names() -> tuple[str, ...]:
    """The bundled run presets (`demo`, `tiny`, `small`, `base`, `large`), sorted."""
    folder = resources.files(__name__) / "configs"
    return tuple(sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")))


def preset(name: str) -> str:
    """The path of the bundled preset `configs/<name>.json`."""
    return path("configs", f"{name}.json")


CORPUS_SAMPLE = path("data", "corpus", "nsmc_reviews_sample.txt")
KOELECTRA_VOCAB = path("data", "vocab", "koelectra_v1_vocab.txt")
SENTIMENT_DIR = path("data", "nsmc_sentiment")
