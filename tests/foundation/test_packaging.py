"""`pip install .` (not editable) ships the presets and the bundled data: a wheel built from a
copy of the checkout holds them byte for byte, and once installed, code run from another
directory finds them."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT
from pretrain.config import from_hparams

BUNDLED = sorted(
    [f"configs/{p.name}" for p in (ROOT / "configs").glob("*.json")]
    + ["data/README.md", "data/corpus/nsmc_reviews_sample.txt", "data/vocab/koelectra_v1_vocab.txt",
       "data/nsmc_sentiment/train.tsv", "data/nsmc_sentiment/test.tsv"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel, built (no network, no deps) from a copy of the checkout's sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "bench", "docs"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (found,) = (tmp / "dist").glob("electra_pipeline-*.whl")
    return found


def test_the_wheel_holds_every_preset_and_bundled_file_byte_for_byte(wheel):
    assert len(BUNDLED) == 10  # five presets, the data README, corpus, vocab, two sentiment splits
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(n[len("electra_data/"):] for n in z.namelist()
                         if n.startswith("electra_data/") and not n.endswith(".py"))
        assert shipped == BUNDLED
        for name in BUNDLED:
            assert z.read(f"electra_data/{name}") == (ROOT / name).read_bytes(), name
        entry_points = z.read(next(n for n in z.namelist() if n.endswith("entry_points.txt"))).decode()
    assert "electra-demo = workflow.pipeline:cli" in entry_points
    assert "electra-pretrain = pretrain.training.run:cli" in entry_points


def test_installed_not_editable_finds_presets_and_data_from_another_directory(wheel, tmp_path):
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                              "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import json, os, electra_data, pretrain.config as c, workflow.pipeline as p, data_prep.vocab as v\n"
        "print(json.dumps({'module': electra_data.__file__, 'presets': electra_data.preset_names(),\n"
        "  'small': c.from_hparams('small').to_dict(),\n"
        "  'corpus': os.path.getsize(p.DEFAULT_CORPUS),\n"
        "  'vocab': open(v.DEFAULT_MERGE_VOCAB, encoding='utf-8').read().split('\\n')[:5],\n"
        "  'train': os.path.getsize(os.path.join(p.SENTIMENT_DIR, 'train.tsv'))}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True,
                          text=True, timeout=120, env=dict(env, PYTHONPATH=str(target)))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["module"] == str(target / "electra_data" / "__init__.py")  # the installed copy, not the checkout
    assert got["presets"] == ["base", "demo", "large", "small", "tiny"]
    assert got["small"] == from_hparams(str(ROOT / "configs" / "small.json")).to_dict()  # the named preset
    assert got["corpus"] == (ROOT / "data" / "corpus" / "nsmc_reviews_sample.txt").stat().st_size
    assert got["vocab"] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert got["train"] == (ROOT / "data" / "nsmc_sentiment" / "train.tsv").stat().st_size
