"""Export to Hugging Face and import back: exact logits both ways, on real NSMC text.

A tiny RTD model (configs/tiny.json, the bundled KoELECTRA vocab) gets random weights in
every tensor (LayerNorm and biases included, so a mis-mapped or untransposed weight cannot
hide), is exported, loaded with `transformers` (PyTorch) and compared with the TF model;
the export is then imported into a fresh model and compared again. The same for an
original-layout TF1 checkpoint written here with `tf.compat.v1` savers.
"""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import torch
from transformers import (AutoTokenizer, ElectraForMaskedLM, ElectraForPreTraining,
                          ElectraForSequenceClassification)

from data_prep import tokenization, vocab_files
from foundation.errors import UserError
from pretrain import config as pconfig
from pretrain.model import encoder, rtd
from pretrain.conversion import export, hf_format, importing
from rtd_helpers import write_tf1_checkpoint

TOL = 1e-4
CFG = pconfig.from_hparams(pconfig.config_path("tiny"))


def perturbed_model(seed: int, cfg=CFG) -> rtd.RtdModel:
    """A model whose every weight is random (gamma around 1), seeded."""
    model = rtd.build_model(cfg, rtd.SpecialIds(pad=0, cls=2, sep=3, mask=4))
    rng = np.random.default_rng(seed)
    for v in model.weights:
        noise = rng.normal(0.0, 0.1, v.shape).astype(np.float32)
        v.assign(noise + (1.0 if "gamma" in v.path else 0.0))
    return model


@pytest.fixture(scope="module")
def tokens(koelectra_vocab):
    return vocab_files.load_vocab(str(koelectra_vocab))


@pytest.fixture(scope="module")
def lines(corpus_path):
    text = corpus_path.read_bytes().decode("utf-8")
    return [line for line in text.split("\n") if line.strip()]


@pytest.fixture(scope="module")
def batch(koelectra_vocab, lines):
    """Six real sentence pairs as the pipeline tokenises them: [CLS] A [SEP] B [SEP] + padding to 64."""
    tok = tokenization.load_tokenizer(str(koelectra_vocab), vocab_files.VocabSettings())
    ids = tok.encode_batch(lines[100:112])
    L = CFG.max_seq_length
    input_ids = np.zeros((6, L), np.int32)
    input_mask = np.zeros((6, L), np.int32)
    segment_ids = np.zeros((6, L), np.int32)
    for row in range(6):
        a, b = ids[2 * row][:20], ids[2 * row + 1][: 5 + 7 * row]  # different lengths: padding differs
        seq = [tok.cls_id, *a, tok.sep_id, *b, tok.sep_id]
        input_ids[row, : len(seq)] = seq
        input_mask[row, : len(seq)] = 1
        segment_ids[row, len(a) + 2: len(seq)] = 1
    assert input_mask.sum(1).min() < L  # some padding in every row
    return input_ids, input_mask, segment_ids


@pytest.fixture(scope="module")
def source_model():
    return perturbed_model(seed=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, source_model, tokens):
    out = str(tmp_path_factory.mktemp("export") / "hf")
    export.write_export(source_model, CFG, 123, tokens, vocab_files.VocabSettings(), out)
    return out


def hf_logits(model, batch) -> np.ndarray:
    input_ids, input_mask, segment_ids = (torch.from_numpy(a.astype(np.int64)) for a in batch)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=input_mask, token_type_ids=segment_ids).logits.numpy()


def assert_close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.abs(a).max() > 0.1  # not trivially zero
    np.testing.assert_allclose(a, b, atol=TOL, rtol=0)


def test_layer_norm_and_activation_match_the_model():
    assert hf_format.LAYER_NORM_EPS == encoder.LAYER_NORM_EPS
    assert hf_format.HIDDEN_ACT == "gelu"  # encoder.gelu is exact erf GELU


