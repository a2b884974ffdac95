"""Fixtures shared by all tests: the bundled real data, and a quiet TensorFlow."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


@pytest.fixture(scope="session")
def root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def corpus_path() -> pathlib.Path:
    """The bundled real NSMC corpus (15,235 review lines, blank line between movies)."""
    return DATA / "corpus" / "nsmc_reviews_sample.txt"


@pytest.fixture(scope="session")
def koelectra_vocab() -> pathlib.Path:
    return DATA / "vocab" / "koelectra_v1_vocab.txt"


@pytest.fixture(scope="session")
def sentiment_dir() -> pathlib.Path:
    return DATA / "nsmc_sentiment"

from gcs_emulator import bucket, emulator_host, store  # noqa: E402,F401  (fixtures for every test module)
