"""Every console script's --help: each flag with a line of help and its default, usage naming the
script, no TensorFlow imported; the log format, the periodic status line, libraries kept quiet."""
import argparse
import json
import logging
import re
import subprocess
import sys

from conftest import ROOT
from foundation import console

SCRIPTS = re.findall(r'"(electra-[\w-]+)=([\w.]+):(\w+)"', (ROOT / "setup.py").read_text())

# Run in a child: each script's parser is caught as it parses `--help`, its options read, and
# `sys.modules` looked at after the help was printed.
CHILD = r"""
import argparse, contextlib, importlib, io, json, sys
caught = []
original = argparse.ArgumentParser.parse_known_args
def catching(self, *a, **k):
    caught.append(self)
    return original(self, *a, **k)
argparse.ArgumentParser.parse_known_args = catching
out = {}
for script, module, func in json.loads(sys.argv[1]):
    caught.clear()
    sys.argv = [script, "--help"]
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            getattr(importlib.import_module(module), func)()
        except SystemExit as exc:
            code = exc.code
    parsers = list(caught[:1])
    for action in parsers[0]._actions if parsers else ():
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    options = []
    for parser in parsers:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            shown = formatter._get_help_string(action) if action.help else ""
            if "%(" in shown:
                shown = shown % {"default": action.default}
            options.append({"name": "/".join(action.option_strings) or action.dest, "help": shown,
                            "required": bool(action.required or not action.option_strings)})
    out[script] = {"code": code, "usage": text.getvalue().split("\n")[0], "options": options,
                   "tensorflow": "tensorflow" in sys.modules}
print(json.dumps(out))
"""


def test_every_console_script_helps_with_every_flag_and_its_default_without_tensorflow():
    assert len(SCRIPTS) == 10
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(SCRIPTS)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.splitlines()[-1])
    missing = []
    for script, _, _ in SCRIPTS:
        got = found[script]
        assert got["code"] == 0, script
        assert got["usage"].startswith(f"usage: {script} "), got["usage"]
        assert not got["tensorflow"], f"{script} --help imported TensorFlow"
        for option in got["options"]:
            text = option["help"]
            said = text.lower()
            if not text or (not option["required"] and ("default" not in said or said.count("(default") > 1)):
                missing.append(f"{script} {option['name']}: {text!r}")
            assert "/work/" not in text and "site-packages" not in text, text  # no installed path as a default
    assert not missing, "\n".join(missing)


def test_help_shows_a_default_once_as_typed():
    p = console.parser("x", "d")
    p.add_argument("--n", type=int, default=3, help="count")
    p.add_argument("--on", action="store_true", help="switch")
    p.add_argument("--both", action=argparse.BooleanOptionalAction, default=True, help="paired")
    p.add_argument("--path", default=None, help="where (default: beside the input)")
    p.add_argument("--maybe", default=None, help="optional")
    p.add_argument("--must", required=True, help="needed")
    text = " ".join(p.format_help().split())
    for expected in ("count (default: 3)", "switch (default: off)", "paired (default: on)",
                     "where (default: beside the input)", "optional (default: none)", "--must MUST needed"):
        assert expected in text
    assert text.count("default") == 5


def test_a_log_file_gets_a_periodic_status_line_not_bar_frames(caplog):
    now = [0.0]
    status = console.Status(total=4_000_000, desc="build", unit="B", unit_scale=True, interval=30,
                            clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="electra"):
        status.update(1_000_000)  # within the interval: nothing
        now[0] = 31.0
        status.set_postfix_str("1,234 examples")
        status.update(1_000_000)
        now[0] = 40.0
        status.update(1_000_000)  # 9 s after the last line: nothing
    assert [r.getMessage() for r in caplog.records] == ["build: 2.0 MB/4.0 MB (50%), 64.5 kB/s; 1,234 examples"]
    rows = console.Status(range(3), desc="probe", unit="step", interval=0, clock=lambda: 1.0)
    assert list(rows) == [0, 1, 2] and rows.total == 3 and rows.n == 3
    assert rows.line(2.0) == "probe: 3/3 step (100%), 3.0 step/s"


def test_off_a_terminal_progress_is_the_status_line(capsys):
    bar = console.progress(range(2), desc="x")  # pytest's stderr is not a terminal
    assert isinstance(bar, console.Status) and list(bar) == [0, 1]


def test_one_log_format_and_no_library_noise():
    code = ("import logging, os; from foundation.console import setup_logging; setup_logging()\n"
            "from absl import logging as absl_logging\n"
            "absl_logging.info('from absl'); logging.getLogger('electra-export').warning('from std')\n"
            "logging.getLogger('tensorflow').info('Sharding callback duration: 5 microseconds')\n"
            "saver = '/venv/lib/site-packages/tensorflow/python/checkpoint/functional_saver.py'\n"
            "absl = logging.getLogger('absl')  # how TensorFlow logs it: absl, from its own file\n"
            "absl.handle(absl.makeRecord('absl', logging.INFO, saver, 440, 'Sharding callback duration: 5', (), None))\n"
            "print(os.environ['HF_HUB_DISABLE_PROGRESS_BARS'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, lines  # no "Logging before flag parsing", no TensorFlow INFO line
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO from absl", lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARNING from std", lines[1])
    assert proc.stdout.strip() == "1"


def test_a_heartbeat_logs_only_while_nothing_else_beats(caplog):
    import time

    with caplog.at_level(logging.INFO, logger="electra"):
        beat = console.Heartbeat(lambda: "training: step 200 done, running the next 200", interval=0.2).start()
        time.sleep(0.7)  # three silent intervals: a line each (two, if the machine is slow to wake the thread)
        beat.stop()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) in (2, 3) and set(said) == {"training: step 200 done, running the next 200"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="electra"):
        beat = console.Heartbeat(lambda: "silent", interval=0.3).start()
        for _ in range(6):
            time.sleep(0.1)
            beat.beat()  # host calls faster than the interval: no line
        beat.stop()
    assert caplog.records == []


def test_the_log_follows_stderr_when_it_is_replaced(monkeypatch):
    import io

    console.setup_logging()
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("electra-test").warning("one")
    first.close()  # a test's capture, closed: the next line must not go there
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("electra-test").warning("two")
    assert second.getvalue().endswith(" WARNING two\n")