def test_export_folders_hold_the_files_and_configs(exported):
    for part in hf_format.PARTS:
        files = sorted(os.listdir(os.path.join(exported, part)))
        assert files == ["README.md", "config.json", "model.safetensors", "special_tokens_map.json",
                         "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
        config = json.load(open(os.path.join(exported, part, "config.json")))
        dims = CFG.discriminator_dims() if part == "discriminator" else CFG.generator_dims()
        assert config["hidden_size"] == dims.hidden_size and config["embedding_size"] == 32
        card = open(os.path.join(exported, part, "README.md")).read()
        assert "123 of 300" in card and f"{dims.num_hidden_layers} / {dims.hidden_size}" in card
    tok_config = json.load(open(os.path.join(exported, "discriminator", "tokenizer_config.json")))
    assert (tok_config["do_lower_case"], tok_config["strip_accents"], tok_config["model_max_length"]) == (False, False, 64)
    assert not [p for p in os.listdir(os.path.dirname(exported)) if p != "hf"]  # no staging leftovers


def test_discriminator_loads_without_missing_weights_and_gives_the_same_logits(exported, source_model, batch):
    model, info = ElectraForPreTraining.from_pretrained(os.path.join(exported, "discriminator"),
                                                        output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (set(), set(), set())
    ours = source_model.discriminator_logits(*batch).numpy()  # [B, L]
    assert_close(hf_logits(model.eval(), batch), ours)


def test_generator_loads_without_missing_weights_and_gives_the_same_mlm_logits(exported, source_model, batch):
    model, info = ElectraForMaskedLM.from_pretrained(os.path.join(exported, "generator"), output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (set(), set(), set())
    assert model.config.hidden_size == 32 and model.config.num_attention_heads == 1  # the generator's own sizes
    ours = source_model.generator_logits(*batch).numpy()  # [B, L, V]
    assert ours.shape == (6, 64, 32200)
    assert_close(hf_logits(model.eval(), batch), ours)


def test_discriminator_loads_for_sequence_classification(exported):
    model, info = ElectraForSequenceClassification.from_pretrained(
        os.path.join(exported, "discriminator"), num_labels=2, output_loading_info=True)
    assert info["missing_keys"] == {"classifier.dense.weight", "classifier.dense.bias",
                                    "classifier.out_proj.weight", "classifier.out_proj.bias"}
    assert {k.rsplit(".", 2)[0] for k in info["unexpected_keys"]} == {"discriminator_predictions"}
    assert not info["mismatched_keys"]


def test_exported_tokenizer_gives_the_pipeline_ids_on_real_text(exported, koelectra_vocab, lines):
    auto = AutoTokenizer.from_pretrained(os.path.join(exported, "discriminator"))
    sample = lines[:1500] + ["한국어 " * 3, "\u1112\u1161\u11ab\u1100\u1173\u11af 분해된 한글"]  # NFD Hangul too
    pipeline = tokenization.load_tokenizer(str(koelectra_vocab), vocab_files.VocabSettings())
    want = [[pipeline.cls_id, *ids, pipeline.sep_id] for ids in pipeline.encode_batch(sample)]
    assert auto(sample)["input_ids"] == want
    assert (auto.pad_token_id, auto.cls_token_id, auto.sep_token_id, auto.mask_token_id) == (0, 2, 3, 4)
    pair = auto("영화 좋다", "별로")
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("settings", [vocab_files.VocabSettings(do_lower_case=True, max_input_chars_per_word=200)])
def test_tokenizer_files_keep_the_vocab_settings(tmp_path, tokens, lines, settings):
    for name, text in export.tokenizer_files(tokens, settings, 128).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    long_word = "가" * 150  # [UNK] at 100 chars, split into pieces at 200
    sample = lines[:300] + ["Hello WORLD 영화", long_word]
    pipeline = vocab_files.make_hf_tokenizer(tokens, settings)
    assert auto(sample)["input_ids"] == [e.ids for e in pipeline.encode_batch(sample)]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["do_lower_case"] is True


def test_import_of_the_export_is_exact(exported, source_model, batch):
    fresh = perturbed_model(seed=2)
    description = importing.init_from_external(fresh, exported)
    assert "discriminator: " in description and "generator: " in description
    for get in ("discriminator_weights", "generator_weights"):
        src, dst = getattr(source_model, get)(), getattr(fresh, get)()
        for name in src:
            np.testing.assert_array_equal(dst[name].numpy(), src[name].numpy(), err_msg=name)
    disc = ElectraForPreTraining.from_pretrained(os.path.join(exported, "discriminator")).eval()
    gen = ElectraForMaskedLM.from_pretrained(os.path.join(exported, "generator")).eval()
    assert_close(fresh.discriminator_logits(*batch).numpy(), hf_logits(disc, batch))
    assert_close(fresh.generator_logits(*batch).numpy(), hf_logits(gen, batch))


def test_import_of_a_discriminator_folder_alone(exported, source_model):
    fresh = perturbed_model(seed=3)
    generator_query = fresh.generator_weights()["electra.encoder.layer.0.attention.self.query.weight"].numpy()
    description = importing.init_from_external(fresh, os.path.join(exported, "discriminator"))
    assert description.startswith("Hugging Face ELECTRA: discriminator: ") and "generator" not in description
    np.testing.assert_array_equal(
        fresh.discriminator_weights()["discriminator_predictions.dense.weight"].numpy(),
        source_model.discriminator_weights()["discriminator_predictions.dense.weight"].numpy())
    np.testing.assert_array_equal(  # the generator's own encoder is untouched
        fresh.generator_weights()["electra.encoder.layer.0.attention.self.query.weight"].numpy(), generator_query)


def test_import_of_a_pytorch_bin_electra_model_without_heads(tmp_path, exported, source_model):
    """Older hub folders: `pytorch_model.bin` of a bare `ElectraModel` (no `electra.` prefix, no heads)."""
    hf = ElectraForPreTraining.from_pretrained(os.path.join(exported, "discriminator"))
    torch.save(hf.electra.state_dict(), tmp_path / "pytorch_model.bin")
    config = json.load(open(os.path.join(exported, "discriminator", "config.json")))
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["ElectraModel"]}))
    fresh = perturbed_model(seed=8)
    head_before = fresh.discriminator_weights()["discriminator_predictions.dense.weight"].numpy()
    description = importing.init_from_external(fresh, str(tmp_path))
    assert "4 head weights absent, kept initial" in description
    src, dst = source_model.discriminator_weights(), fresh.discriminator_weights()
    for name in src:
        if not name.startswith("discriminator_predictions."):
            np.testing.assert_array_equal(dst[name].numpy(), src[name].numpy(), err_msg=name)
    np.testing.assert_array_equal(dst["discriminator_predictions.dense.weight"].numpy(), head_before)


