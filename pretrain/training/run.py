"""`run_pretraining.py`: the original's flags, our trainer.

    python run_pretraining.py --data-dir DIR --model-name NAME --hparams configs/small.json

Records come from `DIR/pretrain_tfrecords/`, the vocab from `DIR/vocab.txt` (or
`--vocab-file`), the model goes to `DIR/models/NAME/`; each may be `gs://`. `--rehearse tpu`
trains nothing: it runs the step as a TPU core would, on the CPU (pretrain/training/rehearsal.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from foundation import console, fileio
from foundation.errors import UserError, run_cli
from foundation.tpu_host import check_tpu_paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = console.parser(prog=os.path.basename(sys.argv[0]),
                       description="Pretrain an ELECTRA generator + discriminator (replaced token detection).")
    p.add_argument("--data-dir", required=True, help="holds pretrain_tfrecords/, vocab.txt and models/ (local or gs://)")
    p.add_argument("--model-name", required=True, help="the run's name: checkpoints go to DATA_DIR/models/NAME")
    p.add_argument("--hparams", action="append", default=None,
                   help="JSON string or JSON file of hyperparameters (original keys); repeat to layer them, later "
                        "wins: --hparams configs/tiny.json --hparams '{\"vocab_size\": 46232}'")
    p.add_argument("--vocab-file", default=None, help="default DATA_DIR/vocab.txt")
    p.add_argument("--init-checkpoint", default=None,
                   help="start from these weights only (a run dir/checkpoint of ours, a Hugging Face folder, "
                        "or an original TF1 ELECTRA checkpoint); optimiser and step start fresh")
    p.add_argument("--init-discriminator-from-generator", action="store_true",
                   help="with --init-checkpoint: the discriminator's encoder starts as the loaded generator's "
                        "(ELECTRA's two-stage training: replaced-token detection from an MLM model; the generator "
                        "must be the discriminator's size)")
    p.add_argument("--init-from", default=None,
                   help="branch: start from this checkpoint's whole state (weights, optimiser, step), e.g. "
                        "DATA_DIR/models/LONG/ckpt-5000 (sets hparam branch_from); with lr_schedule wsd and "
                        "num_train_steps = that step + decay_steps the branch anneals to 0 (docs/pretraining.md)")
    p.add_argument("--stop-at-step", type=int, default=None,
                   help="save and stop at this step (the schedule stays the whole run's); a rerun continues")
    p.add_argument("--do-train", action=argparse.BooleanOptionalAction, default=None, help="overrides hparam do_train")
    p.add_argument("--do-eval", action=argparse.BooleanOptionalAction, default=None, help="overrides hparam do_eval")
    p.add_argument("--eval-data-dir", default=None, help="held-out records (default DATA_DIR/pretrain_tfrecords)")
    p.add_argument("--rehearse", choices=("tpu", "gpu"), default=None,
                   help="instead of training: run this run's step for one TPU core (bfloat16) or GPU (float16) on "
                        "the CPU, the whole host loop compiled by XLA, and report (pretrain/training/rehearsal.py); needs "
                        "only the vocab")
    p.add_argument("--rehearse-seq-length", type=int, default=None,
                   help="scale max_seq_length down for the CPU (default: the run's)")
    p.add_argument("--rehearse-layers", type=int, default=None,
                   help="scale num_hidden_layers down for the CPU's XLA compiler (default: the run's)")
    p.add_argument("--rehearse-steps", type=int, default=2, help="steps per host call to run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.init_discriminator_from_generator and not args.init_checkpoint:
        raise UserError("--init-discriminator-from-generator needs --init-checkpoint (the model whose generator "
                        "the discriminator starts from)")
    from pretrain.config import fill_from_data, from_hparams, layer_hparams

    given = layer_hparams(args.hparams or [])
    given.update({k: v for k, v in (("do_train", args.do_train), ("do_eval", args.do_eval),
                                    ("branch_from", args.init_from)) if v is not None})
    vocab = args.vocab_file or fileio.join(args.data_dir, "vocab.txt")
    records_dir = fileio.join(args.data_dir, "pretrain_tfrecords")
    if not given.get("do_train", True):
        records_dir = args.eval_data_dir or records_dir
    given = fill_from_data(given, *_data_sizes(vocab, None if args.rehearse else records_dir))
    cfg = from_hparams(given)
    from pretrain.training import trainer as training

    if args.rehearse:
        from data_prep import vocab_files
        from pretrain.training import rehearsal

        preset = ", ".join(args.hparams or []) or "default hparams"
        for line in rehearsal.rehearse(cfg, vocab_files.load_vocab(vocab), args.rehearse, preset=preset,
                                       max_seq_length=args.rehearse_seq_length, steps=args.rehearse_steps,
                                       num_hidden_layers=args.rehearse_layers):
            print(line, flush=True)
        return 0
    model_dir = fileio.join(args.data_dir, "models", args.model_name)
    check_tpu_paths(cfg.use_tpu, cfg.tpu_name, {"--data-dir": args.data_dir, "--eval-data-dir": args.eval_data_dir or
                                                args.data_dir})
    if cfg.do_train:
        run = training.check_inputs(cfg, fileio.join(args.data_dir, "pretrain_tfrecords"), vocab)
        training.train(run, model_dir, init_checkpoint=args.init_checkpoint, stop_at_step=args.stop_at_step,
                       discriminator_from_generator=args.init_discriminator_from_generator)
    if cfg.do_eval:
        run = training.check_inputs(cfg, args.eval_data_dir or fileio.join(args.data_dir, "pretrain_tfrecords"), vocab)
        result = training.evaluate(run, model_dir)
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _data_sizes(vocab: str, records_dir: str | None) -> tuple[int | None, int | None]:
    """The vocab's size and the records' length (from their manifest; no records: a rehearsal), None
    where absent: the checks that follow name what is missing."""
    from data_prep import records, vocab_files

    size = len(vocab_files.load_vocab(vocab)) if fileio.exists(vocab) else None
    manifest = records.read_manifest(records_dir) if records_dir else None
    return size, manifest.max_seq_length if manifest is not None else None


def cli() -> None:
    run_cli(main)
