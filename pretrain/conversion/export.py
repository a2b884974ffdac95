"""`electra-export`: a training run's checkpoint -> two Hugging Face ELECTRA folders.

`discriminator/` loads with `ElectraForPreTraining` (and `ElectraForSequenceClassification`
for fine-tuning), `generator/` with `ElectraForMaskedLM`. Each holds `config.json` (derived
from the run's config, never typed), `model.safetensors` (written with the numpy API: the
exporter needs neither torch nor transformers), the tokenizer files and a model card. Only
the model's weights are read: optimizer slots in the checkpoint are never looked at.

The output is written under a temporary name and renamed when complete, so a failed export
leaves nothing under the final name; an existing output is refused unless `--overwrite`.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import shutil
import tempfile
import uuid
from typing import Mapping

import numpy as np

from foundation import console, fileio
from data_prep import vocab_files
from foundation.errors import UserError, run_cli
from foundation.stage_output import check_apart
from pretrain.conversion import hf_format
from pretrain.config import EncoderDims, PretrainConfig

log = logging.getLogger("electra-export")

SPECIAL_TOKENS_MAP = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                      "mask_token": "[MASK]"}


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export and where; validated on construction."""

    model_dir: str
    output_dir: str
    step: int | None = None  # None = the latest checkpoint
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.step is not None and self.step < 0:
            raise UserError(f"--step must be >= 0, got {self.step}")
        check_apart(self.output_dir, (self.model_dir,))


def hf_state_dict(weights: Mapping[str, object], dims: EncoderDims, part: hf_format.Part) -> dict[str, np.ndarray]:
    """The safetensors content for `part`: PyTorch layout, float32, without the tied LM matrix.

    `weights` is `model.discriminator_weights()` / `generator_weights()` (TF layout, keyed by
    Hugging Face names). Names and shapes are checked against what `transformers` will
    build from the exported config, so a mismatch fails here and not at load time.
    """
    expected = hf_format.hf_weight_shapes(dims, part)
    if set(weights) != set(expected):
        extra = sorted(set(weights) - set(expected))
        missing = sorted(set(expected) - set(weights))
        raise ValueError(f"{part} weights do not match its config: missing {missing[:3]}, unexpected {extra[:3]}")
    state = {}
    for name in hf_format.hf_weight_names(dims, part):
        array = hf_format.to_torch_layout(name, np.asarray(weights[name], dtype=np.float32))
        if array.shape != expected[name]:
            raise ValueError(f"{part} weight {name} has shape {array.shape}, its config says {expected[name]}")
        state[name] = array
    if part == "generator":
        tied = state.pop(hf_format.TIED_WEIGHT)
        if not np.array_equal(tied, state["electra.embeddings.word_embeddings.weight"]):
            raise ValueError("generator_lm_head.weight differs from the word embeddings it is tied to")
    return state


def tokenizer_files(tokens: list[str], settings: vocab_files.VocabSettings, max_length: int) -> dict[str, str]:
    """`vocab.txt`, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`.

    `tokenizer_class` is `PreTrainedTokenizerFast`, which loads `tokenizer.json` as it is
    (NFC first, then BERT normalisation, WordPiece with the run's `max_input_chars_per_word`).
    `ElectraTokenizer` would rebuild the pipeline from `vocab.txt` in transformers 5 and drop
    the NFC step: decomposed Hangul would then become [UNK].
    """
    tokenizer = vocab_files.make_hf_tokenizer(tokens, settings)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "do_lower_case": settings.do_lower_case,
        "strip_accents": settings.strip_accents,
        "tokenize_chinese_chars": True,
        "model_max_length": max_length,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "padding_side": "right",
        **SPECIAL_TOKENS_MAP,
    }
    return {
        "vocab.txt": "".join(t + "\n" for t in tokens),
        "tokenizer.json": tokenizer.to_str(pretty=True) + "\n",
        "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False) + "\n",
        "special_tokens_map.json": json.dumps(SPECIAL_TOKENS_MAP, indent=2) + "\n",
    }