def test_import_of_an_original_tf1_checkpoint(tmp_path, source_model, batch):
    write_tf1_checkpoint(source_model, str(tmp_path / "model.ckpt"))
    stored = dict(tf.train.list_variables(str(tmp_path)))
    assert stored["electra/encoder/layer_0/attention/self/query/kernel"] == [64, 64]
    assert stored["generator/encoder/layer_1/output/dense/kernel"] == [128, 32]
    assert stored["generator_predictions/output_bias"] == [32200]
    assert stored["discriminator_predictions/dense_1/kernel"] == [64, 1]
    fresh = perturbed_model(seed=4)
    description = importing.init_from_external(fresh, str(tmp_path))  # the directory: latest checkpoint
    assert "model.ckpt-1000" in description and "generator: " in description
    assert_close(fresh.discriminator_logits(*batch).numpy(), source_model.discriminator_logits(*batch).numpy())
    assert_close(fresh.generator_logits(*batch).numpy(), source_model.generator_logits(*batch).numpy())


def test_import_of_a_discriminator_only_tf1_checkpoint(tmp_path, source_model, batch):
    write_tf1_checkpoint(source_model, str(tmp_path / "model.ckpt"), generator=False)
    fresh = perturbed_model(seed=5)
    description = importing.init_from_external(fresh, str(tmp_path / "model.ckpt-1000"))
    assert "no generator in the checkpoint" in description
    assert_close(fresh.discriminator_logits(*batch).numpy(), source_model.discriminator_logits(*batch).numpy())


def test_import_for_the_two_stage_start_refuses_a_source_without_generator(tmp_path, exported, source_model):
    """--init-discriminator-from-generator copies the loaded generator: a discriminator-only source is refused
    before anything is assigned (else the copy would be of the fresh generator)."""
    write_tf1_checkpoint(source_model, str(tmp_path / "model.ckpt"), generator=False)
    fresh = perturbed_model(seed=9)
    before = fresh.discriminator_weights()["electra.embeddings.word_embeddings.weight"].numpy()
    for path, named in ((os.path.join(exported, "discriminator"), os.path.join(exported, "discriminator")),
                        (str(tmp_path), str(tmp_path / "model.ckpt-1000"))):
        with pytest.raises(UserError, match=f"--init-checkpoint {named} holds no generator, which "
                                            "--init-discriminator-from-generator copies"):
            importing.init_from_external(fresh, path, need_generator=True)
    np.testing.assert_array_equal(fresh.discriminator_weights()["electra.embeddings.word_embeddings.weight"], before)
    assert "generator: " in importing.init_from_external(fresh, exported, need_generator=True)


