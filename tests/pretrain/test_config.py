"""PretrainConfig: original keys and meaning, presets, derived values, one-line errors."""
import json

import pytest

from foundation.errors import UserError
from pretrain.config import config_path, from_hparams, max_predictions_per_seq


def test_defaults_are_the_originals_small_model():
    cfg = from_hparams(None)
    assert (cfg.model_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == ("small", 256, 12, 4)
    assert (cfg.embedding_size, cfg.intermediate_size, cfg.learning_rate) == (128, 1024, 5e-4)
    assert (cfg.disc_weight, cfg.gen_weight, cfg.mask_prob, cfg.weight_decay_rate) == (50.0, 1.0, 0.15, 0.01)
    assert cfg.masking_with_replacement is False
    assert cfg.max_predictions_per_seq == 19  # int((0.15 + 0.005) * 128) as the original


def test_base_preset_resolves_sizes_and_generator_like_the_original():
    cfg = from_hparams('{"model_size": "base"}')
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.embedding_size) == (768, 12, 3072, 768)
    assert (cfg.max_seq_length, cfg.train_batch_size, cfg.learning_rate) == (512, 256, 2e-4)
    gen = cfg.generator_dims()  # get_generator_config: round(768 * 0.33333) = 256, 4 heads, FFN 1024
    assert (gen.hidden_size, gen.num_attention_heads, gen.intermediate_size, gen.num_hidden_layers) == (256, 4, 1024, 12)
    assert cfg.max_predictions_per_seq == 79


def test_large_preset_masks_a_quarter():
    cfg = from_hparams({"model_size": "large"})
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.mask_prob) == (1024, 24, 16, 0.25)
    assert cfg.max_predictions_per_seq == max_predictions_per_seq(0.25, 512) == 130


def test_user_values_win_over_the_preset_and_heads_follow_hidden():
    cfg = from_hparams({"model_size": "base", "learning_rate": 1e-4, "hidden_size": 512})
    assert (cfg.learning_rate, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (1e-4, 512, 8, 2048)


def test_model_hparam_overrides_as_the_original(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"model_hparam_overrides": {"num_hidden_layers": 3}, "_comment": "provenance"}))
    assert from_hparams(str(path)).num_hidden_layers == 3
    with pytest.raises(UserError, match="model_hparam_overrides.hidden_act"):
        from_hparams({"model_hparam_overrides": {"hidden_act": "relu"}})


def test_source_overrides_base_file():
    cfg = from_hparams({"num_train_steps": 70}, base=config_path("tiny"))
    assert (cfg.num_train_steps, cfg.hidden_size) == (70, 64)
    with pytest.raises(UserError, match="'num_warmup_steps' = 20: must be in"):
        from_hparams({"num_train_steps": 7}, base=config_path("tiny"))


@pytest.mark.parametrize("name", ["tiny", "small", "base", "large"])
def test_bundled_presets_load_and_say_where_values_come_from(name):
    cfg = from_hparams(config_path(name))
    assert cfg.vocab_size == 32200
    raw = json.loads(open(config_path(name)).read())
    assert "_comment" in raw


def test_published_koelectra_schedules():
    small, base = from_hparams(config_path("small")), from_hparams(config_path("base"))
    assert (small.train_batch_size, small.num_train_steps, small.learning_rate, small.generator_hidden_size) == (
        512, 800000, 5e-4, 1.0)
    assert (base.train_batch_size, base.num_train_steps, base.learning_rate) == (256, 1500000, 2e-4)


