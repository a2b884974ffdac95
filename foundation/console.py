"""How every console script looks: help that shows defaults, one log format, quiet libraries,
progress that suits where the output goes.

Written once here so that `electra-clean` and `electra-pretrain` read alike: a log file (`make
demo > log`, `nohup` on a TPU VM) gets one timestamped line per event and a periodic status line,
never a progress bar's `\\r` frames; a terminal gets the bars.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any, Iterable, Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
STATUS_SECONDS = 30.0  # a log file's progress line: one per this many seconds at most
_HANDLER_NAME = "electra"

log = logging.getLogger("electra")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, once: `(default: 128)`, `(default: off)`.

    Left alone: required options, positionals, a help that names its default itself
    (`(default: the bundled vocab)` for a path that depends on where the package is installed)
    and one whose default is no value (`None`) when the help says what happens then
    (`default: the preset's`); any other `None` shows as `none`.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace(" (default: %(default)s)", "")  # BooleanOptionalAction's own, < 3.13
        if not action.option_strings or action.required or action.default is argparse.SUPPRESS:
            return text
        said = text.lower()
        if "%(default)" in text or "(default" in said or (action.default is None and "default" in said):
            return text
        return f"{text} (default: {show_default(action.default, switch=action.nargs == 0)})".lstrip()


def show_default(value: Any, switch: bool = False) -> str:
    """A default as the user would type it: on/off for switches, a list space-separated."""
    if isinstance(value, bool):
        return ("on" if value else "off") if switch else str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value).replace("%", "%%")


def parser(prog: str, description: str, **kwargs: Any) -> argparse.ArgumentParser:
    """An argument parser named after the console script, showing every default."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter, **kwargs)


def setup_logging(level: int = logging.INFO) -> None:
    """One format for every command on stderr; libraries' per-call noise off at its source.

    - absl (the trainer's logger) goes through this handler: without absl's own handler there
      is no "Logging before flag parsing" line and no second format;
    - TensorFlow's and Apache Beam's INFO lines ("Sharding callback duration" at every checkpoint
      save, logged through absl from TensorFlow's own files; Beam's type-hint notes) are off:
      `_quiet_libraries` drops them; a handler a library added to stderr (Beam's `basicConfig`,
      a second format) is removed;
    - Hugging Face's progress bars ("Loading weights" at every model load) are off: read once
      when `transformers` is imported, so set before it is.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    root = logging.getLogger()
    for other in [h for h in root.handlers if h.get_name() != _HANDLER_NAME and isinstance(h, logging.StreamHandler)
                  and getattr(h, "stream", None) in (sys.stderr, sys.stdout)]:
        root.removeHandler(other)
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        handler.addFilter(_quiet_libraries)
        root.addHandler(handler)
    root.setLevel(level)
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.setLevel(logging.WARNING)
    tf_logger.handlers.clear()  # TensorFlow adds its own if it logged before a root handler existed
    tf_logger.propagate = True


class _StderrHandler(logging.StreamHandler):
    """Writes to `sys.stderr` as it is when a line is logged, not as it was when the handler was
    made: a stderr redirected or captured later (a test's capture, since closed) is followed."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """False (drop) for an INFO line that a library logs from its own code, whichever logger carries it."""
    path = record.pathname.replace(os.sep, "/")
    return record.levelno >= logging.WARNING or not any(folder in path for folder in _LIBRARY_FOLDERS)


_LIBRARY_FOLDERS = ("/tensorflow/", "/apache_beam/")


def on_terminal(stream=None) -> bool:
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             unit_scale: bool = False, leave: bool = True, interval: float = STATUS_SECONDS):
    """A tqdm bar on a terminal; elsewhere a `Status` that logs one line every `interval` seconds."""
    if on_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=leave,
                    file=sys.stderr, mininterval=1.0)
    return Status(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, interval=interval)


class Status:
    """tqdm's interface (update, set_postfix, iteration), written as a periodic log line."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", unit_scale: bool = False, interval: float = STATUS_SECONDS, clock=time.monotonic):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.unit_scale, self.interval, self.clock = unit_scale, interval, clock
        self.n = 0
        self.postfix = ""
        self.start = self.last = clock()
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> "Status":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """`build: 12.5 MB/40.1 MB (31%), 1.2 MB/s; 3,021 examples` or `probe fine-tune: 243/375 step (65%), ...`."""
        done = self._amount(self.n, self.total is None)
        if self.total:
            done += f"/{self._amount(self.total)} ({100 * self.n / self.total:.0f}%)"
        rate = self._amount(self.n / max(now - self.start, 1e-9), True, ".1f")
        tail = f"; {self.postfix}" if self.postfix else ""
        return f"{self.desc or 'progress'}: {done}, {rate}/s{tail}"

    def _amount(self, value: float, unit: bool = True, plain: str = ",.0f") -> str:
        """With `unit_scale` every amount carries its prefixed unit; else only the last one its unit."""
        if self.unit_scale:
            for prefix in ("", "k", "M", "G", "T"):
                if abs(value) < 1000:
                    return f"{value:{plain if not prefix else '.1f'}} {prefix}{self.unit}"
                value /= 1000
            return f"{value:.1f} P{self.unit}"
        return f"{value:{plain}}" + (f" {self.unit}" if unit else "")


class Heartbeat:
    """Logs `what()` after every `interval` seconds without a `beat()`: a long silent wait (a
    training host call of hundreds of steps on a CPU, its first XLA compilation) shows it is alive."""

    def __init__(self, what, interval: float = STATUS_SECONDS):
        import threading

        self.what, self.interval = what, interval
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def beat(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self.last + self.interval - time.monotonic())):
            if time.monotonic() - self.last >= self.interval:
                log.info("%s", self.what())
                self.beat()