def test_import_refuses_a_wrong_shape_and_assigns_nothing(tmp_path, source_model):
    name = "electra/encoder/layer_1/intermediate/dense/kernel"
    write_tf1_checkpoint(source_model, str(tmp_path / "model.ckpt"), reshape=name)
    fresh = perturbed_model(seed=6)
    before = fresh.discriminator_weights()["electra.embeddings.word_embeddings.weight"].numpy()
    with pytest.raises(UserError, match=r"discriminator weight electra.encoder.layer.1.intermediate.dense.weight "
                                        r"has shape \(3, 3\), the model needs \(64, 128\)"):
        importing.init_from_external(fresh, str(tmp_path))
    np.testing.assert_array_equal(fresh.discriminator_weights()["electra.embeddings.word_embeddings.weight"], before)


def test_import_refuses_a_hf_config_of_other_sizes(exported):
    other = pconfig.from_hparams({**dataclasses.asdict(CFG), "num_hidden_layers": 3})
    with pytest.raises(UserError, match=r"generator/config.json: num_hidden_layers is 2 but the model being "
                                        r"trained has 3"):
        importing.init_from_external(rtd.build_model(other, rtd.SpecialIds(0, 2, 3, 4)), exported)


def test_import_refuses_other_paths(tmp_path):
    model = perturbed_model(seed=7)
    with pytest.raises(UserError, match="not found"):
        importing.init_from_external(model, str(tmp_path / "nope"))
    with pytest.raises(UserError, match="neither a Hugging Face ELECTRA folder"):
        importing.init_from_external(model, str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="config.json: vocab_size is None but the model being trained has 32200"):
        importing.init_from_external(model, str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(hf_format.hf_config(CFG.discriminator_dims(), "discriminator")))
    with pytest.raises(UserError, match="no model.safetensors or pytorch_model.bin"):
        importing.init_from_external(model, str(tmp_path))


def test_export_refuses_an_existing_folder_unless_overwrite(tmp_path, source_model, tokens):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match=r"output folder .*hf exists; pass --overwrite"):
        export.write_export(source_model, CFG, 1, tokens, vocab_files.VocabSettings(), str(out))
    assert os.listdir(out) == ["keep.txt"]
    export.write_export(source_model, CFG, 1, tokens, vocab_files.VocabSettings(), str(out), overwrite=True)
    assert sorted(os.listdir(out)) == ["discriminator", "generator"]
    assert sorted(os.listdir(tmp_path)) == ["hf"]


def test_vocab_size_mismatch_is_one_clear_error(tokens):
    with pytest.raises(UserError, match=r"v.txt has 32,199 tokens but the model's vocab_size is 32,200"):
        export.check_vocab(tokens[:-1], CFG, "v.txt")


# ------------------------------------------------ a run trained here, exported by the command

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny model trained 4 steps on real NSMC records by the project's trainer (checkpoints at 2 and 4)."""
    import rtd_helpers
    from pretrain.training import trainer as training

    root = tmp_path_factory.mktemp("run")
    record_dir = rtd_helpers.write_nsmc_records(root, num_examples=32, num_shards=1)
    cfg = rtd_helpers.tiny_config(num_train_steps=4, save_checkpoints_steps=2, train_batch_size=8, eval_batch_size=8,
                                  iterations_per_loop=2, num_warmup_steps=1)
    model_dir = str(root / "model")
    training.train(training.check_inputs(cfg, record_dir, str(root / "vocab.txt")), model_dir)
    return model_dir


