"""Where the shared peers and raw data live: `$ELECTRA_SHARED_DIR`, else `shared/` beside the
checkout (`../shared`), else beside the local repository it was cloned from. The peers are run,
never vendored."""
import importlib.util
import os
import pathlib
import subprocess
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _origin_sibling() -> pathlib.Path | None:
    """`shared/` beside the repository this checkout was cloned from, when that is a local folder
    (a CI clone of a developer's checkout lives elsewhere, its origin does not)."""
    try:
        url = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    path = pathlib.Path(url[len("file://"):] if url.startswith("file://") else url)
    return path.resolve().parent / "shared" if path.is_absolute() and path.exists() else None


def _find() -> pathlib.Path:
    candidates = [os.environ.get("ELECTRA_SHARED_DIR"), ROOT.parent / "shared", _origin_sibling()]
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
