"""The end-to-end demo: every stage's real function on a slice of the bundled corpus, then reruns."""
from __future__ import annotations

import json
import os

import pytest

from foundation.errors import UserError
from workflow import pipeline
from workflow import stages as stage_runner

# A few steps of the tiny preset: enough for a real checkpoint, export and curves.
QUICK_HPARAMS = json.dumps({"train_batch_size": 8, "num_train_steps": 6, "num_warmup_steps": 2,
                            "iterations_per_loop": 3, "save_checkpoints_steps": 3, "log_every_steps": 1})


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory, corpus_path):
    """The first 40 movies of the bundled corpus (about 2,500 review lines)."""
    lines = corpus_path.read_bytes().split(b"\n")
    breaks = [i for i, line in enumerate(lines) if not line.strip()]
    path = tmp_path_factory.mktemp("corpus") / "reviews.txt"
    path.write_bytes(b"\n".join(lines[: breaks[39]]) + b"\n")
    return str(path)


# ---- the marker logic, with small real stages that write files ----------------------------


def _stages(tmp_path, calls: list[str], settings: dict[str, int]) -> list[stage_runner.Stage]:
    def make(name: str, upstream: str | None):
        out = tmp_path / f"{name}.txt"

        def run():
            calls.append(name)
            text = (tmp_path / f"{upstream}.txt").read_text() if upstream else ""
            out.write_text(text + f"{name}{settings[name]};")
            return {"chars": len(out.read_text())}

        return stage_runner.Stage(name, str(out), lambda: {"setting": settings[name]}, run, lambda f: f"{f['chars']}")

    return [make("a", None), make("b", "a"), make("c", "b")]


def test_finished_stages_are_skipped_and_changes_redo_the_rest(tmp_path, capsys):
    calls: list[str] = []
    settings = {"a": 1, "b": 1, "c": 1}
    stages_dir = str(tmp_path / "stages")
    figures = stage_runner.run_stages(_stages(tmp_path, calls, settings), stages_dir, False, {})
    assert calls == ["a", "b", "c"] and figures["c"]["chars"] == len("a1;b1;c1;")

    calls.clear()
    assert stage_runner.run_stages(_stages(tmp_path, calls, settings), stages_dir, False, {}) == figures
    assert calls == []
    assert "[2/3] b: done already, skipped: 6" in capsys.readouterr().err

    settings["b"] = 2  # a changed setting redoes its stage and everything after it
    stage_runner.run_stages(_stages(tmp_path, calls, settings), stages_dir, False, {})
    assert calls == ["b", "c"] and (tmp_path / "c.txt").read_text() == "a1;b2;c1;"

    calls.clear()
    (tmp_path / "c.txt").unlink()  # a missing output is redone
    stage_runner.run_stages(_stages(tmp_path, calls, settings), stages_dir, False, {})
    assert calls == ["c"]

    calls.clear()
    stage_runner.run_stages(_stages(tmp_path, calls, settings), stages_dir, True, {})
    assert calls == ["a", "b", "c"]


def test_an_interrupted_stage_is_resumed_without_removing_its_output(tmp_path):
    calls: list[str] = []
    settings = {"a": 1, "b": 1, "c": 1}
    stages = _stages(tmp_path, calls, settings)
    stages_dir = str(tmp_path / "stages")

    def interrupted():
        (tmp_path / "b.txt").write_text("partial;")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stage_runner.run_stages([stages[0], stages[1]._replace(run=interrupted)], stages_dir, False, {})
    marker = json.loads((tmp_path / "stages" / "b.json").read_text())
    assert marker == {"params": {"setting": 1}, "complete": False}

    seen = []
    resumed = stages[1]._replace(run=lambda: seen.append((tmp_path / "b.txt").read_text()) or {"chars": 0})
    stage_runner.run_stages([stages[0], resumed, stages[2]], stages_dir, False, {})
    assert seen == ["partial;"]  # same settings: the stage found its partial output to resume from
    assert calls == ["a", "c"]