def run_export(args: list[str], capsys) -> tuple[int, str, str]:
    """The command in-process, through the same `run_cli` wrapper the console script uses."""
    from foundation.errors import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: export.main(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_trained_run_round_trip_through_the_command(trained_run, tmp_path, batch, capsys):
    from pretrain.training import checkpoints

    out = str(tmp_path / "hf")
    code, stdout, _ = run_export(["--model-dir", trained_run, "--output-dir", out], capsys)
    assert code == 0 and stdout.startswith(f"exported step 4 of {trained_run} to {out}")
    ours, cfg, step = checkpoints.restore_model(trained_run)
    assert step == 4
    disc, info = ElectraForPreTraining.from_pretrained(os.path.join(out, "discriminator"), output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    gen, info = ElectraForMaskedLM.from_pretrained(os.path.join(out, "generator"), output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    assert_close(hf_logits(disc.eval(), batch), ours.discriminator_logits(*batch).numpy())
    assert_close(hf_logits(gen.eval(), batch), ours.generator_logits(*batch).numpy())
    card = open(os.path.join(out, "discriminator", "README.md")).read()
    assert "| training step | 4 of 4 |" in card and "32 sequences" in card
    # and back: continue pretraining from the export
    fresh = rtd.build_model(cfg, rtd.SpecialIds(pad=0, cls=2, sep=3, mask=4))
    importing.init_from_external(fresh, out)
    assert_close(fresh.discriminator_logits(*batch).numpy(), hf_logits(disc.eval(), batch))
    assert_close(fresh.generator_logits(*batch).numpy(), hf_logits(gen.eval(), batch))


def test_command_exports_a_chosen_step(trained_run, tmp_path, capsys):
    out = str(tmp_path / "hf2")
    code, stdout, _ = run_export(["--model-dir", trained_run, "--output-dir", out, "--step", "2"], capsys)
    assert code == 0 and "exported step 2 " in stdout
    assert "| training step | 2 of 4 |" in open(os.path.join(out, "generator", "README.md")).read()


def test_command_bad_inputs_are_one_line_and_write_nothing(trained_run, tmp_path, capsys):
    import shutil

    out = str(tmp_path / "hf")
    cases = []
    code, _, err = run_export(["--model-dir", trained_run, "--output-dir", out, "--step", "3"], capsys)
    cases.append((code, err, f"error: no checkpoint for step 3 in {trained_run}\n"))
    empty = tmp_path / "empty_run"
    empty.mkdir()
    for name in ("run_config.json", "vocab.txt", "vocab_settings.json"):
        shutil.copy(os.path.join(trained_run, name), empty / name)
    code, _, err = run_export(["--model-dir", str(empty), "--output-dir", out], capsys)
    cases.append((code, err, f"error: no checkpoint in {empty}\n"))
    short_vocab = tmp_path / "short_vocab_run"
    shutil.copytree(trained_run, short_vocab)
    tokens = vocab_files.load_vocab(str(short_vocab / "vocab.txt"))
    (short_vocab / "vocab.txt").write_text("\n".join(tokens[:-1]) + "\n", encoding="utf-8")
    code, _, err = run_export(["--model-dir", str(short_vocab), "--output-dir", out], capsys)
    cases.append((code, err, f"error: {short_vocab}/vocab.txt has 32,199 tokens but the model's vocab_size is 32,200\n"))
    for code, err, want in cases:
        assert (code, err) == (2, want)
    assert sorted(os.listdir(tmp_path)) == ["empty_run", "short_vocab_run"]  # no output, no staging folder
    os.makedirs(out)
    code, _, err = run_export(["--model-dir", trained_run, "--output-dir", out], capsys)
    assert (code, err) == (2, f"error: output folder {out} exists; pass --overwrite to replace it\n")
    assert os.listdir(out) == []


def test_console_script_reports_a_missing_model_dir(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "electra-export")
    result = subprocess.run([script, "--model-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (2, f"error: model dir not found: {tmp_path / 'nope'}\n")


def test_trainer_init_checkpoint_reaches_the_importer(tmp_path, exported, source_model, tokens, batch):
    """`run_pretraining.py --init-checkpoint` with an export folder and with a TF1 checkpoint."""
    from pretrain.training import trainer as training

    write_tf1_checkpoint(source_model, str(tmp_path / "model.ckpt"))
    for path in (exported, str(tmp_path)):
        trainer = training.Trainer(CFG, tf.distribute.get_strategy(), tokens, "float32")
        description = training.init_weights(trainer, path)
        assert description.startswith(("Hugging Face ELECTRA: ", "original ELECTRA TF1 checkpoint "))
        assert_close(trainer.model.discriminator_logits(*batch).numpy(),
                     source_model.discriminator_logits(*batch).numpy())
        assert_close(trainer.model.generator_logits(*batch).numpy(), source_model.generator_logits(*batch).numpy())


def test_model_card_warns_when_the_vocab_split_morphemes_first():
    card = export.model_card("generator", CFG, 7, {"training data": "1 sequence"},
                             vocab_files.VocabSettings(pretokenizer="mecab"))
    assert "| training step | 7 of 300 |" in card and "| training data | 1 sequence |" in card
    assert "split into morphemes (mecab) before WordPiece" in card and "ElectraForMaskedLM.from_pretrained" in card
