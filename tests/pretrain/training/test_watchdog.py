"""The hang watchdog, run in child processes that hang (or do not)."""
import subprocess
import sys
import textwrap
import time

from pretrain.training import watchdog
from pretrain.training.watchdog import EXIT_CODE

# The child loads watchdog.py by path, not through the `pretrain` package (which imports
# TensorFlow first): on a loaded machine that import alone outlasted the 1 s timeout.
PRELUDE = textwrap.dedent("""
    import ctypes, importlib.util, time
    spec = importlib.util.spec_from_file_location("watchdog", WATCHDOG_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Watchdog = module.Watchdog
    state = {"step": 0}
    dog = Watchdog(1.0, lambda: f"step {state['step']}, shard 3 record 1200")
    dog.start()
    for _ in range(5):
        time.sleep(0.3)
        state["step"] += 1
        dog.beat()
""").replace("WATCHDOG_PATH", repr(watchdog.__file__))


def _run(body: str, timeout: float = 30):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.monotonic() - start


def test_hang_logs_position_and_stacks_then_exits_for_restart():
    proc, elapsed = _run("""
        def wait_for_tpu():
            time.sleep(120)
        wait_for_tpu()
    """)
    assert proc.returncode == EXIT_CODE
    assert "no progress for 1 s" in proc.stderr
    assert "step 5, shard 3 record 1200" in proc.stderr
    assert "in wait_for_tpu" in proc.stderr and "Thread MainThread" in proc.stderr
    assert elapsed < 15  # beats for 1.5 s, then fires about 1 s later, not after the 120 s sleep


def test_hang_holding_the_gil_is_caught_by_the_c_level_timer():
    proc, elapsed = _run("""
        ctypes.PyDLL(None).sleep(120)  # a C call that keeps the GIL: the watchdog thread cannot run
    """)
    assert proc.returncode == 1
    assert "Timeout" in proc.stderr and "<module>" in proc.stderr
    assert elapsed < 15


def test_regular_beats_and_stop_leave_the_run_alone():
    proc, _ = _run("""
        for _ in range(5):
            time.sleep(0.3)
            dog.beat()
        dog.stop()
        time.sleep(2.2)  # longer than both timeouts after stop()
        print("finished")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "finished"
    assert "watchdog" not in proc.stderr
