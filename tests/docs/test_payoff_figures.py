"""docs/payoff.md's figures are the recorded points': the curve takes hours, so its prose is checked against
bench/results/payoff*.json instead of by a rerun; a point rescored or a sentence left behind fails here."""
import json
import re
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import payoff  # noqa: E402

DOC = (ROOT / "docs" / "payoff.md").read_text(encoding="utf-8")
RESULTS = ROOT / "bench" / "results"
DECAYED = DOC[DOC.index("## What the decayed curve"):DOC.index("## The earlier curve")]
EARLIER = DOC[DOC.index("## The earlier curve"):]
SPREAD = re.compile(r"(\d\.\d{3}) \+- (\d\.\d{3})")
MARGIN = re.compile(r"margin ([+-]\d+\.\d)")


def recorded(points: list[dict]) -> set[tuple[str, str]]:
    """Every mean +- std a point holds (pretrained arm, random-init arm, random features), as the docs print it."""
    pairs = [("pretrained_mean", "pretrained_std"), ("random_init_mean", "random_init_std"),
             ("frozen_random_init_mean", "frozen_random_init_std")]
    return {(f"{p[m]:.3f}", f"{p[s]:.3f}") for p in points for m, s in pairs}


def test_every_decayed_figure_and_margin_is_a_recorded_point():
    points = json.loads((RESULTS / "payoff.json").read_text())["points"]
    figures = SPREAD.findall(DECAYED)
    assert len(figures) >= 10, "the section's figures were not found: has its wording changed?"
    assert set(figures) <= recorded(points)
    margins = {f"{100 * payoff.margin(p):+.1f}" for p in points}
    written = MARGIN.findall(DECAYED)
    assert written and set(written) <= margins
    scored = re.search(r"\((\d+) points\)", DECAYED)
    assert scored and int(scored.group(1)) == len(points)


def test_every_earlier_figure_is_a_recorded_point():
    figures = SPREAD.findall(EARLIER)
    assert len(figures) >= 3 and set(figures) <= recorded(json.loads((RESULTS / "payoff_2h.json").read_text()))


def test_the_demos_last_line_quotes_recorded_gains():
    """The demo ends with the curve's answer (workflow/pipeline.py PAYOFF): its signed figures are points' gains."""
    from workflow.pipeline import PAYOFF

    gains = {f"{100 * p['gain']:+.1f}" for p in json.loads((RESULTS / "payoff.json").read_text())["points"]}
    quoted = re.findall(r"[+-]\d+\.\d\b", PAYOFF)
    assert len(quoted) >= 3 and set(quoted) <= gains, (quoted, gains)
