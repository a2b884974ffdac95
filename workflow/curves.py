"""Learning curves of a pretraining run, read back from its own TensorBoard event files.

People would rather look at a picture than read logs: `plot_curves` draws the generator and
discriminator losses, the discriminator's AUC and the learning rate by step into one PNG.
The series come from the event files the trainer wrote, so the picture cannot drift from
the run; `read_curves` returns them too, for summaries and tests.
"""
from __future__ import annotations

import argparse
import io
import os
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from foundation import console, fileio
from foundation.errors import UserError, run_cli

# Panel name -> the summary tag the trainer (pretrain/training/trainer.py) writes for it.
DEFAULT_TAGS: Mapping[str, str] = {
    "generator_loss": "loss/generator",
    "discriminator_loss": "loss/discriminator",
    "discriminator_auc": "discriminator/auc",
    "learning_rate": "learning_rate",
}
_TITLES = {
    "generator_loss": "generator loss (MLM)",
    "discriminator_loss": "discriminator loss (RTD)",
    "discriminator_auc": "discriminator AUC",
    "learning_rate": "learning rate",
}
EVENT_PREFIX = "events.out.tfevents."


class Series(NamedTuple):
    steps: np.ndarray  # [S] int64, increasing
    values: np.ndarray  # [S] float64

    @property
    def last(self) -> float:
        return float(self.values[-1])


def event_files(log_dir: str) -> list[str]:
    """Every TensorBoard event file under `log_dir` (recursive: train/ and eval/ writers)."""
    if not os.path.isdir(log_dir):
        raise UserError(f"run directory not found: {log_dir}")
    found = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(log_dir)
        for name in names
        if name.startswith(EVENT_PREFIX)
    )
    if not found:
        raise UserError(f"no TensorBoard event files ({EVENT_PREFIX}*) under {log_dir}")
    return found


def read_scalars(paths: Sequence[str]) -> dict[str, Series]:
    """Every scalar tag in the event files. A step written twice (a resumed run) keeps the
    value written last, so a restart's repeated steps do not zig-zag the curve."""
    from foundation.quiet_tf import tf

    by_tag: dict[str, dict[int, float]] = {}
    for path in paths:  # sorted by name = by creation time
        try:
            for raw in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(raw.numpy())
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        number = float(value.simple_value)
                    elif value.HasField("tensor") and not value.tensor.tensor_shape.dim:
                        number = float(tf.make_ndarray(value.tensor))
                    else:
                        continue  # histograms, images, non-scalar tensors
                    by_tag.setdefault(value.tag, {})[int(event.step)] = number
        except tf.errors.DataLossError as exc:
            raise UserError(f"corrupt event file {path}: {exc.message.splitlines()[0]}") from exc
    return {
        tag: Series(np.array(sorted(points), dtype=np.int64), np.array([points[s] for s in sorted(points)]))
        for tag, points in by_tag.items()
    }


def read_curves(log_dir: str, tags: Mapping[str, str] = DEFAULT_TAGS) -> dict[str, Series]:
    """The panels' series (panel name -> Series) found under `log_dir`; absent tags are left out."""
    scalars = read_scalars(event_files(log_dir))
    curves = {panel: scalars[tag] for panel, tag in tags.items() if tag in scalars}
    if not curves:
        raise UserError(
            f"none of the tags {', '.join(tags.values())} in the event files under {log_dir} "
            f"(found: {', '.join(sorted(scalars)) or 'no scalars'})"
        )
    return curves


def plot_curves(curves: Mapping[str, Series], png_path: str, title: str = "") -> None:
    """One PNG, a 2x2 grid: losses on top, AUC and learning rate below (missing ones say so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, panel in zip(axes.flat, _TITLES):
        ax.set_title(_TITLES[panel])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        series = curves.get(panel)
        if series is None:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
            continue
        ax.plot(series.steps, series.values, marker="." if len(series.steps) < 30 else None)
        if panel == "discriminator_auc":
            ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
            ax.legend(loc="lower right")
        if panel == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    with fileio.atomic_write(png_path) as fh:
        fh.write(buffer.getvalue())


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = console.parser(prog="python -m workflow.curves", description="Plot a run's learning curves.")
    p.add_argument("log_dir", help="the run's model directory (holds the TensorBoard event files)")
    p.add_argument("--output", default="curves.png", help="PNG to write")
    p.add_argument("--title", default="", help="the plot's title")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    curves = read_curves(args.log_dir)
    plot_curves(curves, args.output, args.title)
    finals = ", ".join(f"{panel} {series.last:.4g} @ {series.steps[-1]}" for panel, series in curves.items())
    print(f"curves: {args.output} ({finals})")
    return 0


if __name__ == "__main__":
    run_cli(main)
