"""The NSMC probe on tiny real Hugging Face ELECTRA folders built here: real tokenizer, real
fine-tuning, accuracies from real predictions on the bundled sentiment rows."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from foundation.errors import UserError, run_cli  # noqa: E402
from data_prep.vocab_files import VocabSettings, load_vocab, make_hf_tokenizer  # noqa: E402
from workflow import finetune, intrinsic, labelled_rows, probe  # noqa: E402

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As run_probe does: direct fine_tune calls here are otherwise slowed by a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = probe.ProbeConfig(max_train_rows=600, max_test_rows=300, epochs=2, batch_size=32, learning_rate=1e-3, seed=7)


def _tiny_config(vocab_size: int):
    return transformers.ElectraConfig(
        vocab_size=vocab_size, embedding_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory, koelectra_vocab, sentiment_dir):
    """(untrained, trained-a-little) discriminator folders with the same architecture and tokenizer.

    The trained copy's encoder saw 1,500 labelled rows (rows the probe later skips are not
    involved: the probe uses the first 600); its head is dropped, as an export would.
    """
    tokens = load_vocab(str(koelectra_vocab))
    tokenizer = transformers.ElectraTokenizerFast(
        tokenizer_object=make_hf_tokenizer(tokens, VocabSettings()), do_lower_case=False
    )
    untrained_dir = tmp_path_factory.mktemp("untrained")
    trained_dir = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    untrained = transformers.ElectraForPreTraining(_tiny_config(len(tokens)))
    untrained.save_pretrained(untrained_dir)
    tokenizer.save_pretrained(untrained_dir)

    train = labelled_rows.read_split(str(sentiment_dir / "train.tsv"), 1500)
    ids = tokenizer(train.texts, truncation=True, max_length=64)["input_ids"]
    classifier = transformers.ElectraForSequenceClassification(_tiny_config(len(tokens)))
    classifier.electra.load_state_dict(untrained.electra.state_dict())
    finetune.fine_tune(classifier, ids, train.labels, tokenizer.pad_token_id,
                    probe.ProbeConfig(epochs=3, learning_rate=2e-3, seed=1))
    trained = transformers.ElectraForPreTraining(_tiny_config(len(tokens)))
    trained.electra.load_state_dict(classifier.electra.state_dict())
    trained.save_pretrained(trained_dir)
    tokenizer.save_pretrained(trained_dir)
    return str(untrained_dir), str(trained_dir)


def test_trained_encoder_beats_random_init_and_is_deterministic(folders, sentiment_dir):
    _, trained = folders
    args = (trained, str(sentiment_dir / "train.tsv"), str(sentiment_dir / "test.tsv"), FAST)
    first = probe.run_probe(*args)
    assert first.train_rows == 600 and first.test_rows == 300
    assert first.steps == 2 * 19  # ceil(600 / 32) batches per epoch
    # accuracies are counts of correct predictions over 300 rows
    for acc in (first.pretrained_accuracy, first.random_init_accuracy):
        assert abs(acc * 300 - round(acc * 300)) < 1e-9
    labels = labelled_rows.read_split(str(sentiment_dir / "test.tsv"), 300).labels
    assert first.majority_accuracy == max(np.mean(labels), 1 - np.mean(labels))
    assert first.pretrained_accuracy >= 0.65
    assert first.pretrained_accuracy >= first.random_init_accuracy + 0.08
    second = probe.run_probe(*args)
    assert second._replace(seconds=0) == first._replace(seconds=0)


def test_predictions_match_unpadded_forward_passes(folders, sentiment_dir):
    """Batched, padded prediction equals one-row-at-a-time logits: the attention mask is right."""
    _, trained = folders
    tokenizer = transformers.AutoTokenizer.from_pretrained(trained)
    model = transformers.ElectraForSequenceClassification.from_pretrained(trained, num_labels=2)
    train = labelled_rows.read_split(str(sentiment_dir / "train.tsv"), 200)
    test = labelled_rows.read_split(str(sentiment_dir / "test.tsv"), 40)
    train_ids = tokenizer(train.texts, truncation=True, max_length=64)["input_ids"]
    test_ids = tokenizer(test.texts, truncation=True, max_length=64)["input_ids"]
    loss = finetune.fine_tune(model, train_ids, train.labels, tokenizer.pad_token_id, FAST)
    assert 0 < loss < 1.0
    batched = finetune.predict(model, test_ids, tokenizer.pad_token_id, batch_size=16)
    assert len({len(r) for r in test_ids}) > 1  # rows really needed padding
    with torch.no_grad():
        one_by_one = [int(model(input_ids=torch.tensor([row])).logits.argmax(-1)) for row in test_ids]
    assert batched.tolist() == one_by_one


def test_batch_order_depends_only_on_seed():
    a = finetune.batch_order(70, 32, 2, seed=3)
    assert [len(b) for b in a] == [32, 32, 6, 32, 32, 6]
    assert sorted(sum(a[:3], [])) == list(range(70)) == sorted(sum(a[3:], []))
    assert a == finetune.batch_order(70, 32, 2, seed=3)
    assert a != finetune.batch_order(70, 32, 2, seed=4)


def test_cli_prints_summary_and_writes_json(folders, sentiment_dir, tmp_path, capsys):
    untrained, _ = folders
    out = tmp_path / "probe.json"
    code = probe.main([untrained, "--max-train-rows", "64", "--max-test-rows", "50", "--epochs", "1",
                       "--train-tsv", str(sentiment_dir / "train.tsv"), "--test-tsv", str(sentiment_dir / "test.tsv"),
                       "--output-json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["train_rows"] == 64 and result["test_rows"] == 50 and result["steps"] == 2
    assert f"pretrained {result['pretrained_accuracy']:.3f}" in capsys.readouterr().out


def _tsv(tmp_path, text: str) -> str:
    path = tmp_path / "bad.tsv"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("document\tlabel\nx\t1\n", "line 1: expected header"),
        ("id\tdocument\tlabel\n1\t좋아요\t1\n2\t별로\n", "line 3: expected 3 tab-separated fields"),
        ("id\tdocument\tlabel\n1\t좋아요\tpositive\n", "line 2: label must be 0 or 1, got 'positive'"),
        ("id\tdocument\tlabel\n", "no data rows"),
    ],
)
def test_malformed_tsv_names_file_and_line(tmp_path, text, message):
    path = _tsv(tmp_path, text)
    with pytest.raises(UserError, match=message) as info:
        labelled_rows.read_split(path)
    assert path in str(info.value)


def test_bad_model_folder_is_a_one_line_error(tmp_path, sentiment_dir, capsys):
    train, test = str(sentiment_dir / "train.tsv"), str(sentiment_dir / "test.tsv")
    with pytest.raises(UserError, match="model folder not found"):
        probe.run_probe(str(tmp_path / "missing"), train, test)
    with pytest.raises(UserError, match="no config.json"):
        probe.run_probe(str(tmp_path), train, test)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: probe.main([str(tmp_path / "missing")]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: model folder not found: {tmp_path / 'missing'}"


def test_config_is_validated():
    with pytest.raises(UserError, match="learning_rate"):
        probe.ProbeConfig(learning_rate=0)
    with pytest.raises(UserError, match="max_seq_length"):
        probe.ProbeConfig(max_seq_length=2)
    with pytest.raises(UserError, match="warmup_fraction"):
        probe.ProbeConfig(warmup_fraction=1.0)


def test_fair_protocol_chooses_each_arms_rate_on_dev_and_reports_seeds(folders, sentiment_dir):
    _, trained = folders
    config = probe.ProbeConfig(max_train_rows=300, dev_rows=200, max_test_rows=200, epochs=1, seeds=2,
                               lr_grid=(3e-5, 2e-3), seed=7, intrinsic=False)
    result = probe.run_probe(trained, str(sentiment_dir / "train.tsv"), str(sentiment_dir / "test.tsv"), config)
    assert (result.train_rows, result.dev_rows, result.test_rows) == (300, 200, 200)
    for arm in (result.pretrained, result.random_init):
        dev = arm["dev_accuracy"]
        assert set(dev) == {"3e-05", "0.002"}
        for acc in dev.values():  # counts of correct rows over the 200 dev rows
            assert abs(acc * 200 - round(acc * 200)) < 1e-9
        best = max(dev.values())
        assert dev[f"{arm['learning_rate']:g}"] == best
        assert arm["learning_rate"] == min(r for r in (3e-5, 2e-3) if dev[f"{r:g}"] == best)  # ties: smaller rate
        assert len(arm["accuracies"]) == 2
        assert arm["mean"] == pytest.approx(np.mean(arm["accuracies"]))
        assert arm["std"] == pytest.approx(np.std(arm["accuracies"], ddof=1))
    assert result.pretrained_accuracy == result.pretrained["mean"]
    frozen = result.frozen
    assert len(frozen["random_init_accuracies"]) == 2 and frozen["pretrained_l2"] in probe.FROZEN_L2_GRID
    # the encoder fine-tuned on sentiment rows gives frozen features far better than random ones
    assert frozen["pretrained_accuracy"] > frozen["random_init_accuracy"] + 0.05


def test_dev_rows_are_carved_from_the_train_file_only(sentiment_dir, tmp_path):
    split = labelled_rows.read_split(str(sentiment_dir / "train.tsv"), 0)
    train, dev = labelled_rows.split_train_dev(split, 3000, 1000, "train.tsv")
    assert train.texts == split.texts[:3000] and dev.texts == split.texts[3000:4000]
    with pytest.raises(UserError, match=r"train.tsv has 4000 rows: not enough for 4000 train \+ 1000 dev rows"):
        labelled_rows.split_train_dev(split, 4000, 1000, "train.tsv")
    with pytest.raises(UserError, match="lr_grid needs dev_rows"):
        probe.ProbeConfig(lr_grid=(1e-3,))
    assert probe.fair().lr_grid == probe.FAIR_LR_GRID and probe.fair().seeds == 3


def test_auc_is_the_pairwise_win_rate_with_ties_half():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    labels = rng.random(300) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert intrinsic.auc(scores, labels) == pytest.approx(pairwise, abs=1e-12)
    assert intrinsic.auc([1, 2, 3], [0, 0, 1]) == 1.0 and intrinsic.auc([3, 2, 1], [0, 0, 1]) == 0.0


def test_masks_baselines_and_token_only_scorer_on_known_ids():
    special = {0, 2, 3}
    rows = [[2, 10, 11, 12, 13, 14, 15, 16, 3], [2, 10, 3], [2, 3]]
    masks = intrinsic.choose_masks(rows, special, seed=1)
    assert [len(m) for m in masks] == [1, 1, 0]  # round(0.15 x 7) = 1, at least one, none in an empty row
    assert all(rows[i][p] not in special for i, m in enumerate(masks) for p in m)
    assert [m.tolist() for m in masks] == [m.tolist() for m in intrinsic.choose_masks(rows, special, seed=1)]
    # 10 is the train rows' most frequent token: the baseline is right where 10 was masked
    train = [[2, 10, 10, 11, 3], [2, 10, 12, 3]]
    expected = np.mean([rows[i][p] == 10 for i, m in enumerate(masks) for p in m])
    assert intrinsic.unigram_baseline(train, rows, masks, special) == expected
    scores = intrinsic.token_only_scores(np.array([5, 5, 5, 6]), np.array([1, 1, 0, 0]), np.array([5, 6, 7]), 8)
    assert scores.tolist() == [(2 + 1) / (3 + 2), (0 + 1) / (1 + 2), 0.5]


@pytest.fixture(scope="module")
def encoded(koelectra_vocab, sentiment_dir):
    """(vocab size, tokenizer, special ids, 300 train rows' ids, 100 test rows' ids) for the intrinsic metrics."""
    tokens = load_vocab(str(koelectra_vocab))
    tokenizer = transformers.ElectraTokenizerFast(
        tokenizer_object=make_hf_tokenizer(tokens, VocabSettings()), do_lower_case=False)

    def encode(path, rows):
        return tokenizer(labelled_rows.read_split(str(path), rows).texts, truncation=True, max_length=64)["input_ids"]

    return (len(tokens), tokenizer, set(tokenizer.all_special_ids), encode(sentiment_dir / "train.tsv", 300),
            encode(sentiment_dir / "test.tsv", 100))


def test_a_generator_that_always_answers_the_top_token_scores_the_unigram_baseline(encoded):
    vocab_size, tokenizer, special, train_ids, test_ids = encoded
    counts = np.bincount([t for r in train_ids for t in r if t not in special], minlength=vocab_size)
    torch.manual_seed(0)
    generator = transformers.ElectraForMaskedLM(_tiny_config(vocab_size))
    with torch.no_grad():
        generator.generator_lm_head.bias[int(counts.argmax())] = 1e4
    m = intrinsic.measure(generator, None, train_ids, test_ids, special, tokenizer.mask_token_id,
                          tokenizer.pad_token_id, vocab_size)
    assert m.masked_positions == sum(len(x) for x in intrinsic.choose_masks(test_ids, special, 0))
    assert m.heldout_generator_accuracy == m.unigram_baseline_accuracy > 0
    assert m.heldout_discriminator_auc is None


def test_a_discriminator_that_scores_every_token_alike_has_auc_one_half(encoded):
    vocab_size, tokenizer, special, train_ids, test_ids = encoded
    torch.manual_seed(0)
    generator = transformers.ElectraForMaskedLM(_tiny_config(vocab_size))
    discriminator = transformers.ElectraForPreTraining(_tiny_config(vocab_size))
    with torch.no_grad():
        discriminator.discriminator_predictions.dense_prediction.weight.zero_()
    m = intrinsic.measure(generator, discriminator, train_ids, test_ids, special, tokenizer.mask_token_id,
                          tokenizer.pad_token_id, vocab_size)
    assert m.heldout_discriminator_auc == 0.5  # every score tied
    # an untrained generator's samples almost never hit the original: nearly every masked position is replaced
    masked = sum(len(x) for x in intrinsic.choose_masks(test_ids, special, 0))
    real = sum(sum(t not in special for t in row) for row in test_ids)
    assert 0.9 * masked / real <= m.replaced_share <= masked / real
    assert 0.0 <= m.token_only_auc <= 1.0


def _classifier(seed: int = 0, layers: int = 3):
    torch.manual_seed(seed)
    config = transformers.ElectraConfig(vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=layers,
                                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                                        num_labels=2)
    model = transformers.ElectraForSequenceClassification(config)
    with torch.no_grad():  # every weight away from its initial value, LayerNorm's 1s and 0s included
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def test_llrd_gives_each_layer_electras_decayed_rate():
    model = _classifier(layers=3)
    groups = finetune.layer_rates(model, 1e-3, 0.5)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    by_name = {name: rate_of[id(p)] for name, p in model.named_parameters()}
    assert len(by_name) == len(list(model.parameters()))  # every parameter in exactly one group
    # head at num_layers + 2 = 5: 1e-3; layer i at i + 1: 1e-3 * 0.5 ** (4 - i); embeddings at 0: 1e-3 * 0.5 ** 5
    assert by_name["classifier.out_proj.weight"] == by_name["classifier.dense.bias"] == pytest.approx(1e-3)
    assert [by_name[f"electra.encoder.layer.{i}.output.dense.weight"] for i in range(3)] == pytest.approx(
        [1e-3 / 16, 1e-3 / 8, 1e-3 / 4])
    assert by_name["electra.embeddings.word_embeddings.weight"] == pytest.approx(1e-3 / 32)
    assert by_name["electra.embeddings_project.weight"] == pytest.approx(1e-3 / 32)


def test_reinit_changes_exactly_the_top_layer():
    model = _classifier(layers=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune.reinit_top_layer(model, seed=1)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    top = {k for k in before if k.startswith("electra.encoder.layer.2.")}
    assert changed == top and len(top) == 16
    assert torch.all(model.state_dict()["electra.encoder.layer.2.output.LayerNorm.weight"] == 1.0)


def test_lpft_linear_stage_leaves_the_encoder_unchanged(monkeypatch):
    """The head alone trains first (the encoder's weights identical after it), then everything."""
    model = _classifier(layers=1)
    rows = [[2, 5 + i % 7, 9 + i % 5, 3] for i in range(64)]
    labels = [i % 2 for i in range(64)]
    config = probe.ProbeConfig(epochs=1, batch_size=16, lp_epochs=2, lp_learning_rate=1e-2, learning_rate=1e-3)
    snapshots = []
    real_train = finetune._train

    def spy(model, *args):
        out = real_train(model, *args)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return out

    before = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(finetune, "_train", spy)
    finetune.fine_tune(model, rows, labels, 0, config, "lpft")
    linear, full = snapshots
    moved = lambda snap: {k for k in before if not torch.equal(snap[k], before[k])}  # noqa: E731
    assert moved(linear) == {k for k in before if k.startswith("classifier.")}
    assert {k for k in moved(full) if k.startswith("electra.encoder.")}  # then the encoder trains
    assert all(p.requires_grad for p in model.parameters())


def test_the_dev_rows_choose_the_protocol_with_the_rate(folders, sentiment_dir):
    untrained, _ = folders
    config = dataclasses.replace(FAST, max_train_rows=64, dev_rows=64, max_test_rows=50, epochs=1, seeds=2,
                                 lr_grid=(1e-3, 3e-3), protocols=("plain", "reinit"), frozen=False, intrinsic=False)
    result = probe.run_probe(untrained, str(sentiment_dir / "train.tsv"), str(sentiment_dir / "test.tsv"), config)
    for arm in (result.pretrained, result.random_init):
        assert sorted(arm["dev_accuracy"]) == ["plain 0.001", "plain 0.003", "reinit 0.001", "reinit 0.003"]
        best = max(arm["dev_accuracy"].values())
        assert arm["dev_accuracy"][f"{arm['protocol']} {arm['learning_rate']:g}"] == best
        assert len(arm["accuracies"]) == 2
    with pytest.raises(UserError, match="protocols must be some of plain, llrd, lpft, reinit, got sgd"):
        probe.ProbeConfig(protocols=("sgd",))
    with pytest.raises(UserError, match="need dev_rows > 0"):
        probe.ProbeConfig(protocols=("plain", "llrd"))


def test_fine_tunes_in_worker_processes_give_what_one_process_gives(folders, sentiment_dir):
    """--jobs 2 runs the grid and the seeds in two spawned processes: every accuracy, loss and choice is
    the same as one after another in this process (each fine-tune seeds its own model)."""
    untrained, _ = folders
    config = dataclasses.replace(FAST, max_train_rows=64, dev_rows=64, max_test_rows=50, epochs=1, seeds=3,
                                 lr_grid=(1e-3, 3e-3), protocols=("plain", "llrd"), frozen=False, intrinsic=False)
    files = (str(sentiment_dir / "train.tsv"), str(sentiment_dir / "test.tsv"))
    alone = probe.run_probe(untrained, *files, config)
    parallel = probe.run_probe(untrained, *files, dataclasses.replace(config, jobs=2))
    assert len(alone.pretrained["dev_accuracy"]) == 4 and len(alone.random_init["accuracies"]) == 3
    assert parallel._replace(seconds=0) == alone._replace(seconds=0)
    with pytest.raises(UserError, match="jobs must be >= 1"):
        probe.ProbeConfig(jobs=0)
