"""Run a list of stages in order, each leaving a marker so that a rerun skips what is finished.

A stage's marker (`STAGES_DIR/NAME.json`) holds the parameters it ran with and its figures; a
stage is skipped when its marker matches and its output is there, redone (output removed first)
when its parameters changed or an earlier stage was redone, resumed when it was interrupted.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

from foundation import fileio


class Stage(NamedTuple):
    name: str
    output: str  # file or folder the stage owns: removed before the stage is redone
    params: Callable[[], dict[str, Any]]  # what the output depends on, besides upstream stages
    run: Callable[[], dict[str, Any]]  # does the work, returns the stage's figures
    line: Callable[[dict[str, Any]], str]  # one-line summary of the figures


def _read_marker(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    try:
        return json.loads(fileio.read_text(path))
    except ValueError:
        return None  # a damaged marker only means the stage is redone


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _canonical(params: dict[str, Any]) -> Any:
    return json.loads(json.dumps(params, sort_keys=True, default=str))


def run_stages(stages: Sequence[Stage], stages_dir: str, force: bool,
               figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run or skip each stage in order, filling `figures` (stage name -> figures)."""
    redo_rest = force
    for number, stage in enumerate(stages, start=1):
        head = f"[{number}/{len(stages)}] {stage.name}"
        marker_path = os.path.join(stages_dir, f"{stage.name}.json")
        marker = _read_marker(marker_path)
        params = _canonical(stage.params())
        same = marker is not None and marker.get("params") == params
        if not redo_rest and same and marker.get("complete") and os.path.exists(stage.output):
            figures[stage.name] = marker["figures"]
            print(f"{head}: done already, skipped: {stage.line(marker['figures'])}", file=sys.stderr, flush=True)
            continue
        if redo_rest or not same:
            _remove(stage.output)  # stale: another setting or another input
        # else: an interrupted run with the same settings; the stage resumes what it can
        redo_rest = True
        print(f"{head} ...", file=sys.stderr, flush=True)
        fileio.write_text(marker_path, json.dumps({"params": params, "complete": False}, indent=2) + "\n")
        start = time.time()
        result = stage.run()
        result.setdefault("seconds", round(time.time() - start, 1))
        figures[stage.name] = _canonical(result)
        fileio.write_text(marker_path, json.dumps({"params": params, "complete": True, "figures": figures[stage.name]},
                                                  indent=2, ensure_ascii=False) + "\n")
        print(f"{head}: {stage.line(figures[stage.name])} ({result['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return figures
