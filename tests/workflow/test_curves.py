"""Learning curves from real TensorBoard event files written here with `tf.summary`."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from foundation.errors import UserError
from workflow import curves


def _write(log_dir, points: dict[str, list[tuple[int, float]]]) -> None:
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for tag, values in points.items():
            for step, value in values:
                tf.summary.scalar(tag, value, step=step)
        tf.summary.histogram("weights", tf.constant([1.0, 2.0, 3.0]), step=0)  # not a scalar: ignored
    writer.close()


def test_reads_series_from_event_files_and_plots_png(tmp_path):
    tags = curves.DEFAULT_TAGS
    _write(tmp_path / "train", {
        tags["generator_loss"]: [(10, 9.5), (20, 8.0), (30, 7.25)],
        tags["discriminator_loss"]: [(10, 0.6), (20, 0.5), (30, 0.45)],
        tags["learning_rate"]: [(10, 1e-4), (20, 2e-4), (30, 1.5e-4)],
    })
    # a resumed run rewrites step 30 and goes on; the later file wins for the repeated step
    _write(tmp_path / "train", {tags["generator_loss"]: [(30, 7.0), (40, 6.5)]})
    _write(tmp_path / "eval", {tags["discriminator_auc"]: [(20, 0.61), (40, 0.74)]})

    series = curves.read_curves(str(tmp_path))
    assert series["generator_loss"].steps.tolist() == [10, 20, 30, 40]
    np.testing.assert_allclose(series["generator_loss"].values, [9.5, 8.0, 7.0, 6.5])
    np.testing.assert_allclose(series["discriminator_loss"].values, [0.6, 0.5, 0.45], rtol=1e-6)
    assert series["discriminator_auc"].steps.tolist() == [20, 40]
    assert series["discriminator_auc"].last == pytest.approx(0.74)
    np.testing.assert_allclose(series["learning_rate"].values, [1e-4, 2e-4, 1.5e-4], rtol=1e-6)

    png = tmp_path / "out" / "curves.png"
    curves.plot_curves(series, str(png), title="tiny run")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < len(data) < 1_000_000
    import matplotlib.image

    assert matplotlib.image.imread(str(png)).shape[:2] == (700, 1000)
    assert [p.name for p in png.parent.iterdir()] == ["curves.png"]  # no temp file left


def test_custom_tag_mapping_and_missing_panels(tmp_path):
    _write(tmp_path, {"disc_loss": [(1, 0.7), (2, 0.4)], "other": [(1, 3.0)]})
    series = curves.read_curves(str(tmp_path), {"discriminator_loss": "disc_loss", "generator_loss": "gen_loss"})
    assert list(series) == ["discriminator_loss"]
    png = tmp_path / "c.png"
    curves.plot_curves(series, str(png))  # the three missing panels say "not logged"
    assert png.stat().st_size > 10_000


def test_errors_name_the_directory_and_found_tags(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        curves.read_curves(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no TensorBoard event files"):
        curves.read_curves(str(tmp_path))
    _write(tmp_path, {"something/else": [(1, 1.0)]})
    with pytest.raises(UserError, match=r"found: something/else"):
        curves.read_curves(str(tmp_path))
    bad = tmp_path / "bad" / (curves.EVENT_PREFIX + "broken")
    bad.parent.mkdir()
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage, not a TFRecord")
    with pytest.raises(UserError, match=f"corrupt event file {bad}"):
        curves.read_curves(str(bad.parent))


def test_cli_writes_png_and_prints_final_values(tmp_path, capsys):
    _write(tmp_path / "run", {curves.DEFAULT_TAGS["discriminator_loss"]: [(5, 0.5), (9, 0.25)]})
    out = tmp_path / "curves.png"
    assert curves.main([str(tmp_path / "run"), "--output", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert "discriminator_loss 0.25 @ 9" in capsys.readouterr().out
