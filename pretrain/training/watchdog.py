"""Hang watchdog: a run that stops making progress logs where it was and exits non-zero.

TPU runs of the original sometimes hang after a resume, burning hours until someone
looks. The training loop calls `beat()` after every finished step (or host loop); if no
beat arrives for `timeout_seconds`, a background thread logs `describe()` (e.g. step and
data position) and the stack of every thread, then ends the process with `os._exit(75)`
(EX_TEMPFAIL, "try again") so the launching script restarts it, which resumes from the
last checkpoint.

A thread cannot run while another holds the GIL inside a C call; for that case a
C-level `faulthandler` timer, re-armed on every beat at twice the timeout, dumps the
stacks and exits with status 1 without needing the GIL.

The timeout must cover the slowest normal gap between beats (a host loop and a checkpoint
save); the trainer starts the watchdog only after its first host call, so input start-up and
the first step's compilation are not counted (`pretrain.training.trainer._watchdog`).
"""
from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
import traceback
from typing import Callable

from absl import logging

EXIT_CODE = 75  # EX_TEMPFAIL


def thread_stacks() -> str:
    """The current stack of every Python thread, most recent call last."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"Thread {names.get(ident, '?')} ({ident}):\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


class Watchdog:
    """Exit the process when `beat()` has not been called for `timeout_seconds`."""

    def __init__(self, timeout_seconds: float, describe: Callable[[], str]):
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.timeout_seconds = float(timeout_seconds)
        self.describe = describe
        self._last_beat = time.monotonic()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Watchdog":
        self.beat()
        self._thread = threading.Thread(target=self._watch, name="hang-watchdog", daemon=True)
        self._thread.start()
        return self

    def beat(self) -> None:
        """Record progress; call after every finished step or host loop."""
        self._last_beat = time.monotonic()
        faulthandler.dump_traceback_later(2 * self.timeout_seconds, exit=True)

    def stop(self) -> None:
        self._stopped.set()
        faulthandler.cancel_dump_traceback_later()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "Watchdog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _watch(self) -> None:
        interval = min(1.0, self.timeout_seconds / 4)
        while not self._stopped.wait(interval):
            idle = time.monotonic() - self._last_beat
            if idle >= self.timeout_seconds:
                self._fire(idle)

    def _fire(self, idle: float) -> None:
        try:
            where = self.describe()
        except Exception as exc:  # the report must not die with the thing it reports on
            where = f"(describe() failed: {exc!r})"
        logging.error("watchdog: no progress for %.0f s (timeout %.0f s); %s; exiting with status %d so the "
                      "launcher restarts the run\n%s", idle, self.timeout_seconds, where, EXIT_CODE, thread_stacks())
        logging.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)
