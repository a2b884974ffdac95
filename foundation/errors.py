"""One error type for bad user input, and the wrapper that turns it into one line.

Every stage raises `UserError` with a message that names the file, line, key or value
at fault; entry points call `run_cli`, which prints `error: <message>` and exits 2
instead of a traceback from deep inside a library.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Callable, NoReturn


class UserError(Exception):
    """Bad input that the user can fix: the message is the whole explanation."""


_NOTICES = (b"absl::InitializeLog", b"oneDNN custom operations", b"cudart_stub", b"cuda drivers",
            b"computation placer", b"cuFFT", b"cuDNN", b"cuBLAS", b"TF-TRT", b"rebuild TensorFlow",
            b"This TensorFlow binary is optimized", b"Unable to register", b"failed call to cuInit")


def quiet_tensorflow() -> None:
    """Import TensorFlow without its oneDNN/CUDA start-up notices.

    TF 2.21 prints those through absl before its log level applies, so
    `TF_CPP_MIN_LOG_LEVEL` alone does not hide them: stderr is captured while TF is
    imported and its devices initialised (a machine without a GPU driver logs a `cuInit`
    error there), and everything but the known notices is written back.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().splitlines(keepends=True):
                if not any(n in line for n in _NOTICES):
                    sys.stderr.buffer.write(line)
            sys.stderr.flush()


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run an entry point; a `UserError` becomes one line on stderr and exit code 2.

    TensorFlow is not imported here: stages that do not need it (cleaning, vocab, record
    writing) start in a fraction of a second.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from foundation.console import setup_logging

    setup_logging()
    try:
        code = main()
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    raise SystemExit(code or 0)
