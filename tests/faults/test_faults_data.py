"""Faults and bad input on the data side (issue 16): each is one `error:` line and exit code 2,
leaves nothing behind that blocks the corrected command, and loses nothing already written.

Every case runs the real command in a subprocess (as a user would) and asserts on the exit
code, the exact stderr line, and the bytes on disk. `gs://` cases use gcp-storage-emulator
(404), a local server that refuses every request (403), a closed port (no network), and an
empty home without credentials.
"""
import hashlib
import http.server
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENTRY = {"electra-clean": "data_prep.clean", "electra-vocab": "data_prep.vocab", "electra-build-data": "data_prep.build",
         "electra-pretrain": "pretrain.training.run", "electra-export": "pretrain.conversion.export",
         "electra-beam": "data_prep.beam_pipeline"}
LOGIN = "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a key file)"


@pytest.fixture()
def env(tmp_path_factory) -> dict:
    """A user without Google Cloud credentials: empty home, no metadata server, no emulator."""
    home = tmp_path_factory.mktemp("home")
    keep = {k: v for k, v in os.environ.items()
            if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG")}
    return dict(keep, PYTHONPATH=str(ROOT), HOME=str(home), CLOUDSDK_CONFIG=str(home), NO_GCE_CHECK="true",
                ELECTRA_GCS_RETRY_SECONDS="1", TF_CPP_MIN_LOG_LEVEL="3")


def run(command: str, *args, env: dict, cwd=None, **kw) -> subprocess.CompletedProcess:
    code = f"import {ENTRY[command]} as m; m.cli()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, **kw)


def start(command: str, *args, env: dict) -> subprocess.Popen:
    code = f"import {ENTRY[command]} as m; m.cli()"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def snapshot(folder) -> dict[str, str]:
    """Every file under `folder` with the sha256 of its bytes."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def lines(corpus_path) -> bytes:
    """The first 300 lines of the bundled corpus (a few documents)."""
    return b"".join(corpus_path.read_bytes().splitlines(keepends=True)[:300])


@pytest.fixture()
def raw(tmp_path, lines) -> pathlib.Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "reviews.txt").write_bytes(lines)
    return folder


@pytest.fixture()
def cleaned(tmp_path, raw, env) -> pathlib.Path:
    out = tmp_path / "cleaned"
    assert run("electra-clean", raw, out, env=env).returncode == 0
    return out


@pytest.fixture()
def vocab(tmp_path, cleaned, env) -> pathlib.Path:
    out = tmp_path / "vocab"
    assert run("electra-vocab", "--vocab-size", 400, "--merge-with", "none", cleaned, out, env=env).returncode == 0
    return out / "vocab.txt"


# ---- (1) every gs:// access error is one line naming the path and the fix -------------------------


class _Refuse(http.server.BaseHTTPRequestHandler):
    """Answers every request with 403, as Cloud Storage does for an account without the IAM role."""

    def _refuse(self):
        body = json.dumps({"error": {"code": 403, "message": "caller does not have storage.objects.list access"}})
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_DELETE = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture()
def refusing_host():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _line(fault: str, path: str) -> str:
    bucket = path[len("gs://"):].split("/")[0]
    return {
        "no credentials": f"error: no Google Cloud credentials to access {path}: {LOGIN}\n",
        "no network": f"error: cannot reach Cloud Storage for {path} (ConnectionError): check the network "
                      "(and STORAGE_EMULATOR_HOST if set)\n",
        "404": f"error: bucket gs://{bucket} does not exist ({path}): fix the path or create it with "
               f"`gcloud storage buckets create gs://{bucket}`\n",
        "403": f"error: access to {path} refused: grant this account (on a TPU VM, the VM's service account) "
               f"roles/storage.objectAdmin on gs://{bucket} (objectViewer to read only)\n",
    }[fault]


# (command, fault, arguments with {gs} for the gs:// path at fault, the path named in the line)
GCS_CASES = [
    ("electra-clean", "no credentials", ["{gs}/raw", "{tmp}/out"], "{gs}/raw"),
    ("electra-clean", "404", ["{raw}", "{gs}/clean"], "{gs}/clean"),
    ("electra-vocab", "403", ["{gs}/clean", "{tmp}/out"], "{gs}/clean"),
    ("electra-vocab", "no network", ["--merge-with", "none", "{raw}", "{gs}/vocab"], "{gs}/vocab"),
    ("electra-build-data", "404", ["--corpus-dir", "{gs}/clean", "--vocab-file", "{vocab}", "--output-dir",
                                   "{tmp}/out"], "{gs}/clean"),
    ("electra-build-data", "no credentials", ["--corpus-dir", "{raw}", "--vocab-file", "{vocab}", "--output-dir",
                                              "{gs}/records"], "{gs}/records"),
    ("electra-pretrain", "no credentials", ["--data-dir", "{gs}/run", "--model-name", "m", "--hparams",
                                            "{root}/configs/demo.json"], "{gs}/run/vocab.txt"),
    ("electra-export", "403", ["--model-dir", "{gs}/run/models/m", "--output-dir", "{tmp}/out"],
     "{gs}/run/models/m"),
    ("electra-export", "no network", ["--model-dir", "{tmp}/model", "--output-dir", "{gs}/export"], "{gs}/export"),
]


@pytest.mark.parametrize("command,fault,args,named", GCS_CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in GCS_CASES])
def test_gcs_access_error_is_one_line(command, fault, args, named, tmp_path, raw, env, request):
    if fault == "404":
        env["STORAGE_EMULATOR_HOST"] = request.getfixturevalue("emulator_host")
    elif fault == "403":
        env["STORAGE_EMULATOR_HOST"] = request.getfixturevalue("refusing_host")
    elif fault == "no network":
        env["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{_closed_port()}"
    (tmp_path / "model").mkdir()
    vocab = request.getfixturevalue("vocab") if "{vocab}" in args else None
    names = dict(gs="gs://no-such-bucket-for-tests", tmp=tmp_path, raw=raw, vocab=vocab, root=ROOT)
    before = snapshot(tmp_path)
    result = run(command, *[a.format(**names) for a in args], env=env)
    assert (result.returncode, result.stderr) == (2, _line(fault, named.format(**names)))
    assert snapshot(tmp_path) == before  # nothing written locally


# ---- (5) a failed run leaves nothing that blocks the corrected command ----------------------------


def test_failed_clean_leaves_no_output_and_the_corrected_rerun_works(tmp_path, raw, lines, env):
    import gzip

    (raw / "more.txt.gz").write_bytes(gzip.compress(lines)[:-40])  # truncated download
    out = tmp_path / "out"
    failed = run("electra-clean", raw, out, env=env)
    assert failed.returncode == 2
    assert failed.stderr.startswith(f"error: unreadable file {raw / 'more.txt.gz'}: ") and failed.stderr.count("\n") == 1
    assert not out.exists()
    (raw / "more.txt.gz").write_bytes(gzip.compress(lines))
    assert run("electra-clean", raw, out, env=env).returncode == 0
    assert sorted(snapshot(out)) == ["clean_stats.json", "cleaned-00000-of-00001.txt"]


def test_failed_rerun_keeps_the_previous_output_byte_identical(tmp_path, raw, cleaned, lines, env):
    import gzip

    before = snapshot(cleaned)
    (raw / "more.txt.gz").write_bytes(gzip.compress(lines)[:-40])
    failed = run("electra-clean", raw, cleaned, env=env)
    assert failed.returncode == 2 and failed.stderr.startswith("error: unreadable file ")
    assert snapshot(cleaned) == before


def test_failed_vocab_leaves_no_output_and_the_corrected_rerun_works(tmp_path, lines, env):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"\n\n\n")
    out = tmp_path / "vocab"
    failed = run("electra-vocab", "--merge-with", "none", corpus, out, env=env)
    assert (failed.returncode, failed.stderr) == (2, f"error: empty corpus: no text lines in {corpus}\n")
    assert not out.exists()
    corpus.write_bytes(lines)
    assert run("electra-vocab", "--merge-with", "none", "--vocab-size", 400, corpus, out, env=env).returncode == 0
    assert sorted(snapshot(out)) == ["tokenizer.json", "vocab.txt", "vocab_report.json", "vocab_settings.json"]


def test_build_failing_on_its_first_file_leaves_nothing_and_the_corrected_rerun_works(tmp_path, cleaned, vocab,
                                                                                      lines, env):
    import gzip

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt.gz").write_bytes(gzip.compress(lines)[:-40])
    out = tmp_path / "records"
    args = ["--corpus-dir", corpus, "--vocab-file", vocab, "--output-dir", out, "--max-seq-length", 64]
    failed = run("electra-build-data", *args, env=env)
    assert failed.returncode == 2
    assert failed.stderr.startswith(f"error: unreadable file {corpus / 'a.txt.gz'}: ") and failed.stderr.count("\n") == 1
    assert not out.exists()  # no `_build/` left to refuse the rerun as "a partial build with other settings"
    (corpus / "a.txt.gz").write_bytes(gzip.compress(lines))
    fixed = run("electra-build-data", *args, env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert sorted(snapshot(out)) == ["manifest.json", "pretrain_data.tfrecord-0-of-1"]


# ---- (6) an output inside an input is refused before anything is written --------------------------


@pytest.mark.parametrize("command,args,output", [
    ("electra-clean", ["raw", "raw"], "raw"),
    ("electra-clean", ["raw", "raw/clean"], "raw/clean"),
    ("electra-vocab", ["--merge-with", "none", "raw", "raw"], "raw"),
    ("electra-beam", ["--input", "raw", "--output-dir", "raw/prep", "--vocab-sample-lines", "100"], "raw/prep"),
])
def test_output_inside_the_input_is_refused(command, args, output, tmp_path, raw, env):
    before = snapshot(tmp_path)
    result = run(command, *args, env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"error: output {output} is inside the input raw: the next run "
                                                     "would read its own output back; choose an output folder "
                                                     "outside the input\n")
    assert snapshot(tmp_path) == before and sorted(os.listdir(tmp_path / "raw")) == ["reviews.txt"]


def test_input_inside_the_output_is_refused(tmp_path, raw, env):
    before = snapshot(tmp_path)
    result = run("electra-clean", "raw/reviews.txt", ".", env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "error: input raw/reviews.txt is inside the output .: choose "
                                                     "an output folder that holds no input\n")
    assert snapshot(tmp_path) == before


# ---- (8) smaller ones ------------------------------------------------------------------------------


def test_kill_9_during_clean_leaves_temporaries_that_the_rerun_removes(tmp_path, corpus_path, env):
    out = tmp_path / "out"
    proc = start("electra-clean", "--chunk-bytes", 4096, corpus_path, out, env=env)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(".tmp-" in p.name for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "clean ended before its temporary appeared"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in out.iterdir())  # the killed run's lease stays; the rerun takes it over at once
    assert len(left) == 2 and left[0] == ".lease.json" and left[1].startswith("cleaned-00000-of-00001.txt.tmp-")
    assert run("electra-clean", corpus_path, out, env=env).returncode == 0
    reference = tmp_path / "reference"
    assert run("electra-clean", corpus_path, reference, env=env).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["clean_stats.json", "cleaned-00000-of-00001.txt"]
    assert snapshot(out)["cleaned-00000-of-00001.txt"] == snapshot(reference)["cleaned-00000-of-00001.txt"]


def test_records_stage_names_bad_utf8_by_file_and_line(tmp_path, lines, vocab, env):
    corpus = tmp_path / "corpus.txt"
    head, tail = lines.split(b"\n", 50)[:50], lines.split(b"\n", 50)[50]
    corpus.write_bytes(b"\n".join(head) + b"\nnot \xff UTF-8\n" + tail)
    number = 51
    out = tmp_path / "records"
    result = run("electra-build-data", "--corpus-dir", corpus, "--vocab-file", vocab, "--output-dir", out, env=env)
    assert (result.returncode, result.stderr) == (
        2, f"error: {corpus}:{number}: not UTF-8 text (invalid start byte); run electra-clean first\n")
    assert not out.exists()


def test_rerun_of_a_finished_build_reports_it_skipped(tmp_path, cleaned, vocab, env):
    out = tmp_path / "records"
    args = ["--corpus-dir", cleaned, "--vocab-file", vocab, "--output-dir", out, "--max-seq-length", 64]
    first = run("electra-build-data", *args, env=env)
    assert first.returncode == 0 and "tokens/s" in first.stdout
    before = snapshot(out)
    manifest = json.loads((out / "manifest.json").read_text())
    again = run("electra-build-data", *args, env=env)
    assert (again.returncode, again.stdout) == (
        0, f"{out} is up to date ({manifest['num_examples']:,} examples, {manifest['num_tokens']:,} tokens in 1 "
           "shards; same inputs and settings): skipped; --overwrite to redo\n")
    assert snapshot(out) == before


def test_export_removes_a_staging_folder_that_a_killed_export_left(tmp_path):
    """What `kill -9` during `electra-export` leaves: `.OUT.tmp-*` beside OUT, half written."""
    from pretrain.conversion import export

    left = tmp_path / ".hf.tmp-k1lled_x"
    (left / "discriminator").mkdir(parents=True)
    (left / "discriminator" / "model.safetensors").write_bytes(b"half")
    other = tmp_path / ".other.tmp-k1lled_x"  # another output's staging: not ours
    other.mkdir()
    staging = export._staging_dir(str(tmp_path / "hf"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".other.tmp-k1lled_x", os.path.basename(staging)])
    assert os.path.basename(staging).startswith(".hf.tmp-") and not os.listdir(staging)