@pytest.mark.parametrize("hparams, message", [
    ('{"hidden_sise": 3}', "unknown hparam 'hidden_sise'"),
    ('{"model_size": "medium"}', "'model_size' must be one of small, base, large"),
    ('{"learning_rate": "fast"}', "'learning_rate' must be float"),
    ('{"num_train_steps": 1.5}', "'num_train_steps' must be int"),
    ('{"num_train_steps": true}', "'num_train_steps' must be int, got True"),
    ('{"use_tpu": 1}', "'use_tpu' must be bool, got 1"),
    ('{"tpu_name": 5}', "'tpu_name' must be str, got 5"),
    ('{"learning_rate": null}', "'learning_rate' must not be null"),
    ('{"optimizer": "sgd"}', "'optimizer'"),
    ('{"max_predictions_per_seq": 20}', "derived"),
    ('{"hidden_size": 100, "num_attention_heads": 3}', "'hidden_size' = 100"),
    ('{"train_batch_size": 10, "gradient_accumulation_steps": 3}', "'train_batch_size'"),
    ('{"jit_compile": "fast"}', "'jit_compile' = 'fast': must be true, false or \"auto\""),
    ('{"jit_compile": 1}', "'jit_compile' must be bool or str, got 1"),
    ('{"lr_schedule": "cosine"}', "'lr_schedule' = 'cosine': must be one of linear, wsd"),
    ('{"lr_schedule": "wsd", "num_train_steps": 100, "num_warmup_steps": 10, "decay_steps": 95}',
     "'decay_steps' = 95: the decay must start after the 10 warm-up steps"),
    ('{"decay_fraction": 1.5}', "'decay_fraction' = 1.5: must be in .0, 1."),
    ('{"shuffle_buffer": 1}', "'shuffle_buffer' = 1: must be at least 2: it holds two windows of half of it"),
    ("[1, 2]", "must be a JSON object"),
    ("{not json", "not valid JSON"),
    ("/no/such/file.json", "hparams file not found: /no/such/file.json"),
    ("medium", "hparams file not found: medium .or name a bundled preset: base, demo, large, small, tiny.$"),
])
def test_bad_hparams_are_one_clear_error(hparams, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        from_hparams(hparams)


def test_field_types_come_from_the_annotations():
    cfg = from_hparams({"learning_rate": 1, "num_gpus": None, "tpu_name": None, "num_tpu_cores": 8})
    assert type(cfg.learning_rate) is float and cfg.learning_rate == 1.0  # a JSON int where a float is due
    assert (cfg.num_gpus, cfg.tpu_name) == (None, None)  # `X | None` fields take null
    given = from_hparams({"num_gpus": 2, "tpu_name": "local"})
    assert (given.num_gpus, given.tpu_name) == (2, "local")


def test_a_preset_by_name_is_the_bundled_file(tmp_path, monkeypatch):
    assert from_hparams("small") == from_hparams(config_path("small"))
    assert from_hparams('{"num_train_steps": 70}', base="tiny").num_train_steps == 70
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small").write_text('{"hidden_size": 64}')  # a file of that name wins over the preset
    assert from_hparams("small").hidden_size == 64


def test_config_is_frozen_and_round_trips():
    cfg = from_hparams(config_path("tiny"))
    with pytest.raises(Exception):
        cfg.hidden_size = 3  # type: ignore[misc]
    assert from_hparams(cfg.to_json()) == cfg


def test_vocab_size_and_max_seq_length_come_from_the_data_unless_a_layer_sets_them():
    from pretrain.config import config_path, fill_from_data, load_hparams

    small = load_hparams(config_path("small"))
    assert "vocab_size" not in small  # a merged vocab is never the preset's size
    cfg = from_hparams(fill_from_data(small, 35000, 128))
    assert (cfg.vocab_size, cfg.max_seq_length) == (35000, 512)  # the preset's 512 stays, to be checked
    assert from_hparams(fill_from_data({}, 35000, 128)).max_seq_length == 128  # over model_size's default
    assert from_hparams(fill_from_data({"vocab_size": 100}, 35000, None)).vocab_size == 100
    assert from_hparams(fill_from_data({}, None, None)).vocab_size == 32200


@pytest.mark.parametrize("name,watchdog", [("small", 1800), ("base", 1800), ("large", 7200)])
def test_tpu_presets_checkpoint_hourly_and_watch_for_hangs(name, watchdog):
    """Spot and preemptible TPUs lose at most an hour (Google's advice); a hang exits 75 for the supervisor."""
    cfg = from_hparams(config_path(name))
    assert (cfg.save_checkpoints_secs, cfg.watchdog_seconds, cfg.use_tpu) == (3600.0, watchdog, True)
    with pytest.raises(UserError, match=r"hparam 'save_checkpoints_secs' = -1.0: must be at least 0: 0 = by steps only"):
        from_hparams({"save_checkpoints_secs": -1})
