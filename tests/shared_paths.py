"""Where the shared peers and raw data live (`../shared` beside the checkout on a developer's
machine, `/work/shared` on CI, or `$ELECTRA_SHARED_DIR`): the peers are run, never vendored."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _find() -> pathlib.Path:
    candidates = [os.environ.get("ELECTRA_SHARED_DIR"), ROOT.parent / "shared", "/work/shared"]
    for c in candidates:
        if c and (pathlib.Path(c) / "bench" / "peers").is_dir():
            return pathlib.Path(c)
    raise RuntimeError(f"shared peers not found in any of {candidates}; set ELECTRA_SHARED_DIR")


SHARED = _find()
PEERS = SHARED / "bench" / "peers"
ORIGINAL_ELECTRA = PEERS / "google-research-electra"
KCELECTRA_CLEAN = PEERS / "kcelectra_clean.py"
RAW_DUMP = SHARED / "data" / "nsmc_reviews.txt.gz"
