"""One error type for bad user input, and the wrapper that turns it into one line.

Every stage raises `UserError` with a message that names the file, line, key or value
at fault; entry points call `run_cli`, which prints `error: <message>` and exits 2
instead of a traceback from deep inside a library.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from typing import Callable, NoReturn


class UserError(Exception):
    """Bad input that the user can fix: the message is the whole explanation."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so a stage stops the same way; the exit
    code is the signal's (128 + 15), not 2: a supervisor restarts an interrupted run, not a refused one."""

    exit_code = 128 + signal.SIGTERM


class Interrupted(UserError):
    """A stage stopped by Ctrl-C (exit 2) or SIGTERM (exit 143), with its one line (what was kept)."""

    def __init__(self, message: str, by: KeyboardInterrupt):
        super().__init__(message)
        self.exit_code = by.exit_code if isinstance(by, Terminated) else 2


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # EFBIG: a file-size limit (ulimit -f)


def disk_full(exc: BaseException) -> bool:
    """An OSError (or a TensorFlow error, which carries only the text) saying the disk or quota is full."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    text = str(exc)
    return any(os.strerror(code) in text for code in DISK_FULL)


def _sigterm_as_interrupt(pid: int) -> Callable:
    """A SIGTERM handler raising `Terminated` in process `pid`; forked workers (which a pool ends
    with SIGTERM) keep the default: they just end."""
    def handler(signum, frame) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated

    return handler


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run an entry point; a `UserError` becomes one line on stderr and exit code 2.

    TensorFlow is not imported here: stages that do not need it (cleaning, vocab, record
    writing) start in a fraction of a second.
    SIGTERM (a VM's shutdown, `kill`, a preemption notice) ends a stage as Ctrl-C does: the
    stage's own interrupt handling runs (training names its last checkpoint), one line, and exit
    code 143 (Ctrl-C: 2).
    Disk full anywhere is one line too; what was finished stays, so the same command resumes.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from foundation.console import setup_logging

    setup_logging()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt(os.getpid())) if main_thread else None
    try:
        code = main()
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    except Terminated:
        fail("terminated (SIGTERM)", Terminated.exit_code)
    except KeyboardInterrupt:
        fail("interrupted")
    except Exception as exc:  # noqa: BLE001  (only the disk-full kind is handled; the rest re-raised)
        if not disk_full(exc):
            raise
        where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        fail(f"disk full{where}: {exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0][:300]}; "
             "free space and rerun the same command (finished work is kept)")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    raise SystemExit(code or 0)