def model_card(part: hf_format.Part, cfg: PretrainConfig, step: int, run_facts: Mapping[str, object],
               settings: vocab_files.VocabSettings) -> str:
    """A short README.md: what this folder is, how it was trained, how to load it."""
    dims = cfg.discriminator_dims() if part == "discriminator" else cfg.generator_dims()
    load_class = hf_format.ARCHITECTURE[part]
    usage = (
        "from transformers import AutoTokenizer, ElectraForSequenceClassification\n"
        "tokenizer = AutoTokenizer.from_pretrained(path)\n"
        "model = ElectraForSequenceClassification.from_pretrained(path, num_labels=2)"
        if part == "discriminator" else
        "from transformers import AutoTokenizer, ElectraForMaskedLM\n"
        "tokenizer = AutoTokenizer.from_pretrained(path)\n"
        "model = ElectraForMaskedLM.from_pretrained(path)"
    )
    rows = [
        ("network", f"{part} ({load_class})"),
        ("training step", f"{step:,} of {cfg.num_train_steps:,}"),
        ("layers / hidden / heads / FFN", f"{dims.num_hidden_layers} / {dims.hidden_size} / "
                                          f"{dims.num_attention_heads} / {dims.intermediate_size}"),
        ("embedding size", str(dims.embedding_size)),
        ("vocab size", f"{dims.vocab_size:,}"),
        ("max sequence length (trained)", str(cfg.max_seq_length)),
        ("batch size / learning rate", f"{cfg.train_batch_size} / {cfg.learning_rate:g}"),
        ("mask prob / generator size", f"{cfg.mask_prob:g} / {cfg.generator_hidden_size:g} of the discriminator"),
        ("disc weight / gen weight", f"{cfg.disc_weight:g} / {cfg.gen_weight:g}"),
        ("tokeniser", f"WordPiece, do_lower_case={settings.do_lower_case}, strip_accents={settings.strip_accents}, "
                      f"pre-tokeniser {settings.pretokenizer}"),
    ]
    rows += [(key, str(value)) for key, value in run_facts.items()]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    note = ""
    if settings.pretokenizer != "bert":
        note = (f"\nThe training data was split into morphemes ({settings.pretokenizer}) before WordPiece; "
                "`tokenizer.json` cannot do that, so run the same morpheme splitter on text first.\n")
    return (
        f"---\nlibrary_name: transformers\ntags: [electra]\n---\n\n"
        f"# ELECTRA {part}\n\nPretrained with replaced token detection (ELECTRA) by this project's "
        f"TensorFlow trainer and exported with `electra-export`.\n\n| fact | value |\n|---|---|\n{table}\n{note}\n"
        f"```python\npath = \".\"  # this folder\n{usage}\n```\n"
    )


def _write_folder(path: str, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        with fileio.atomic_write(fileio.join(path, name), "wb") as fh:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)


def _publish(staging: str, output_dir: str, overwrite: bool) -> None:
    """Move a finished local staging folder to `output_dir` (local: one rename; gs://: file by file)."""
    if fileio.is_gcs(output_dir):
        for root, _, names in os.walk(staging):
            for name in sorted(names):
                rel = os.path.relpath(os.path.join(root, name), staging).replace(os.sep, "/")
                with open(os.path.join(root, name), "rb") as src:
                    _write_folder(output_dir, {rel: src.read()})
        return
    if os.path.exists(output_dir):
        if not overwrite:  # appeared while exporting
            raise UserError(f"output folder {output_dir} exists; pass --overwrite to replace it")
        old = f"{output_dir}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output_dir, old)
        os.replace(staging, output_dir)
        shutil.rmtree(old)
    else:
        os.replace(staging, output_dir)
    os.chmod(output_dir, 0o755)  # mkdtemp made the staging folder private


def _staging_dir(output_dir: str) -> str:
    """A temporary folder beside the output (same filesystem, so the final rename is atomic);
    staging folders that a killed export left there are removed first."""
    if fileio.is_gcs(output_dir):
        return tempfile.mkdtemp(prefix="electra-export-")
    parent = os.path.dirname(os.path.abspath(output_dir))
    prefix = f".{os.path.basename(os.path.abspath(output_dir))}.tmp-"
    for left in glob.glob(os.path.join(glob.escape(parent), glob.escape(prefix) + "*")):
        shutil.rmtree(left, ignore_errors=True)
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError as exc:
        raise UserError(f"cannot create output folder {output_dir}: {exc}") from exc


def check_vocab(tokens: list[str], cfg: PretrainConfig, vocab_path: str) -> None:
    if len(tokens) != cfg.vocab_size:
        raise UserError(f"{vocab_path} has {len(tokens):,} tokens but the model's vocab_size is {cfg.vocab_size:,}")


