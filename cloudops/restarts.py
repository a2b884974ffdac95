"""The supervisor's rules, as pure functions: restart or stop, how long to wait, what the log says.

`cloudops.supervisor` runs the trainer and asks `decide` after every attempt. The trainer's exit
codes carry the meaning (foundation.errors, pretrain.training.watchdog):

  0   finished                      -> stop for good
  2   user error (one `error:` line) -> stop for good: a restart would fail the same way
  75  hang watchdog (EX_TEMPFAIL)    -> restart; it resumes from the last checkpoint
  other / killed by a signal         -> restart, after a growing pause
  none (the VM rebooted, or the supervisor was stopped by systemd) -> restart at once

An attempt that ends like the ones before it (same exit code, same last line with its numbers
blanked, no new step) is the same failure again; after `max_identical` of them in a row the
supervisor gives up rather than burn TPU hours on a loop.
"""
from __future__ import annotations

import re
import time
from typing import Any, Mapping, NamedTuple, Sequence

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_HANG = 75  # pretrain.training.watchdog.EXIT_CODE (not imported: that module imports absl/TF logging)
FINAL_ACTIONS = ("finished", "user-error", "gave-up", "stopped")
# the trainer's progress line (pretrain.training.trainer._log_progress)
PROGRESS_RE = re.compile(r"\bstep (\d+)/(\d+) \(epoch [^)]*\):.* ([0-9.]+) ex/s")


class Attempt(NamedTuple):
    """One start of the trainer, as the state file keeps it."""

    number: int
    exit_code: int | None  # None: interrupted from outside (reboot, systemd stop); negative: killed by that signal
    signature: str  # the attempt's last output line, numbers blanked
    step: int | None  # the last step it logged


class Decision(NamedTuple):
    action: str  # "restart" or one of FINAL_ACTIONS
    reason: str
    delay: float  # seconds to wait before a restart


class Progress(NamedTuple):
    step: int
    num_train_steps: int
    examples_per_second: float


def signature(line: str) -> str:
    """A failure's fingerprint: its last line with digits blanked (times and PIDs vary, the failure does not)."""
    return re.sub(r"\d+", "#", line.strip())[:300]


def parse_progress(line: str) -> Progress | None:
    m = PROGRESS_RE.search(line)
    return Progress(int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else None


def restart_delay(repeats: int, base_seconds: float) -> float:
    """Pause before the next start: base, 2x, 4x ... for the same failure repeating, at most 10 min."""
    return min(600.0, base_seconds * 2 ** max(0, repeats - 1))


def identical_run(attempts: Sequence[Attempt]) -> int:
    """How many attempts at the end failed the same way without a new step."""
    last = attempts[-1]
    n = 0
    for a in reversed(attempts):
        if (a.exit_code, a.signature, a.step) != (last.exit_code, last.signature, last.step):
            break
        n += 1
    return n


def decide(attempts: Sequence[Attempt], *, max_identical: int, base_delay: float) -> Decision:
    """What to do after the last of `attempts` ended."""
    if not attempts:
        return Decision("restart", "first start", 0.0)
    last = attempts[-1]
    if last.exit_code == EXIT_OK:
        return Decision("finished", "the trainer finished (exit status 0)", 0.0)
    if last.exit_code == EXIT_USER_ERROR:
        return Decision("user-error", f"the trainer refused to run (exit status 2): {last.signature}; fix it, "
                                      "then scripts/train.sh", 0.0)
    if last.exit_code is None:
        return Decision("restart", "interrupted (reboot or stop from outside); resuming", 0.0)
    what = {EXIT_HANG: "hang watchdog (exit status 75)"}.get(
        last.exit_code, f"killed by signal {-last.exit_code}" if last.exit_code < 0 else
        f"exit status {last.exit_code}")
    repeats = identical_run(attempts)
    if repeats >= max_identical:
        return Decision("gave-up", f"{repeats} attempts in a row ended the same way ({what}: {last.signature}) "
                                   "without a new step; see the log", 0.0)
    return Decision("restart", f"{what}; resuming from the last checkpoint", restart_delay(repeats, base_delay))


def steps_per_second(seen: Sequence[tuple[float, int]]) -> float | None:
    """The step rate over (time, step) observations, oldest first; None until two show progress."""
    if len(seen) < 2 or seen[-1][1] <= seen[0][1] or seen[-1][0] <= seen[0][0]:
        return None
    return (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])


def heartbeat_line(beat: Mapping[str, Any], now: float | None = None) -> str:
    """One line a person reads: the run's state, step, speed and how old this news is."""
    now = time.time() if now is None else now
    age = max(0, int(now - float(beat.get("updated", now))))
    parts = [f"{beat.get('name', '?')}: {beat.get('state', '?')} (attempt {beat.get('attempt', 0)})"]
    if beat.get("step") is not None:
        total = beat.get("num_train_steps") or 0
        share = f" ({100 * beat['step'] / total:.1f}%)" if total else ""
        parts.append(f"step {beat['step']}/{total or '?'}{share}")
    if beat.get("examples_per_second") is not None:
        parts.append(f"{beat['examples_per_second']:.1f} examples/s")
    rate, total = beat.get("steps_per_second"), beat.get("num_train_steps")
    if rate and total and beat.get("step") is not None and beat.get("state") == "running":
        parts.append(f"about {(total - beat['step']) / rate / 3600:.1f} h to go")
    parts.append(f"heartbeat {age} s ago from {beat.get('host', '?')}")
    if beat.get("state") not in FINAL_ACTIONS and age > 3 * float(beat.get("sync_seconds", 60)) + 60:
        parts.append("STALE: the VM or its supervisor is not running (scripts/status.sh shows the TPU's state)")
    if beat.get("reason"):
        parts.append(str(beat["reason"]))
    return ", ".join(parts)
