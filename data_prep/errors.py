"""One error type for bad user input, and the wrapper that turns it into one line.

Every stage raises `UserError` with a message that names the file, line, key or value
at fault; entry points call `run_cli`, which prints `error: <message>` and exits 2
instead of a traceback from deep inside a library.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn


class UserError(Exception):
    """Bad input that the user can fix: the message is the whole explanation."""


def quiet_tensorflow() -> None:
    """Hide TensorFlow's oneDNN/CUDA start-up notices; call before TF is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run an entry point; a `UserError` becomes one line on stderr and exit code 2."""
    quiet_tensorflow()
    try:
        code = main()
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    raise SystemExit(code or 0)
