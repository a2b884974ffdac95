"""Where the shared peers and raw data live: `$ELECTRA_SHARED_DIR`, else `shared/` beside the
checkout (`../shared`). The peers are run, never vendored."""
import importlib.util
import os
import pathlib
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _find() -> pathlib.Path:
    candidates = [os.environ.get("ELECTRA_SHARED_DIR"), ROOT.parent / "shared"]
    for c in candidates:
        if c and (pathlib.Path(c) / "bench" / "peers").is_dir():
            return pathlib.Path(c)
    raise RuntimeError(f"shared peers not found in any of {candidates}; set ELECTRA_SHARED_DIR")


SHARED = _find()
PEERS = SHARED / "bench" / "peers"
ORIGINAL_ELECTRA = PEERS / "google-research-electra"
KCELECTRA_CLEAN = PEERS / "kcelectra_clean.py"
RAW_DUMP = SHARED / "data" / "nsmc_reviews.txt.gz"


def load_peer(path: pathlib.Path, name: str) -> types.ModuleType:
    """Import a peer's file by path, to run it beside ours (never as project code)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