def run_facts(run: Mapping[str, object]) -> dict[str, object]:
    """Training facts for the model card from the run's `run_config.json` (data manifest, vocab hash)."""
    manifest = run.get("data_manifest") or {}
    facts: dict[str, object] = {}
    if "num_examples" in manifest:
        facts["training data"] = (f"{manifest['num_examples']:,} sequences, {manifest.get('num_tokens', 0):,} tokens "
                                  f"(max_seq_length {manifest.get('max_seq_length')})")
    if run.get("vocab_sha256"):
        facts["vocab sha256"] = f"`{run['vocab_sha256']}`"
    return facts


def export(cfg: ExportConfig) -> str:
    """Export one checkpoint of `cfg.model_dir`; returns a one-line summary."""
    if not fileio.exists(cfg.model_dir):
        raise UserError(f"model dir not found: {cfg.model_dir}")
    if fileio.exists(cfg.output_dir) and not cfg.overwrite:
        raise UserError(f"output folder {cfg.output_dir} exists; pass --overwrite to replace it")
    vocab_path = fileio.join(cfg.model_dir, "vocab.txt")
    tokens = vocab_files.load_vocab(vocab_path)
    settings = vocab_files.load_settings(vocab_path) or vocab_files.VocabSettings()
    from pretrain.training import checkpoints  # TensorFlow: imported once the cheap checks passed

    model, train_cfg, step = checkpoints.restore_model(cfg.model_dir, cfg.step)
    check_vocab(tokens, train_cfg, vocab_path)
    write_export(model, train_cfg, step, tokens, settings, cfg.output_dir, overwrite=cfg.overwrite,
                 facts=run_facts(checkpoints.read_run_config(cfg.model_dir) or {}))
    return (f"exported step {step:,} of {cfg.model_dir} to {cfg.output_dir} "
            f"(discriminator/ and generator/, vocab {len(tokens):,})")


def write_export(model, train_cfg: PretrainConfig, step: int, tokens: list[str], settings: vocab_files.VocabSettings,
                 output_dir: str, *, overwrite: bool = False, facts: Mapping[str, object] | None = None) -> None:
    """Write `discriminator/` and `generator/` for an in-memory model (the RTD model's weight dicts)."""
    if fileio.exists(output_dir) and not overwrite:
        raise UserError(f"output folder {output_dir} exists; pass --overwrite to replace it")
    if settings.pretokenizer != "bert":
        log.warning("vocab was built with the %s pre-tokeniser; tokenizer.json splits words only", settings.pretokenizer)
    tokenizer = tokenizer_files(tokens, settings, train_cfg.max_seq_length)
    staging = _staging_dir(output_dir)
    try:
        for part in hf_format.PARTS:
            dims = train_cfg.discriminator_dims() if part == "discriminator" else train_cfg.generator_dims()
            weights = model.discriminator_weights() if part == "discriminator" else model.generator_weights()
            state = hf_state_dict(weights, dims, part)
            folder = os.path.join(staging, part)
            _write_folder(folder, {
                "config.json": json.dumps(hf_format.hf_config(dims, part, pad_token_id=tokens.index("[PAD]")),
                                          indent=2, sort_keys=True) + "\n",
                **tokenizer,
                "README.md": model_card(part, train_cfg, step, facts or {}, settings),
            })
            _save_safetensors(state, os.path.join(folder, "model.safetensors"), part, step)
            log.info("%s: %d tensors, %.2f M parameters", part, len(state), sum(a.size for a in state.values()) / 1e6)
        _publish(staging, output_dir, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_safetensors(state: Mapping[str, np.ndarray], path: str, part: str, step: int) -> None:
    """Straight to the local staging folder (no in-memory copy of the file), byte-identical for the
    same weights: safetensors orders the tensors by name but writes the metadata in hash order,
    which changes from process to process, so its header is rewritten with the keys sorted."""
    from safetensors.numpy import save_file

    save_file(dict(state), path, metadata={"format": "pt", "electra_part": part, "step": str(step)})
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")  # same keys and values: same length
        fh.seek(8)
        fh.write(text.ljust(size))


def main(argv: list[str] | None = None) -> int:
    parser = console.parser(prog="electra-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="training run folder (local or gs://)")
    parser.add_argument("--output-dir", required=True, help="where discriminator/ and generator/ go")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    summary = export(ExportConfig(model_dir=args.model_dir, output_dir=args.output_dir, step=args.step,
                                  overwrite=args.overwrite))
    print(summary)
    return 0


def cli() -> None:
    run_cli(main)