def test_config_is_validated(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        pipeline.DemoConfig(preset="huge")
    with pytest.raises(UserError, match="--train-steps must be >= 1"):
        pipeline.DemoConfig(train_steps=0)
    with pytest.raises(UserError, match="local folder"):
        pipeline.DemoConfig(out_dir="gs://bucket/run")


def test_pretrain_config_takes_preset_overrides_and_vocab_size():
    cfg = pipeline.pretrain_config(pipeline.DemoConfig(train_steps=40, hparams='{"learning_rate": 0.0005}'), 12345)
    assert (cfg.vocab_size, cfg.num_train_steps, cfg.num_warmup_steps, cfg.learning_rate) == (12345, 40, 4, 5e-4)
    demo = pipeline.pretrain_config(pipeline.DemoConfig(), 100)
    assert demo.use_tpu is False and demo.max_seq_length <= demo.max_position_embeddings
    with pytest.raises(UserError, match="unknown hparam 'learning_rat'"):
        pipeline.pretrain_config(pipeline.DemoConfig(hparams='{"learning_rat": 1}'), 100)


# ---- end to end -------------------------------------------------------------------------------


def _run(out_dir, corpus, *extra: str) -> tuple[int, dict]:
    code = pipeline.main(["--out-dir", str(out_dir), "--corpus", corpus, "--preset", "tiny", "--vocab-size", "2000",
                          "--hparams", QUICK_HPARAMS, *extra])
    return code, json.loads((out_dir / "summary.json").read_text())


def test_demo_end_to_end_then_rerun_skips(tmp_path, corpus_slice, capsys):
    """Every stage for real (probe off: tests/workflow/test_probe.py covers it), then a rerun does nothing."""
    out = tmp_path / "demo"
    code, summary = _run(out, corpus_slice, "--no-probe")
    assert code == 0
    stages = summary["stages"]
    assert list(stages) == ["clean", "vocab", "records", "pretrain", "export", "curves"]
    clean = stages["clean"]
    assert 1500 < clean["lines_kept"] < clean["lines_in"] and 35 <= clean["documents"] <= 40
    assert stages["vocab"]["vocab_size"] > 30_000  # merged with the bundled KoELECTRA vocab
    vocab_lines = (out / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == stages["vocab"]["vocab_size"]
    assert stages["records"]["examples"] > 100 and stages["records"]["max_seq_length"] == 64
    pretrain = stages["pretrain"]
    assert pretrain["steps"] == 6 and 0 < pretrain["discriminator_loss"] < 1 and pretrain["generator_loss"] > 1
    assert 0 <= pretrain["discriminator_auc"] <= 1
    assert stages["curves"]["points"]["discriminator_loss"] >= 2 and (out / "curves.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert f"Hugging Face model: {out / 'hf' / 'discriminator'}" in printed

    transformers = pytest.importorskip("transformers")
    model, info = transformers.ElectraForPreTraining.from_pretrained(str(out / "hf" / "discriminator"),
                                                                     output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.vocab_size == stages["vocab"]["vocab_size"]
    transformers.ElectraForMaskedLM.from_pretrained(str(out / "hf" / "generator"))

    mtimes = {p: os.stat(p).st_mtime_ns for p in (out / "hf" / "discriminator" / "model.safetensors",
                                                   out / "vocab" / "vocab.txt")}
    code, again = _run(out, corpus_slice, "--no-probe")
    assert code == 0 and again["stages"] == stages
    assert capsys.readouterr().err.count("done already, skipped") == 6
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes


@pytest.mark.slow
def test_demo_with_probe_and_more_steps(tmp_path, corpus_slice):
    out = tmp_path / "demo"
    code, summary = _run(out, corpus_slice, "--train-steps", "30", "--probe-train-rows", "400", "--probe-epochs", "1")
    assert code == 0
    probe = summary["stages"]["probe"]
    assert probe["train_rows"] == 400 and probe["test_rows"] == 10000
    assert summary["pretrained_accuracy"] == probe["pretrained_accuracy"]
    assert 0.3 < summary["random_init_accuracy"] < 0.8
    assert json.loads((out / "probe.json").read_text()) == probe


def test_vocab_defaults_depend_on_the_preset():
    assert (pipeline.DemoConfig().vocab_size, pipeline.DemoConfig().merge_vocab) == pipeline.DEMO_VOCAB
    assert (pipeline.DemoConfig(preset="small").vocab_size, pipeline.DemoConfig(preset="small").merge_vocab) == \
        (30_000, True)
    given = pipeline.DemoConfig(vocab_size=5000, merge_vocab=True)
    assert (given.vocab_size, given.merge_vocab) == (5000, True)


def test_a_missing_corpus_leaves_no_output_folder(tmp_path):
    out = tmp_path / "runs" / "x"
    with pytest.raises(UserError, match="input not found: .*nonexistent"):
        pipeline.run_demo(pipeline.DemoConfig(out_dir=str(out), corpus=(str(tmp_path / "nonexistent"),)))
    assert not (tmp_path / "runs").exists()  # no empty runs/x/stages/ to puzzle over
